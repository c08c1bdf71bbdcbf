"""The ROS-free Recognizer driven through a whole stream, as the launch test drives the node.

Same photos, same threshold and the same checks as ``test/ros/test_recognizer_launch.py``: enroll
from images, recognise, strangers unknown, live enrollment from streamed frames, a threshold
change that takes effect within a few frames (the votes are cleared), forget. Plus what only the
core can show directly: the bounds on live enrollment, and parameters applied all or none.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from face_recognition_ros.errors import FaceRecognitionError
from face_recognition_ros.gallery import Gallery
from face_recognition_ros.node_parameters import BY_NAME, apply_runtime_parameters, build_recognizer
from face_recognition_ros.recognizer import EnrollmentRequestError, Recognizer
from frames import load_frame

MATCH_THRESHOLD = 0.92  # as in the launch test: the same-person / different-person gap of dlib_resnet here


@pytest.fixture(scope="module")
def knn(media_dir: Path) -> Path:
    return media_dir / "knn_examples"


def frame(knn: Path, relative: str) -> np.ndarray:
    return load_frame(knn / relative)  # the launch test's frames, pixel for pixel


def names(result) -> list[str]:
    return sorted(face.match.name for face in result.faces if face.match.is_known)


def becomes(recognizer: Recognizer, rgb: np.ndarray, expected: list[str], frames: int = 10) -> bool:
    """Whether the voted names reach ``expected`` within ``frames`` frames of ``rgb``."""
    return any(names(recognizer.process(rgb)) == expected for _ in range(frames))


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> Recognizer:
    values = {spec.name: spec.default for spec in BY_NAME.values()}
    values |= {"backend": "onnxruntime", "gallery_path": str(tmp_path_factory.mktemp("gallery") / "gallery.db")}
    built = build_recognizer(values)
    apply_runtime_parameters(built, {"match_threshold": MATCH_THRESHOLD, "enroll_duplicate_similarity": 0.99})
    yield built
    built.close()


def stream_while(recognizer: Recognizer, frames: list[np.ndarray], busy: threading.Thread, period: float = 0.05) -> None:
    """Feed ``frames`` in a loop to the recognizer for as long as ``busy`` runs (the camera)."""
    index = 0
    while busy.is_alive():
        recognizer.process(frames[index % len(frames)])
        index += 1
        time.sleep(period)


def enroll_in_background(recognizer: Recognizer, name: str, samples: int, timeout: float):
    """A live enrollment waiting in another thread (as in the node's service call); its outcome lands
    in the returned dict as "result" or "error"."""
    outcome: dict = {}

    def enroll() -> None:
        try:
            outcome["result"] = recognizer.enroll_live(name, samples, timeout)
        except FaceRecognitionError as error:
            outcome["error"] = str(error)

    enroller = threading.Thread(target=enroll)
    enroller.start()
    return enroller, outcome


def test_a_whole_stream_enroll_recognise_live_enroll_threshold_forget(recognizer, knn):
    # enroll with images
    for name, files in (("Barack Obama", ["obama.jpg", "obama2.jpg"]), ("Joe Biden", ["biden.jpg", "biden2.jpg"])):
        folder = name.split()[-1].lower()
        result = recognizer.enroll_images(name, [frame(knn, f"train/{folder}/{f}") for f in files])
        assert result.samples_added == 2 and result.person_id >= 0
    assert sorted(p.name for p in recognizer.list_people()) == ["Barack Obama", "Joe Biden"]
    assert [p.num_samples for p in recognizer.list_people()] == [2, 2]

    # bad requests change nothing
    with pytest.raises(FaceRecognitionError, match="no face"):
        recognizer.enroll_images("Nobody", [np.full((240, 320, 3), 127, np.uint8)])
    with pytest.raises(FaceRecognitionError, match="name"):
        recognizer.enroll_images("   ", [frame(knn, "train/obama/obama.jpg")])
    assert sorted(p.name for p in recognizer.list_people()) == ["Barack Obama", "Joe Biden"]

    # identities, strangers, empty frames
    both = np.ascontiguousarray(frame(knn, "test/obama_and_biden.jpg")[:, :500])
    recognizer.process(both)  # a track is named once track_min_votes (2) of its frames agree
    result = recognizer.process(both)
    assert names(result) == ["Barack Obama", "Joe Biden"]
    assert all(face.match.is_known and face.track_id >= 0 for face in result.faces)
    stranger = recognizer.process(frame(knn, "test/johnsnow_test1.jpg"))
    assert len(stranger.faces) == 1 and not stranger.faces[0].match.is_known
    assert recognizer.process(np.full((240, 320, 3), 90, np.uint8)).faces == []

    # live enrollment from streamed frames: the mirrored photos are near-duplicates and are skipped
    photos = [frame(knn, "test/alex_lacamoire1.jpg"), frame(knn, "train/alex_lacamoire/img1.jpg")]
    variants = [photos[0], np.ascontiguousarray(photos[0][:, ::-1]), photos[1], np.ascontiguousarray(photos[1][:, ::-1])]
    enroller, outcome = enroll_in_background(recognizer, "Alex Lacamoire", 2, 90.0)
    time.sleep(0.5)
    assert recognizer.live_enrollment_active and "Alex Lacamoire" not in [p.name for p in recognizer.list_people()]
    stream_while(recognizer, variants, enroller)
    assert outcome["result"].samples_added == 2
    assert becomes(recognizer, photos[0], ["Alex Lacamoire"])

    # a threshold change shows within a few frames, and 0.0 / None restores the calibrated default
    obama = frame(knn, "test/obama1.jpg")
    assert becomes(recognizer, obama, ["Barack Obama"])
    apply_runtime_parameters(recognizer, {"match_threshold": 0.99})
    assert becomes(recognizer, obama, []), "a 0.99 threshold should make the face unknown"
    with pytest.raises(ValueError):
        recognizer.set_match(threshold=1.5)
    apply_runtime_parameters(recognizer, {"match_threshold": 0.0})  # back to the open-set operating point
    assert recognizer.pipeline.matcher.target_far == 0.01
    assert recognizer.threshold >= recognizer.pipeline.encoder.default_threshold  # never looser than 1:1
    apply_runtime_parameters(recognizer, {"match_threshold": MATCH_THRESHOLD})
    assert becomes(recognizer, obama, ["Barack Obama"])

    # forget
    person, removed = recognizer.forget("Joe Biden")
    assert person.name == "Joe Biden" and removed == 2
    with pytest.raises(FaceRecognitionError):
        recognizer.forget("Nobody Known")
    assert sorted(p.name for p in recognizer.list_people()) == ["Alex Lacamoire", "Barack Obama"]
    biden = recognizer.process(frame(knn, "train/biden/biden2.jpg"))
    assert len(biden.faces) == 1 and not biden.faces[0].match.is_known


def test_an_enrollment_by_another_process_is_used_within_a_few_frames(recognizer, knn, media_dir):
    rose = frame(knn, "train/rose_leslie/img1.jpg")
    assert "Rose Leslie" not in names(recognizer.process(rose))
    # Another process (the CLI, another node) writes the same gallery file.
    other = Recognizer(recognizer.pipeline.__class__(recognizer.pipeline.config,
                                                      gallery=Gallery(recognizer.gallery.path)))
    other.enroll_images("Rose Leslie", [frame(knn, "train/rose_leslie/img2.jpg")])
    assert becomes(recognizer, rose, ["Rose Leslie"], frames=5)
    other.forget("Rose Leslie")
    assert becomes(recognizer, rose, [], frames=5)


def test_live_enrollment_without_a_face_fails_saying_so_and_stores_nothing(recognizer):
    blank = np.full((240, 320, 3), 60, np.uint8)
    enroller, outcome = enroll_in_background(recognizer, "Ghost", 2, 2.0)
    stream_while(recognizer, [blank], enroller)
    assert "face" in outcome["error"]
    assert "Ghost" not in [p.name for p in recognizer.list_people()]


def test_live_enrollment_without_frames_says_no_camera_frames_arrived(recognizer):
    with pytest.raises(FaceRecognitionError, match="no camera frames arrived"):
        recognizer.enroll_live("Nobody Here", 1, 1.0)


@pytest.mark.parametrize("timeout", [math.inf, math.nan, 1e9, -1.0])
def test_live_enrollment_refuses_unbounded_or_non_finite_timeouts_at_once(recognizer, timeout):
    started = time.monotonic()
    with pytest.raises(EnrollmentRequestError, match="timeout"):
        recognizer.enroll_live("Patient Person", 1, timeout)
    assert time.monotonic() - started < 0.5 and not recognizer.live_enrollment_active


def test_a_second_live_enrollment_is_refused_and_one_in_progress_can_be_cancelled(recognizer):
    enroller, outcome = enroll_in_background(recognizer, "First", 1, 60.0)
    deadline = time.monotonic() + 5
    while not recognizer.live_enrollment_active and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(EnrollmentRequestError, match="in progress"):
        recognizer.enroll_live("Second", 1, 5.0)
    assert recognizer.cancel_live_enrollment()
    enroller.join(5.0)
    assert not enroller.is_alive() and "cancelled" in outcome["error"]
    assert not recognizer.cancel_live_enrollment()  # nothing left to cancel


def test_runtime_parameters_are_applied_all_or_none(recognizer):
    before = (recognizer.threshold, recognizer.pipeline.detector.max_faces)
    with pytest.raises(ValueError, match="not changeable at run time"):
        apply_runtime_parameters(recognizer, {"match_threshold": 0.5, "encoder": "efficientnet_b0"})
    with pytest.raises(ValueError, match="enroll_max_timeout"):
        apply_runtime_parameters(recognizer, {"match_threshold": 0.5, "enroll_timeout": 300.0})
    with pytest.raises(ValueError):
        recognizer.configure(match={"threshold": 0.5}, detection={"max_faces": -3})
    assert (recognizer.threshold, recognizer.pipeline.detector.max_faces) == before
    apply_runtime_parameters(recognizer, {"max_faces": 0})
    assert recognizer.pipeline.detector.max_faces is None  # 0 = no limit
    apply_runtime_parameters(recognizer, {"max_faces": 10})
    assert recognizer.pipeline.detector.max_faces == 10


def test_a_recognizer_without_tracking_reports_each_frames_own_match(recognizer, knn):
    untracked = Recognizer(recognizer.pipeline, track=False)
    result = untracked.process(frame(knn, "test/obama1.jpg"))
    assert [face.track_id for face in result.faces] == [-1]


def test_enrolling_a_look_alike_or_the_same_person_under_another_name_warns(recognizer, knn):
    obama_again = recognizer.enroll_images("Obama Twin", [frame(knn, "test/obama1.jpg")])
    try:
        assert obama_again.warnings and "'Barack Obama'" in obama_again.warnings[0]
        assert "same person under another name" in obama_again.warnings[0]
    finally:
        recognizer.forget("Obama Twin")
    kit = recognizer.enroll_images("Kit Harington", [frame(knn, "train/kit_harington/john1.jpeg")])
    try:
        assert kit.warnings == []  # nobody enrolled looks like him
        more = recognizer.enroll_images("Kit Harington", [frame(knn, "train/kit_harington/john2.jpeg")])
        assert more.warnings == []  # more samples of the same person are not a look-alike of themselves
    finally:
        recognizer.forget("Kit Harington")


def test_the_decision_in_force_is_reported_with_each_face_and_in_the_status(recognizer, knn):
    apply_runtime_parameters(recognizer, {"match_threshold": 0.0})  # the open-set operating point
    if "Barack Obama" not in [p.name for p in recognizer.list_people()]:
        recognizer.enroll_images("Barack Obama", [frame(knn, "train/obama/obama.jpg")])
    result = recognizer.process(frame(knn, "test/obama1.jpg"))
    (face,) = result.faces
    assert face.match.threshold is not None and face.match.threshold >= recognizer.pipeline.encoder.default_threshold
    status = recognizer.status()
    assert float(status["match_threshold"]) == pytest.approx(recognizer.threshold, abs=1e-3)
    decision = recognizer.pipeline.decision()
    assert decision["target_false_accept_rate"] == 0.01 and "target false accepts" in decision["description"]
    apply_runtime_parameters(recognizer, {"match_threshold": MATCH_THRESHOLD})


def test_a_failed_forget_stands_as_a_problem_until_a_forget_succeeds(recognizer, knn, monkeypatch):
    from face_recognition_ros.errors import GalleryError
    from face_recognition_ros.stream import ERROR, HealthReport, StreamStats

    recognizer.enroll_images("Erase Me", [frame(knn, "train/rose_leslie/img1.jpg")])
    real_forget = recognizer.gallery.forget

    def full_disk(person):
        raise GalleryError("cannot forget a person in the gallery: database or disk is full")

    monkeypatch.setattr(recognizer.gallery, "forget", full_disk)
    with pytest.raises(GalleryError):
        recognizer.forget("Erase Me")
    assert "forget failed" in recognizer.problem
    level, message, _ = HealthReport("/camera").make(StreamStats().snapshot(), {}, recognizer.problem)
    assert level == ERROR and "disk is full" in message
    monkeypatch.setattr(recognizer.gallery, "forget", real_forget)
    recognizer.forget("Erase Me")
    assert recognizer.problem == ""
