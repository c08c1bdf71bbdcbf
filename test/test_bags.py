"""Off-ROS bag tools: video -> Image bag, and bag -> FaceIdentities bag, in mcap and sqlite3 (no ROS needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from face_recognition_ros.bags import (
    COMPRESSED_TYPE,
    IDENTITIES_TOPIC,
    IDENTITIES_TYPE,
    IMAGE_TYPE,
    INTERFACES_DIR,
    MESSAGE_NAMES,
    BagError,
    _writer,
    bag_storage,
    make_typestore,
    process_bag,
    video_to_bag,
)
from face_recognition_ros.errors import FaceRecognitionError, ImageError
from face_recognition_ros.pipeline import PipelineConfig
from face_recognition_ros.recognizer import Recognizer
from face_recognition_ros.tracking import FaceTracker
from face_recognition_ros.types import FaceResult, FrameResult, Match

REPO_MSG_DIR = Path(__file__).resolve().parents[1] / "msg"
START_NS = 1_700_000_000_000_000_000
TYPESTORE = make_typestore()


class FakePipeline:
    """Returns fixed faces and remembers the frames it was given (a Recognizer can run it too)."""

    gallery_revision = 0
    config = PipelineConfig()

    def __init__(self, matches: list[Match] | None = None):
        self.matches = matches or [Match(3, "ann", 0.71, 0.2)]
        self.frames: list[np.ndarray] = []

    def recognise(self, image: np.ndarray, storage_crops: bool = False) -> tuple[FrameResult, None]:
        return self.process(image), None

    def process(self, image: np.ndarray) -> FrameResult:
        self.frames.append(image.copy())
        match = self.matches[(len(self.frames) - 1) % len(self.matches)]
        face = FaceResult(
            box=np.array([10.5, 20.0, 60.0, 90.0], np.float32),
            landmarks=np.arange(10, dtype=np.float32).reshape(5, 2) + 30,
            score=0.93,
            match=match,
        )
        return FrameResult([face], {"total": 1.0}, (image.shape[1], image.shape[0]))


def read_bag(path: Path) -> list[tuple[str, str, int, object]]:
    """(topic, msgtype, log time, message) of every record."""
    with Reader(path) as reader:
        return [(c.topic, c.msgtype, t, TYPESTORE.deserialize_cdr(raw, c.msgtype)) for c, t, raw in reader.messages()]


def write_image_bag(path: Path, images: list[dict], storage: str = "mcap", msgtype: str = IMAGE_TYPE,
                    topic: str = "/cam") -> None:
    """A bag of Image (or CompressedImage) messages from field dicts; stamps START_NS + i ms."""
    types = TYPESTORE.types
    with _writer(path, storage) as writer:
        connection = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        for i, fields in enumerate(images):
            stamp = START_NS + i * 1_000_000
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](sec=stamp // 10**9, nanosec=stamp % 10**9),
                frame_id=f"frame_{i}")
            msg = types[msgtype](header=header, **fields)
            writer.write(connection, stamp + 5, TYPESTORE.serialize_cdr(msg, msgtype))


def image_fields(rgb: np.ndarray, pad: int = 0, encoding: str = "rgb8") -> dict:
    pixels = rgb if encoding == "rgb8" else rgb[:, :, ::-1]
    rows = np.concatenate([pixels.reshape(len(pixels), -1), np.full((len(pixels), pad), 7, np.uint8)], axis=1)
    return dict(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0,
                step=rows.shape[1], data=np.ascontiguousarray(rows).reshape(-1))


@pytest.fixture
def rgb_frames() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(3)]


def test_packaged_message_definitions_equal_the_ones_rosidl_builds():
    if not REPO_MSG_DIR.is_dir():
        pytest.skip("not a source checkout (no msg/ folder)")
    for name in MESSAGE_NAMES:
        assert (INTERFACES_DIR / f"{name}.msg").read_bytes() == (REPO_MSG_DIR / f"{name}.msg").read_bytes(), name


def test_typestore_knows_the_project_messages_with_their_fields():
    identity = TYPESTORE.types["face_recognition_ros/msg/FaceIdentity"]
    assert {"x_min", "landmarks", "detection_score", "name", "person_id", "is_known", "similarity", "margin",
            "track_id"} <= set(identity.__dataclass_fields__)
    assert set(TYPESTORE.types[IDENTITIES_TYPE].__dataclass_fields__) >= {"header", "faces"}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_video_to_bag_writes_the_video_frames_with_their_times(tmp_path, media_dir, storage):
    video = media_dir / "short_hamilton_clip.mp4"
    summary = video_to_bag(video, tmp_path / "cam", topic="/camera/image_raw", frame_id="cam_link",
                           storage=storage, max_frames=6, start_time_ns=START_NS)
    assert (summary.frames, summary.storage) == (6, storage)
    assert bag_storage(tmp_path / "cam") == storage
    records = read_bag(tmp_path / "cam")
    assert len(records) == 6
    capture = cv2.VideoCapture(str(video))
    for topic, msgtype, log_time, msg in records:
        ok, bgr = capture.read()
        assert ok
        expected_ns = START_NS + round(capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
        assert (topic, msgtype) == ("/camera/image_raw", IMAGE_TYPE)
        assert (msg.encoding, msg.header.frame_id) == ("bgr8", "cam_link")
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == expected_ns == log_time
        np.testing.assert_array_equal(msg.data.reshape(msg.height, msg.width, 3), bgr)
    capture.release()
    assert records[-1][2] - records[0][2] == pytest.approx(5 / 29.97 * 1e9, rel=1e-3)


def test_video_to_bag_can_write_rgb8_and_a_fixed_rate(tmp_path, media_dir):
    summary = video_to_bag(media_dir / "short_hamilton_clip.mp4", tmp_path / "cam", encoding="rgb8", fps=10.0,
                           max_frames=3, start_time_ns=START_NS)
    records = read_bag(tmp_path / "cam")
    assert [t for _, _, t, _ in records] == [START_NS, START_NS + 100_000_000, START_NS + 200_000_000]
    assert records[0][3].encoding == "rgb8" and summary.fps == 10.0


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_process_bag_writes_identities_with_each_images_header(tmp_path, rgb_frames, storage):
    write_image_bag(tmp_path / "in", [image_fields(rgb_frames[0]), image_fields(rgb_frames[1], pad=5),
                                      image_fields(rgb_frames[2], encoding="bgr8")], storage=storage)
    pipeline = FakePipeline()
    summary = process_bag(tmp_path / "in", "/cam", tmp_path / "out", Recognizer(pipeline, FaceTracker(min_votes=1)))
    assert (summary.images, summary.processed, summary.skipped, summary.faces) == (3, 3, 0, 3)
    assert summary.storage == storage == bag_storage(tmp_path / "out")
    assert summary.names == {"ann": 3}
    for seen, sent in zip(pipeline.frames, rgb_frames):
        np.testing.assert_array_equal(seen, sent)  # padded rows and bgr8 converted
    inputs, outputs = read_bag(tmp_path / "in"), read_bag(tmp_path / "out")
    assert len(outputs) == 3
    for (_, _, in_time, image), (topic, msgtype, out_time, identities) in zip(inputs, outputs):
        assert (topic, msgtype, out_time) == (IDENTITIES_TOPIC, IDENTITIES_TYPE, in_time)
        assert identities.header.frame_id == image.header.frame_id
        assert (identities.header.stamp.sec, identities.header.stamp.nanosec) == (image.header.stamp.sec,
                                                                                  image.header.stamp.nanosec)
        (face,) = identities.faces
        assert (face.x_min, face.y_min, face.x_max, face.y_max) == (10.5, 20.0, 60.0, 90.0)
        np.testing.assert_allclose(face.landmarks, np.arange(10) + 30)
        assert (face.name, face.person_id, face.is_known, face.track_id) == ("ann", 3, True, 0)
        assert face.similarity == pytest.approx(0.71) and face.detection_score == pytest.approx(0.93)


def test_unknown_faces_have_empty_name_and_person_id_minus_one(tmp_path, rgb_frames):
    write_image_bag(tmp_path / "in", [image_fields(rgb_frames[0])])
    process_bag(tmp_path / "in", "/cam", tmp_path / "out", FakePipeline([Match(None, None, 0.3, 0.01)]))
    (face,) = read_bag(tmp_path / "out")[0][3].faces
    assert (face.name, face.person_id, face.is_known) == ("", -1, False)


def test_process_bag_can_write_another_storage(tmp_path, rgb_frames):
    write_image_bag(tmp_path / "in", [image_fields(rgb_frames[0])], storage="mcap")
    summary = process_bag(tmp_path / "in", "/cam", tmp_path / "out", FakePipeline(), storage="sqlite3")
    assert summary.storage == "sqlite3" and bag_storage(tmp_path / "out") == "sqlite3"
    assert len(read_bag(tmp_path / "out")) == 1


def test_bad_images_are_skipped_and_reported_not_fatal(tmp_path, rgb_frames):
    good = image_fields(rgb_frames[0])
    truncated = dict(good, data=good["data"][:-10])
    unknown = dict(good, encoding="bayer_rggb42")
    write_image_bag(tmp_path / "in", [truncated, good, unknown])
    out = io.StringIO()
    summary = process_bag(tmp_path / "in", "/cam", tmp_path / "out", FakePipeline(), json_lines=True, json_out=out)
    assert (summary.images, summary.processed, summary.skipped) == (3, 1, 2)
    assert "truncated" in summary.errors[0] and "unsupported image encoding" in summary.errors[1]
    assert [msg.header.frame_id for *_, msg in read_bag(tmp_path / "out")] == ["frame_1"]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [("error" in line, line["frame_id"]) for line in lines] == [(True, "frame_0"), (False, "frame_1"),
                                                                         (True, "frame_2")]


def test_json_lines_give_stamp_and_faces_per_image(tmp_path, rgb_frames):
    write_image_bag(tmp_path / "in", [image_fields(f) for f in rgb_frames[:2]])
    out = io.StringIO()
    process_bag(tmp_path / "in", "/cam", tmp_path / "out", FakePipeline(), json_lines=True, json_out=out)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["index"] for line in lines] == [0, 1]
    assert lines[1]["stamp"] == {"sec": START_NS // 10**9, "nanosec": 1_000_000}
    assert lines[0]["faces"][0]["name"] == "ann" and lines[0]["faces"][0]["box"] == [10.5, 20.0, 60.0, 90.0]


def test_compressed_images_are_decoded(tmp_path, rgb_frames):
    png = cv2.imencode(".png", cv2.cvtColor(rgb_frames[0], cv2.COLOR_RGB2BGR))[1].reshape(-1)
    write_image_bag(tmp_path / "in", [dict(format="png", data=png)], msgtype=COMPRESSED_TYPE)
    pipeline = FakePipeline()
    assert process_bag(tmp_path / "in", "/cam", tmp_path / "out", pipeline).processed == 1
    np.testing.assert_array_equal(pipeline.frames[0], rgb_frames[0])


def test_identities_are_voted_over_the_track_like_the_node_unless_tracking_is_off(tmp_path, rgb_frames):
    write_image_bag(tmp_path / "in", [image_fields(rgb_frames[i % 3]) for i in range(6)])
    bad_frame = Match(4, "bob", 0.9, 0.3)
    matches = [Match(3, "ann", 0.7, 0.2)] * 4 + [bad_frame, Match(3, "ann", 0.7, 0.2)]
    process_bag(tmp_path / "in", "/cam", tmp_path / "voted", Recognizer(FakePipeline(matches)))
    process_bag(tmp_path / "in", "/cam", tmp_path / "raw", Recognizer(FakePipeline(matches), track=False))
    voted = [msg.faces[0].name for *_, msg in read_bag(tmp_path / "voted")]
    raw = [(msg.faces[0].name, msg.faces[0].track_id) for *_, msg in read_bag(tmp_path / "raw")]
    assert voted == [""] + ["ann"] * 5  # as in the node: named once two frames agree, never flipped by one
    assert raw[4] == ("bob", -1)


def test_process_bag_errors_say_what_is_wrong(tmp_path, rgb_frames):
    write_image_bag(tmp_path / "in", [image_fields(rgb_frames[0])])
    with pytest.raises(BagError, match=r"no topic '/nope' \(topics: /cam \(sensor_msgs/msg/Image\)\)"):
        process_bag(tmp_path / "in", "/nope", tmp_path / "out1", FakePipeline())
    with pytest.raises(BagError, match="no such bag"):
        process_bag(tmp_path / "missing", "/cam", tmp_path / "out2", FakePipeline())
    (tmp_path / "exists").mkdir()
    with pytest.raises(BagError, match="already exists"):
        process_bag(tmp_path / "in", "/cam", tmp_path / "exists", FakePipeline())
    with pytest.raises(BagError, match="not a rosbag2"):
        process_bag(tmp_path / "exists", "/cam", tmp_path / "out3", FakePipeline())


def test_a_topic_that_is_not_images_is_refused(tmp_path, rgb_frames):
    write_image_bag(tmp_path / "in", [image_fields(rgb_frames[0])])
    process_bag(tmp_path / "in", "/cam", tmp_path / "faces", FakePipeline())
    with pytest.raises(BagError, match="carries face_recognition_ros/msg/FaceIdentities"):
        process_bag(tmp_path / "faces", IDENTITIES_TOPIC, tmp_path / "out", FakePipeline())


def test_video_to_bag_errors_say_what_is_wrong(tmp_path, media_dir):
    with pytest.raises(ImageError, match="no such video"):
        video_to_bag(tmp_path / "missing.mp4", tmp_path / "a")
    (tmp_path / "garbage.mp4").write_bytes(b"not a video")
    with pytest.raises(ImageError, match="garbage.mp4: (cannot open|the video has no readable frame)"):
        video_to_bag(tmp_path / "garbage.mp4", tmp_path / "b")
    assert not (tmp_path / "b").exists()  # no empty bag left behind
    with pytest.raises(BagError, match="max_frames"):
        video_to_bag(media_dir / "short_hamilton_clip.mp4", tmp_path / "c", max_frames=0)
    with pytest.raises(BagError, match="unknown bag storage"):
        video_to_bag(media_dir / "short_hamilton_clip.mp4", tmp_path / "d", storage="rosbag1", max_frames=1)
    assert issubclass(BagError, FaceRecognitionError)
