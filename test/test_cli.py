"""The ``face-recognition-ros`` command: real runs, and every kind of bad input named in the issue."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from face_recognition_ros.cli.main import EXIT_ERROR, main
from face_recognition_ros.tracking import FaceTracker


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def digest(path: Path) -> str:
    """Hash of the gallery's whole content (WAL checkpoints change the file bytes, not the data)."""
    if not path.exists():
        return "absent"
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(connection.iterdump()).encode()).hexdigest()
    finally:
        connection.close()


@pytest.fixture
def gallery(tmp_path: Path) -> Path:
    return tmp_path / "gallery.db"


@pytest.fixture
def enrolled(capsys, gallery: Path, media_dir: Path) -> Path:
    code, _, err = run(capsys, "enroll", "obama", media_dir / "obama.jpg", media_dir / "obama2.jpg", "--gallery", gallery)
    assert code == 0, err
    return gallery


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def write_image(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def test_help_is_available_for_every_command(capsys):
    for argv in (["--help"], ["enroll", "--help"], ["gallery", "list", "--help"], ["recognize", "--help"],
                 ["eval", "lfw", "--help"], ["eval", "identify", "--help"], ["bench", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_recognize_help_states_the_trackers_own_frames_to_agree(capsys):
    with pytest.raises(SystemExit):
        main(["recognize", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"named once {FaceTracker().min_votes} frames of its track agree" in help_text


def test_enroll_then_list_reports_the_person_with_samples(capsys, enrolled):
    code, out, _ = run(capsys, "gallery", "list", "--gallery", enrolled, "--json")
    assert code == 0
    people = json.loads(out)["people"]
    assert [(p["name"], p["samples"]) for p in people] == [("obama", 2)]


def test_enroll_skips_a_group_photo_where_who_is_meant_would_be_a_guess(capsys, enrolled, media_dir):
    before = digest(enrolled)
    code, _, err = run(capsys, "enroll", "biden", media_dir / "two_people.jpg", "--gallery", enrolled)
    assert code == EXIT_ERROR
    assert "two_people.jpg: 2 faces of about the same size" in err and "nothing was enrolled" in err
    assert digest(enrolled) == before
    code, out, _ = run(capsys, "enroll", "biden", media_dir / "two_people.jpg", media_dir / "biden.jpg",
                       "--gallery", enrolled, "--json")
    assert code == 0
    record = json.loads(out)
    assert record["samples_added"] == 1
    assert [reason.split(": ", 1)[1].split(",")[0] for reason in record["skipped"]] == ["2 faces of about the same size"]


def test_recognize_json_has_the_documented_fields(capsys, enrolled, media_dir):
    code, out, _ = run(capsys, "recognize", media_dir / "knn_examples" / "test" / "obama1.jpg",
                       "--gallery", enrolled, "--json")
    assert code == 0
    record = json.loads(out)
    assert record["frame"] is None and record["source"].endswith("obama1.jpg")
    (face,) = record["faces"]
    assert set(face) >= {"box", "landmarks", "score", "name", "person_id", "is_known", "similarity", "margin"}
    assert face["name"] == "obama" and face["is_known"] is True
    assert len(face["box"]) == 4 and len(face["landmarks"]) == 5


def test_recognize_annotate_writes_an_image_of_the_same_size(capsys, enrolled, media_dir, tmp_path):
    out_path = tmp_path / "annotated.png"
    code, _, _ = run(capsys, "recognize", media_dir / "two_people.jpg", "--gallery", enrolled,
                     "--annotate", out_path)
    assert code == 0
    written = cv2.imread(str(out_path))
    assert written.shape == cv2.imread(str(media_dir / "two_people.jpg")).shape


def test_recognize_video_emits_one_json_object_per_frame(capsys, enrolled, media_dir):
    code, out, _ = run(capsys, "recognize", media_dir / "short_hamilton_clip.mp4", "--gallery", enrolled,
                       "--json", "--max-frames", "3")
    assert code == 0
    frames = [json.loads(line) for line in out.splitlines()]
    assert [record["frame"] for record in frames] == [0, 1, 2]
    # faces are tracked across frames: the same people keep their track ids
    first_ids = sorted(face["track_id"] for face in frames[0]["faces"])
    assert first_ids and min(first_ids) >= 0
    assert set(first_ids) & {face["track_id"] for face in frames[2]["faces"]}


def test_recognize_video_says_a_matched_face_is_unknown_only_until_its_track_confirms_it(capsys, enrolled,
                                                                                         media_dir, tmp_path):
    video = tmp_path / "obama.avi"
    image = cv2.imread(str(media_dir / "obama.jpg"))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (image.shape[1], image.shape[0]))
    for _ in range(2):
        writer.write(image)
    writer.release()
    code, out, _ = run(capsys, "recognize", video, "--gallery", enrolled)
    assert code == 0
    first, second = [line for line in out.splitlines() if line.startswith(str(video))]
    assert first.startswith(f"{video}#0: unknown until 1 more frame(s) agree (similarity")
    assert second.startswith(f"{video}#1: obama (similarity")
    code, out, _ = run(capsys, "recognize", video, "--gallery", enrolled, "--json")
    faces = [json.loads(line)["faces"][0] for line in out.splitlines()]
    assert [(face["is_known"], face["frames_to_confirm"]) for face in faces] == [(False, 1), (True, 0)]


def test_rename_and_forget_change_the_gallery(capsys, enrolled):
    assert run(capsys, "gallery", "rename", "obama", "Barack Obama", "--gallery", enrolled)[0] == 0
    _, out, _ = run(capsys, "gallery", "list", "--gallery", enrolled, "--json")
    assert [p["name"] for p in json.loads(out)["people"]] == ["Barack Obama"]
    code, out, _ = run(capsys, "gallery", "forget", "Barack Obama", "--gallery", enrolled, "--json")
    assert code == 0 and json.loads(out)["samples_removed"] == 2
    _, out, _ = run(capsys, "gallery", "list", "--gallery", enrolled, "--json")
    assert json.loads(out)["people"] == []


# --- bad input: a one-line error, a non-zero exit, and the gallery unchanged -------------------


@pytest.mark.parametrize(
    "make_file, message",
    [
        (lambda p: write_bytes(p, b"\xff\xd8\xff\xe0 not really a jpeg"), "not a readable image"),
        (lambda p: write_bytes(p, b""), "empty"),
        (lambda p: write_image(p, np.zeros((1, 1, 3), np.uint8)), "too small"),
    ],
    ids=["corrupt", "zero-size", "one-pixel"],
)
def test_unusable_image_fails_enroll_cleanly_and_leaves_gallery_unchanged(capsys, enrolled, tmp_path, make_file, message):
    bad = make_file(tmp_path / "bad.png")
    before = digest(enrolled)
    code, out, err = run(capsys, "enroll", "someone", bad, "--gallery", enrolled)
    assert code == EXIT_ERROR
    assert message in err and err.count("\n") == 1
    assert digest(enrolled) == before


def test_missing_file_is_a_clear_error(capsys, gallery, tmp_path):
    code, _, err = run(capsys, "recognize", tmp_path / "nope.jpg", "--gallery", gallery)
    assert code == EXIT_ERROR and "no such file" in err


def test_photo_without_a_face_enrolls_nothing(capsys, enrolled, tmp_path):
    blank = write_image(tmp_path / "wall.png", np.full((240, 320, 3), 128, np.uint8))
    before = digest(enrolled)
    code, _, err = run(capsys, "enroll", "wall", blank, "--gallery", enrolled)
    assert code == EXIT_ERROR and "no face" in err
    assert digest(enrolled) == before


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "bad\nname", "tab\tname", "nul\x00name"],
                         ids=["empty", "blank", "over-long", "newline", "tab", "nul"])
def test_invalid_names_are_rejected_before_anything_is_written(capsys, enrolled, media_dir, name):
    before = digest(enrolled)
    code, _, err = run(capsys, "enroll", name, media_dir / "biden.jpg", "--gallery", enrolled)
    assert code == EXIT_ERROR and err.startswith("error:") and err.count("\n") == 1
    assert digest(enrolled) == before


def test_odd_pixel_formats_are_recognised_not_rejected(capsys, enrolled, media_dir, tmp_path):
    bgr = cv2.imread(str(media_dir / "knn_examples" / "test" / "obama1.jpg"))
    variants = {
        "gray.png": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "rgba.png": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "deep.png": bgr.astype(np.uint16) * 257,
    }
    for file_name, image in variants.items():
        path = write_image(tmp_path / file_name, image)
        code, out, err = run(capsys, "recognize", path, "--gallery", enrolled, "--json")
        assert code == 0, err
        assert [face["name"] for face in json.loads(out)["faces"]] == ["obama"], file_name


def test_very_large_image_is_downscaled_for_detection(capsys, enrolled, media_dir, tmp_path):
    face = cv2.imread(str(media_dir / "knn_examples" / "test" / "obama1.jpg"))
    big = np.full((8000, 8000, 3), 90, np.uint8)
    scaled = cv2.resize(face, None, fx=4, fy=4)
    big[1000:1000 + scaled.shape[0], 1000:1000 + scaled.shape[1]] = scaled
    path = write_image(tmp_path / "big.jpg", big)
    code, out, err = run(capsys, "recognize", path, "--gallery", enrolled, "--json")
    assert code == 0, err
    assert [face["name"] for face in json.loads(out)["faces"]] == ["obama"]


def test_listing_a_gallery_that_does_not_exist_is_an_error(capsys, tmp_path):
    code, _, err = run(capsys, "gallery", "list", "--gallery", tmp_path / "gallery.db")
    assert code == EXIT_ERROR and "no gallery" in err
    code, _, err = run(capsys, "gallery", "list", "--gallery", tmp_path / "missing" / "gallery.db")
    assert code == EXIT_ERROR and "does not exist" in err


def test_enrolling_into_a_missing_directory_is_an_error(capsys, media_dir, tmp_path):
    target = tmp_path / "no-such-dir" / "gallery.db"
    code, _, err = run(capsys, "enroll", "obama", media_dir / "obama.jpg", "--gallery", target)
    assert code == EXIT_ERROR and "does not exist" in err
    assert not target.parent.exists()


def test_read_only_gallery_refuses_enrollment_and_stays_unchanged(capsys, enrolled, media_dir, monkeypatch):
    # Root ignores file modes, so the gallery is made read-only the way a user's would be seen:
    # through the writability probe the gallery uses.
    import face_recognition_ros.gallery as gallery_module

    monkeypatch.setattr(gallery_module, "_writable", lambda path: False)
    before = digest(enrolled)
    code, _, err = run(capsys, "enroll", "biden", media_dir / "biden.jpg", "--gallery", enrolled)
    assert code == EXIT_ERROR and "read-only" in err
    code, out, _ = run(capsys, "gallery", "list", "--gallery", enrolled, "--json")
    assert code == 0 and [p["name"] for p in json.loads(out)["people"]] == ["obama"]
    assert digest(enrolled) == before


def test_bench_reports_every_stage_and_fps(capsys, media_dir):
    code, out, err = run(capsys, "bench", "--image", media_dir / "two_people.jpg", "--width", 640, "--height", 480,
                         "--repeat", 2, "--warmup", 1, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert set(report["stages_ms"]) == {"decode", "detect", "align", "embed", "match"}
    assert report["faces"] == 2 and report["fps"] > 0


def test_folder_input_reports_a_bad_file_and_goes_on(capsys, enrolled, media_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(media_dir / "knn_examples" / "test" / "obama1.jpg", folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"garbage")
    code, out, err = run(capsys, "recognize", folder, "--gallery", enrolled, "--json")
    assert code == 1
    assert "b.jpg" in err
    assert [json.loads(line)["faces"][0]["name"] for line in out.splitlines()] == ["obama"]


def test_recognize_refuses_an_image_it_cannot_decode_instead_of_playing_it_as_a_video(capsys, enrolled, tmp_path):
    # OpenCV's video reader opens a 3-channel float TIFF (which Pillow cannot parse) as a one-frame video.
    float_tiff = tmp_path / "float.tiff"
    assert cv2.imwrite(str(float_tiff), np.random.default_rng(0).random((64, 64, 3), dtype=np.float32))
    code, out, err = run(capsys, "recognize", float_tiff, "--gallery", enrolled, "--json")
    assert code == EXIT_ERROR and out == ""
    assert "float.tiff: not an image or a video this software can read" in err


# ------------------------------------------------------------------ eval lfw --record-threshold

TINY_LFW_PEOPLE = {
    "Barack_Obama": ("obama/obama.jpg", "obama/obama2.jpg"),
    "Joe_Biden": ("biden/biden.jpg", "biden/biden2.jpg"),
    "Kit_Harington": ("kit_harington/john1.jpeg", "kit_harington/john2.jpeg"),
    "Rose_Leslie": ("rose_leslie/img1.jpg", "rose_leslie/img2.jpg"),
}


@pytest.fixture
def tiny_lfw(tmp_path: Path, media_dir: Path) -> Path:
    """An LFW-layout folder with a 10-fold pairs.txt (one same and one different pair per fold)."""
    root = tmp_path / "tiny_lfw"
    for name, photos in TINY_LFW_PEOPLE.items():
        (root / name).mkdir(parents=True)
        for number, photo in enumerate(photos, start=1):
            shutil.copy(media_dir / "knn_examples" / "train" / photo, root / name / f"{name}_{number:04d}.jpg")
    names = list(TINY_LFW_PEOPLE)
    lines = ["10 1"]
    for fold in range(10):
        first, second = names[fold % 4], names[(fold + 1) % 4]
        lines += [f"{first} 1 2", f"{first} {1 + fold % 2} {second} {2 - fold % 2}"]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def effnet_copy(tmp_path: Path) -> Path:
    from face_recognition_ros.encoders.efficientnet_checkpoint import DEFAULT_WEIGHTS

    path = tmp_path / "model" / "efficientnet_b0.pt"
    path.parent.mkdir()
    shutil.copy(DEFAULT_WEIGHTS, path)
    shutil.copy(DEFAULT_WEIGHTS.with_suffix(".json"), path.with_suffix(".json"))
    return path


def test_eval_lfw_records_the_mean_fold_threshold_as_the_checkpoints_default(capsys, tiny_lfw, effnet_copy):
    from face_recognition_ros.encoders.efficientnet import EfficientNetEncoder

    code, out, err = run(capsys, "eval", "lfw", "--lfw-dir", tiny_lfw, "--encoder", "efficientnet_b0",
                         "--encoder-weights", effnet_copy, "--record-threshold", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["pairs"] == 20
    recorded = result["recorded_threshold"]
    assert recorded == pytest.approx(float(np.mean(result["thresholds"])), abs=1e-4)
    assert EfficientNetEncoder(weights=effnet_copy).default_threshold == pytest.approx(recorded)
    card = json.loads(effnet_copy.with_suffix(".json").read_text())
    assert card["lfw_threshold"] == pytest.approx(recorded)
    assert "per-fold thresholds" in card["metadata"]["lfw_calibration"]
    assert sorted(p.name for p in effnet_copy.parent.iterdir()) == ["efficientnet_b0.json", "efficientnet_b0.pt"]


def test_eval_lfw_with_the_flip_calibrates_a_checkpoint_that_has_no_flip_threshold_yet(capsys, tiny_lfw, effnet_copy):
    from face_recognition_ros.encoders.efficientnet import EfficientNetEncoder

    plain = EfficientNetEncoder(weights=effnet_copy)
    assert plain.flip_threshold is None
    code, out, err = run(capsys, "eval", "lfw", "--lfw-dir", tiny_lfw, "--encoder", "efficientnet_b0",
                         "--encoder-weights", effnet_copy, "--test-time-flip", "--record-threshold", "--json")
    assert code == 0, err
    recorded = json.loads(out)["recorded_threshold"]
    calibrated = EfficientNetEncoder(weights=effnet_copy)
    assert calibrated.flip_threshold == pytest.approx(recorded)
    assert calibrated.default_threshold == pytest.approx(plain.default_threshold)  # the plain one is kept
    card = json.loads(effnet_copy.with_suffix(".json").read_text())
    assert "--test-time-flip" in card["metadata"]["lfw_calibration_flip"]


@pytest.mark.parametrize("extra, message", [
    (["--encoder", "dlib_resnet"], "--encoder efficientnet_b0"),
    (["--encoder", "efficientnet_b0"], "--encoder-weights"),
    (["--encoder", "efficientnet_b0", "--encoder-weights", "WEIGHTS", "--folds", "1"], "10 folds"),
])
def test_eval_lfw_refuses_to_record_a_threshold_it_cannot_or_should_not(capsys, tiny_lfw, effnet_copy, extra, message):
    before = effnet_copy.read_bytes()
    argv = [str(effnet_copy) if a == "WEIGHTS" else a for a in extra]
    code, _, err = run(capsys, "eval", "lfw", "--lfw-dir", tiny_lfw, "--record-threshold", *argv)
    assert code == EXIT_ERROR and message in err
    assert effnet_copy.read_bytes() == before


# ------------------------------------------------------------------ what the face limit drops, what is an image

def test_max_faces_that_drops_faces_says_so(capsys, enrolled, media_dir):
    code, out, err = run(capsys, "recognize", media_dir / "two_people.jpg", "--gallery", enrolled, "--json",
                         "--max-faces", "1")
    assert code == 0, err
    assert len(json.loads(out)["faces"]) == 1
    assert "2 faces found, only the 1 largest were recognised" in err


def test_max_faces_zero_means_no_limit(capsys, enrolled, media_dir):
    code, out, err = run(capsys, "recognize", media_dir / "two_people.jpg", "--gallery", enrolled, "--json",
                         "--max-faces", "0")
    assert code == 0, err
    assert len(json.loads(out)["faces"]) == 2 and "warning" not in err


def test_negative_max_faces_is_a_clear_error(capsys, enrolled, media_dir):
    code, _, err = run(capsys, "recognize", media_dir / "obama.jpg", "--gallery", enrolled, "--max-faces", "-1")
    assert code == EXIT_ERROR and err.startswith("error: --max-faces")


@pytest.mark.parametrize("option, value, shown", [
    ("--threshold", "2", "outside [-1, 1]"), ("--threshold", "nan", "outside [-1, 1]"),
    ("--target-far", "0", "outside (0, 1)"), ("--target-far", "1", "outside (0, 1)"),
    ("--margin", "-0.1", "outside [0, 2]"), ("--threads", "0", "outside [1, inf]"),
    ("--threads", "two", "not an integer"), ("--min-face-size", "-1", "outside [0, inf]"),
    ("--detector-max-size", "-640", "outside [0, inf]"),
])
def test_a_model_option_out_of_its_range_is_a_usage_error_not_a_traceback(capsys, enrolled, media_dir, option, value,
                                                                         shown):
    before = digest(enrolled)
    with pytest.raises(SystemExit) as exit_info:
        main(["recognize", str(media_dir / "obama.jpg"), "--gallery", str(enrolled), option, value])
    err = capsys.readouterr().err
    assert exit_info.value.code == EXIT_ERROR
    assert f"argument {option}: " in err and shown in err and "Traceback" not in err
    assert digest(enrolled) == before


def test_annotating_to_a_name_no_image_format_has_is_refused_before_any_work(capsys, enrolled, media_dir, tmp_path):
    code, out, err = run(capsys, "recognize", media_dir / "obama.jpg", "--gallery", enrolled,
                         "--annotate", tmp_path / "faces.txt")
    assert code == EXIT_ERROR and out == ""
    assert "faces.txt: no image format this software writes has that extension" in err
    assert not (tmp_path / "faces.txt").exists()


def test_an_output_file_that_cannot_be_written_is_a_one_line_error(capsys, tmp_path):
    blocker = write_bytes(tmp_path / "models", b"a file, not a folder")
    code, _, err = run(capsys, "export", "--detector", "--format", "onnx", "--out", blocker / "detector.onnx")
    assert code == EXIT_ERROR
    assert err.strip() == f"error: {blocker}: a file is where a folder should be"
    assert blocker.read_bytes() == b"a file, not a folder"


@pytest.mark.parametrize("name, fmt", [("obama.gif", "GIF"), ("obama.pgm", "PPM"), ("obama_photo", "JPEG")])
def test_images_are_recognised_by_content_not_extension(capsys, enrolled, media_dir, tmp_path, name, fmt):
    from PIL import Image

    image = Image.open(media_dir / "knn_examples" / "test" / "obama1.jpg")
    image = image.convert("L") if name.endswith(".pgm") else image.convert("RGB")
    image.save(tmp_path / name, fmt)
    code, out, err = run(capsys, "recognize", tmp_path / name, "--gallery", enrolled, "--json")
    assert code == 0, err
    assert [face["name"] for face in json.loads(out)["faces"]] == ["obama"]


def test_enroll_from_a_folder_names_the_files_that_are_not_images(capsys, gallery, media_dir, tmp_path):
    folder = tmp_path / "ada"
    folder.mkdir()
    shutil.copy(media_dir / "obama.jpg", folder / "photo")
    (folder / "notes.png").write_text("not a picture")
    code, out, err = run(capsys, "enroll", "Ada", folder, "--gallery", gallery)
    assert code == 0, err
    assert "1 sample(s)" in out and "notes.png: not an image" in out


def test_a_text_file_named_png_is_refused_the_same_way_by_enroll_and_recognize(capsys, enrolled, tmp_path):
    fake = tmp_path / "fake.png"
    fake.write_text("hello")
    before = digest(enrolled)
    for argv in (("enroll", "obama", fake), ("recognize", fake)):
        code, _, err = run(capsys, *argv, "--gallery", enrolled)
        assert code == EXIT_ERROR and "fake.png" in err and "not" in err, err
    assert digest(enrolled) == before


def test_eval_identify_reports_a_non_image_as_such_not_as_a_missed_face(capsys, media_dir, tmp_path):
    people = tmp_path / "people"
    for person in ("obama", "biden", "kit_harington", "rose_leslie"):
        shutil.copytree(media_dir / "knn_examples" / "train" / person, people / person)
    (people / "obama" / "broken.jpg").write_text("not an image")
    code, out, err = run(capsys, "eval", "identify", "--data", people, "--enroll-per-identity", "1",
                         "--unknown-fraction", "0.25", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["skipped_files"] == [f"{people / 'obama' / 'broken.jpg'}: not an image"]
    assert result["failed_detections"] == 0
    assert "broken.jpg" in err


@pytest.mark.parametrize("plot, extra, message", [
    ("missing/det.png", [], "no folder"),
    ("det.txt", [], "name it .png, .svg or .pdf"),
    ("det.png", ["--threshold", "0.9"], "leave out --threshold"),
])
def test_eval_identify_refuses_a_plot_it_could_not_draw_before_evaluating(capsys, media_dir, tmp_path, monkeypatch,
                                                                          plot, extra, message):
    import face_recognition_ros.evaluation.identify as identify

    monkeypatch.setattr(identify, "evaluate_identification", lambda *a, **k: pytest.fail("evaluated first"))
    code, _, err = run(capsys, "eval", "identify", "--data", media_dir / "knn_examples" / "train",
                       "--plot", tmp_path / plot, *extra)
    assert code == EXIT_ERROR and message in err, err


def test_recognize_json_reports_the_threshold_in_force_for_the_frame_and_each_face(capsys, enrolled, media_dir):
    code, out, err = run(capsys, "recognize", media_dir / "knn_examples" / "test" / "obama1.jpg", "--gallery", enrolled,
                         "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["decision"]["target_false_accept_rate"] == 0.01 and record["decision"]["threshold"] >= 0.9
    assert record["faces"][0]["threshold"] >= record["decision"]["threshold"] - 0.05
    code, out, _ = run(capsys, "recognize", media_dir / "obama.jpg", "--gallery", enrolled, "--json", "--threshold", "0.95")
    assert json.loads(out)["decision"] == {"threshold": 0.95, "margin": 0.01, "mode": "fixed threshold"}


def test_enroll_warns_about_a_look_alike(capsys, enrolled, media_dir):
    code, out, err = run(capsys, "enroll", "Barack", media_dir / "obama-480p.jpg", "--gallery", enrolled, "--json")
    assert code == 0, err
    assert json.loads(out)["warnings"] and "'obama'" in err
