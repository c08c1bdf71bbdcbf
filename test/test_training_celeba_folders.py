"""Flat CelebA photos + identity_CelebA.txt -> a folder-per-identity dataset (training/celeba_folders.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from face_recognition_ros.image_files import load_image
from face_recognition_ros.training.celeba_folders import lay_out, main, read_identity_file
from face_recognition_ros.training.face_cache import DatasetError


@pytest.fixture()
def flat_celeba(celeba_dir, tmp_path) -> tuple[Path, Path, list[str]]:
    """Six real celeba-subset photos of three identities, flat as CelebA ships them, and their identity file."""
    photos = []
    for identity in sorted(p for p in celeba_dir.iterdir() if p.is_dir())[:3]:
        photos += [(identity.name, path) for path in sorted(identity.glob("*.jpg"))[:2]]
    flat = tmp_path / "celebA"
    flat.mkdir()
    for _, path in photos:
        shutil.copy(path, flat / path.name)
    identity_file = tmp_path / "identity_CelebA.txt"
    identity_file.write_text("".join(f"{path.name} {identity}\n" for identity, path in photos))
    return flat, identity_file, [identity for identity, _ in photos]


def test_photos_are_linked_into_one_folder_per_identity(flat_celeba, tmp_path):
    flat, identity_file, identities = flat_celeba
    report = lay_out(flat, read_identity_file(identity_file), tmp_path / "out")
    assert report.images == 6 and report.placed == {identity: 2 for identity in identities}
    for photo in flat.iterdir():
        placed = tmp_path / "out" / read_identity_file(identity_file)[photo.name] / photo.name
        assert placed.is_symlink() and placed.resolve() == photo.resolve()
        assert load_image(placed).shape == load_image(photo).shape


def test_photos_of_a_skipped_dataset_and_photos_without_identity_are_left_out(flat_celeba, tmp_path):
    flat, identity_file, _ = flat_celeba
    names = sorted(p.name for p in flat.iterdir())
    other = tmp_path / "celeba-subset" / "1234"
    other.mkdir(parents=True)
    (other / names[0]).write_bytes((flat / names[0]).read_bytes())
    identities = read_identity_file(identity_file)
    del identities[names[1]]
    report = lay_out(flat, identities, tmp_path / "out", skip=[tmp_path / "celeba-subset"], copy=True)
    assert report.images == 4 and report.in_skipped_dataset == 1 and report.without_identity == [names[1]]
    written = sorted(p.name for p in (tmp_path / "out").rglob("*.jpg"))
    assert written == names[2:] and not any(p.is_symlink() for p in (tmp_path / "out").rglob("*.jpg"))


def test_a_column_header_on_the_first_line_is_passed_over_but_not_elsewhere(tmp_path):
    # The copy of identity_CelebA.txt in matush97/faceRecognition starts with "image identity".
    path = tmp_path / "identity.txt"
    path.write_text("image identity\n000001.jpg 2880\n000002.jpg 2937\n")
    assert read_identity_file(path) == {"000001.jpg": "2880", "000002.jpg": "2937"}
    path.write_text("000001.jpg 2880\nimage identity\n")
    with pytest.raises(DatasetError, match="line 2: expected"):
        read_identity_file(path)


@pytest.mark.parametrize("line, message", [
    ("000001.jpg", "line 2: expected '<image file> <identity number>'"),
    ("000001.jpg abc", "line 2: expected"),
    ("../000001.jpg 5", "line 2: expected"),
    ("000009.jpg 7", "line 2: 000009.jpg is given two identities"),
])
def test_a_malformed_identity_file_is_a_clear_error(tmp_path, line, message):
    path = tmp_path / "identity.txt"
    path.write_text(f"000009.jpg 3\n{line}\n")
    with pytest.raises(DatasetError, match=message):
        read_identity_file(path)


def test_the_cli_refuses_a_non_empty_output_folder_and_writes_nothing(flat_celeba, tmp_path, capsys):
    flat, identity_file, _ = flat_celeba
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["--images", str(flat), "--identities", str(identity_file), "--out", str(out)]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert main(["--images", str(tmp_path / "absent"), "--identities", str(identity_file), "--out", str(tmp_path / "new")]) == 2
    assert "no folder" in capsys.readouterr().err
    assert main(["--images", str(flat), "--identities", str(identity_file), "--out", str(tmp_path / "new")]) == 0
    assert "6 images of 3 identities" in capsys.readouterr().out


def test_the_cli_reports_an_unwritable_output_folder(flat_celeba, tmp_path, capsys, monkeypatch):
    flat, identity_file, _ = flat_celeba

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("face_recognition_ros.training.celeba_folders.os.symlink", refuse)
    assert main(["--images", str(flat), "--identities", str(identity_file), "--out", str(tmp_path / "out")]) == 2
    assert "cannot write into" in capsys.readouterr().err
