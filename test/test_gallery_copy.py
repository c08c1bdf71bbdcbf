"""``face-recognition-ros gallery copy SRC DST``: SQLite to PostgreSQL and back, checked for equality.

The SQLite-to-SQLite cases run everywhere; the PostgreSQL ones need the test server
(``test/postgres_server.py``) and skip, saying why, without one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from face_recognition_ros import gallery_copy
from face_recognition_ros.cli.main import EXIT_ERROR, main
from face_recognition_ros.errors import GalleryError
from face_recognition_ros.gallery import CROP_SHAPE, open_gallery
from postgres_server import postgres_url  # noqa: F401 - a fixture

ENCODERS = ("enc_a:0011:22", "enc_b:3344:55")


def fill(location) -> None:
    """Three people with samples of two encoders, one person forgotten (ids with a gap), non-ASCII names."""
    rng = np.random.default_rng(7)

    def samples(count: int, dim: int):
        embeddings = rng.standard_normal((count, dim)).astype(np.float32)
        crops = rng.integers(0, 256, (count, *CROP_SHAPE), dtype=np.uint8)
        return embeddings, crops

    with open_gallery(location) as gallery:
        gallery.enroll("Ada Lovelace", *samples(3, 16), ENCODERS[0])
        gallery.enroll("Gone", *samples(2, 16), ENCODERS[0])
        gallery.enroll("José Müller", *samples(2, 8), ENCODERS[1])
        gallery.enroll("李小龍", *samples(1, 16), ENCODERS[0])
        gallery.add_samples("Ada Lovelace", *samples(2, 8), ENCODERS[1])
        gallery.forget("Gone")


def content(location) -> dict:
    """Everything a gallery holds, read through its public interface and as stored."""
    with open_gallery(location, create=False) as gallery:
        people = gallery.list_people()
        embeddings = {encoder: gallery.embeddings(encoder) for encoder in ENCODERS}
        with gallery.export_records() as (records, batches):
            stored = (records, [sample for batch in batches for sample in batch])
        return {
            "people": [(p.id, p.name, p.created, p.num_samples) for p in people],
            "embeddings": {encoder: (e.person_ids.tolist(), e.embeddings.tobytes(), e.names)
                           for encoder, e in embeddings.items()},
            "crops": {p.id: gallery.crops(p.id).tobytes() for p in people},
            "records": stored,
        }


def copy(capsys, source, destination, *options) -> tuple[int, dict | str]:
    code = main(["gallery", "copy", str(source), str(destination), "--json", *options])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else captured.err


def test_copy_between_two_sqlite_files_is_identical(capsys, tmp_path: Path):
    fill(tmp_path / "a.db")
    code, report = copy(capsys, tmp_path / "a.db", tmp_path / "b.db")
    assert code == 0 and report["verified"] and (report["people"], report["samples"]) == (3, 8)
    assert content(tmp_path / "b.db") == content(tmp_path / "a.db")


def test_sqlite_to_postgresql_and_back_keeps_people_samples_embeddings_and_crops(capsys, tmp_path, postgres_url):
    fill(tmp_path / "robot.db")
    original = content(tmp_path / "robot.db")
    assert len(original["records"][1]) == 8 and len(original["people"]) == 3

    code, report = copy(capsys, tmp_path / "robot.db", postgres_url)
    assert code == 0 and report["verified"] and (report["people"], report["samples"]) == (3, 8)
    assert content(postgres_url) == original

    code, report = copy(capsys, postgres_url, tmp_path / "back.db")
    assert code == 0 and report["verified"]
    assert content(tmp_path / "back.db") == original

    with open_gallery(postgres_url) as fleet:  # new people continue after the copied ids
        added = fleet.enroll("Newcomer", np.ones((1, 16), np.float32), np.zeros((1, *CROP_SHAPE), np.uint8),
                             ENCODERS[0])
        assert added.person_id > max(p[0] for p in original["people"])


@pytest.fixture(params=["sqlite", "postgresql"])
def destination(request, tmp_path: Path):
    return tmp_path / "dest.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_a_non_empty_destination_is_refused_unless_replace(capsys, tmp_path, destination):
    fill(tmp_path / "a.db")
    with open_gallery(destination) as other:
        other.enroll("Someone Else", np.ones((1, 4), np.float32), np.zeros((1, *CROP_SHAPE), np.uint8), "x:0:0")
    before = content(destination)
    code, error = copy(capsys, tmp_path / "a.db", destination)
    assert code == EXIT_ERROR and "not empty (1 people)" in error
    assert content(destination) == before
    code, report = copy(capsys, tmp_path / "a.db", destination, "--replace")
    assert code == 0 and report["verified"]
    assert content(destination) == content(tmp_path / "a.db")


def test_a_copy_that_fails_half_way_leaves_the_destination_as_it_was(tmp_path, destination, monkeypatch):
    fill(tmp_path / "a.db")
    real = gallery_copy.GalleryDigest.add_samples
    calls = []

    def fail_on_second_batch(self, batch):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("cable pulled")
        return real(self, batch)

    monkeypatch.setattr(gallery_copy.GalleryDigest, "add_samples", fail_on_second_batch)
    with open_gallery(tmp_path / "a.db") as source, open_gallery(destination) as target:
        with pytest.raises(RuntimeError, match="cable pulled"):
            gallery_copy.copy_gallery(source, target, batch_size=3)
        assert target.list_people() == [] and len(target.embeddings(ENCODERS[0])) == 0


def test_copying_a_gallery_onto_itself_or_from_nowhere_is_refused(capsys, tmp_path):
    fill(tmp_path / "a.db")
    code, error = copy(capsys, tmp_path / "a.db", tmp_path / "a.db")
    assert code == EXIT_ERROR and "same gallery" in error
    code, error = copy(capsys, tmp_path / "missing.db", tmp_path / "b.db")
    assert code == EXIT_ERROR and "no gallery there" in error
    assert not (tmp_path / "b.db").exists()


def test_the_check_notices_a_copy_that_differs(tmp_path, monkeypatch):
    fill(tmp_path / "a.db")
    real = gallery_copy.digest_of

    def tampered(gallery, batch_size=256):
        digest = real(gallery, batch_size)
        digest._crops.update(b"one flipped byte")
        return digest

    monkeypatch.setattr(gallery_copy, "digest_of", tampered)
    with open_gallery(tmp_path / "a.db") as source, open_gallery(tmp_path / "b.db") as target:
        with pytest.raises(GalleryError, match="does not match the source.*crops differ"):
            gallery_copy.copy_gallery(source, target)
