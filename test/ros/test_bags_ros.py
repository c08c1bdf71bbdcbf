"""Bags written by the off-ROS tools, read by the real ROS 2: same bytes, same types, ros2 bag info."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ros_env import require_ros

require_ros()

from ament_index_python.packages import get_package_share_directory  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from face_recognition_ros.bags import IDENTITIES_TOPIC, process_bag, video_to_bag  # noqa: E402
from face_recognition_ros.msg import FaceIdentities  # noqa: E402
from face_recognition_ros.pipeline import PipelineConfig  # noqa: E402
from face_recognition_ros.recognizer import Recognizer  # noqa: E402
from face_recognition_ros.tracking import FaceTracker  # noqa: E402
from face_recognition_ros.types import FaceResult, FrameResult, Match  # noqa: E402

START_NS = 1_700_000_000_123_456_789


class TwoFacesPipeline:
    """A known and an unknown face on every frame, with distinct values in every field (a Recognizer
    runs it, tracking the faces as the node does)."""

    gallery_revision = 0
    config = PipelineConfig()

    def recognise(self, image: np.ndarray, storage_crops: bool = False) -> tuple[FrameResult, None]:
        return self.process(image), None

    def process(self, image: np.ndarray) -> FrameResult:
        faces = [
            FaceResult(np.array([11.25, 22.5, 133.0, 170.75], np.float32),
                       np.linspace(30, 120, 10, dtype=np.float32).reshape(5, 2), 0.987,
                       Match(7, "Zoë Ünicode", 0.8125, 0.25)),
            FaceResult(np.array([300.0, 40.0, 380.5, 150.0], np.float32),
                       np.linspace(300, 380, 10, dtype=np.float32).reshape(5, 2), 0.85,
                       Match(None, None, 0.3125, -0.0625)),
        ]
        return FrameResult(faces, {"total": 1.0}, (image.shape[1], image.shape[0]))


def raw_records(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    """Topic -> [(log time, raw CDR bytes)] as stored in the bag."""
    records: dict[str, list[tuple[int, bytes]]] = {}
    with Reader(path) as reader:
        for connection, timestamp, raw in reader.messages():
            records.setdefault(connection.topic, []).append((timestamp, bytes(raw)))
    return records


@pytest.fixture(scope="module", params=["mcap", "sqlite3"])
def bags(request, tmp_path_factory, media_dir) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp(request.param)
    camera = folder / "camera"
    video_to_bag(media_dir / "short_hamilton_clip.mp4", camera, frame_id="camera_optical", storage=request.param,
                 max_frames=4, start_time_ns=START_NS)
    faces = folder / "faces"
    # A tracker that names faces from their first frame: this test is about the fields, not the vote rule.
    process_bag(camera, "/camera/image_raw", faces, Recognizer(TwoFacesPipeline(), FaceTracker(min_votes=1)))
    return camera, faces


def test_image_records_deserialise_with_rclpy_and_reserialise_byte_for_byte(bags):
    camera, _ = bags
    records = raw_records(camera)["/camera/image_raw"]
    assert len(records) == 4
    for timestamp, raw in records:
        msg = deserialize_message(raw, Image)
        assert (msg.encoding, msg.width, msg.height, msg.step) == ("bgr8", 640, 360, 1920)
        assert msg.header.frame_id == "camera_optical"
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == timestamp
        assert len(msg.data) == 360 * 1920
        assert serialize_message(msg) == raw


def test_identity_records_deserialise_with_the_generated_types_and_reserialise_byte_for_byte(bags):
    camera, faces = bags
    images = raw_records(camera)["/camera/image_raw"]
    identities = raw_records(faces)[IDENTITIES_TOPIC]
    assert len(identities) == len(images)
    for (image_time, image_raw), (time, raw) in zip(images, identities):
        msg = deserialize_message(raw, FaceIdentities)
        image = deserialize_message(image_raw, Image)
        assert time == image_time
        assert msg.header == image.header
        known, unknown = msg.faces
        assert (known.x_min, known.y_min, known.x_max, known.y_max) == (11.25, 22.5, 133.0, 170.75)
        np.testing.assert_allclose(known.landmarks, np.linspace(30, 120, 10), rtol=1e-6)
        assert (known.name, known.person_id, known.is_known, known.track_id) == ("Zoë Ünicode", 7, True, 0)
        assert (known.similarity, known.margin) == (0.8125, 0.25)
        assert known.detection_score == pytest.approx(0.987)
        assert (unknown.name, unknown.person_id, unknown.is_known, unknown.track_id) == ("", -1, False, 1)
        assert (unknown.similarity, unknown.margin) == (0.3125, -0.0625)
        assert serialize_message(msg) == raw


def test_bag_records_the_same_type_hash_as_the_generated_interface(bags):
    _, faces = bags
    generated = json.loads((Path(get_package_share_directory("face_recognition_ros")) / "msg"
                            / "FaceIdentities.json").read_text())
    expected = {h["type_name"]: h["hash_string"] for h in generated["type_hashes"]}
    metadata = (faces / "metadata.yaml").read_text()
    assert expected["face_recognition_ros/msg/FaceIdentities"] in metadata


def test_ros2_bag_info_reads_both_bags(bags):
    camera, faces = bags
    for path, topic, msgtype in ((camera, "/camera/image_raw", "sensor_msgs/msg/Image"),
                                 (faces, IDENTITIES_TOPIC, "face_recognition_ros/msg/FaceIdentities")):
        info = subprocess.run(["ros2", "bag", "info", str(path)], capture_output=True, text=True, timeout=60)
        assert info.returncode == 0, info.stderr
        assert f"Topic: {topic} | Type: {msgtype} | Count: 4" in info.stdout, info.stdout
