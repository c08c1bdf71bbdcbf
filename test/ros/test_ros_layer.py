"""The ROS layer's pieces without a running node: message conversions and parameter descriptors."""

from __future__ import annotations

import numpy as np
import pytest

from ros_env import require_ros

require_ros()

from std_msgs.msg import Header  # noqa: E402

from face_recognition_ros.ros.conversions import (  # noqa: E402
    UNKNOWN_CLASS_ID,
    rgb_to_image_msg,
    to_detection_array,
    to_identities,
)
from face_recognition_ros.image_buffers import message_to_rgb as image_msg_to_rgb  # noqa: E402
from face_recognition_ros.node_parameters import PARAMETERS  # noqa: E402
from face_recognition_ros.ros.parameters import descriptor  # noqa: E402
from face_recognition_ros.types import FaceResult, FrameResult, Match  # noqa: E402


@pytest.fixture()
def frame_result() -> FrameResult:
    landmarks = np.arange(10, dtype=np.float32).reshape(5, 2) + 100
    return FrameResult(faces=[
        FaceResult(np.array([10.5, 20.0, 110.5, 140.0], np.float32), landmarks, 0.99,
                   Match(3, "Ada Lovelace", 0.93, 0.2), track_id=7),
        FaceResult(np.array([200.0, 30.0, 260.0, 110.0], np.float32), landmarks + 100, 0.85,
                   Match(None, None, 0.41, 0.01), track_id=8),
    ], image_size=(320, 240))


@pytest.fixture()
def header() -> Header:
    header = Header(frame_id="head_camera")
    header.stamp.sec, header.stamp.nanosec = 1234, 5678
    return header


def test_identities_carry_header_boxes_landmarks_and_identity(frame_result, header):
    message = to_identities(frame_result, header)
    assert message.header == header
    known, unknown = message.faces
    assert (known.x_min, known.y_min, known.x_max, known.y_max) == (10.5, 20.0, 110.5, 140.0)
    assert list(known.landmarks) == [float(v) for v in range(100, 110)]  # x0, y0, x1, y1, ...
    assert (known.name, known.person_id, known.is_known, known.track_id) == ("Ada Lovelace", 3, True, 7)
    assert known.similarity == pytest.approx(0.93) and known.margin == pytest.approx(0.2)
    assert (unknown.name, unknown.person_id, unknown.is_known) == ("", -1, False)
    assert unknown.detection_score == pytest.approx(0.85)


def test_detections_speak_vision_msgs(frame_result, header):
    message = to_detection_array(frame_result, header)
    assert message.header == header
    known, unknown = message.detections
    assert known.header == header and known.id == "7"
    assert (known.bbox.center.position.x, known.bbox.center.position.y) == (60.5, 80.0)
    assert (known.bbox.size_x, known.bbox.size_y) == (100.0, 120.0)
    assert known.results[0].hypothesis.class_id == "Ada Lovelace"
    assert known.results[0].hypothesis.score == pytest.approx(0.93)
    assert unknown.results[0].hypothesis.class_id == UNKNOWN_CLASS_ID
    assert unknown.results[0].hypothesis.score == pytest.approx(0.41)


def test_empty_frame_gives_empty_messages(header):
    empty = FrameResult(faces=[])
    assert to_identities(empty, header).faces == []
    assert to_detection_array(empty, header).detections == []


def test_debug_image_message_round_trips(header):
    rgb = np.random.default_rng(3).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    message = rgb_to_image_msg(rgb, header)
    assert (message.encoding, message.width, message.height, message.step) == ("rgb8", 5, 7, 15)
    assert message.header == header
    np.testing.assert_array_equal(image_msg_to_rgb(message), rgb)


def test_compressed_images_are_decoded_like_opencv(header):
    import cv2
    from sensor_msgs.msg import CompressedImage

    rgb = np.zeros((24, 32, 3), np.uint8)
    rgb[:, :16] = (200, 30, 10)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    message = CompressedImage(header=header, format="png")
    message.data = png.tobytes()
    np.testing.assert_array_equal(image_msg_to_rgb(message), rgb)


def test_every_numeric_parameter_has_a_range_and_every_parameter_a_description():
    for spec in PARAMETERS:
        declared = descriptor(spec)
        assert declared.description
        assert declared.read_only == (not spec.dynamic), spec.name
        if isinstance(spec.default, float):
            assert declared.floating_point_range, spec.name
            assert declared.floating_point_range[0].from_value <= spec.default <= declared.floating_point_range[0].to_value
        elif isinstance(spec.default, int) and not isinstance(spec.default, bool):
            assert declared.integer_range, spec.name
            assert declared.integer_range[0].from_value <= spec.default <= declared.integer_range[0].to_value
