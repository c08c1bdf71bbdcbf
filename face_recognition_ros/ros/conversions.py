"""Core results <-> ROS messages. Only ROS message types are imported here, no rclpy node API.

vision_msgs: Humble and Jazzy both ship vision_msgs 4.x, where ``BoundingBox2D.center`` is a
``vision_msgs/Pose2D`` with ``position.x/y`` and ``theta``, and a hypothesis is
``ObjectHypothesisWithPose.hypothesis.class_id/score``; only those fields are used.
"""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from face_recognition_ros.image_buffers import rgb_to_image_fields
from face_recognition_ros.msg import FaceIdentities, FaceIdentity
from face_recognition_ros.types import FaceResult, FrameResult

UNKNOWN_CLASS_ID = "unknown"


def rgb_to_image_msg(rgb: np.ndarray, header: Header | None = None) -> Image:
    """A ``rgb8`` ``sensor_msgs/Image`` holding an (H, W, 3) uint8 RGB array."""
    encoding, height, width, step, data = rgb_to_image_fields(rgb, "rgb8")
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=step)
    if header is not None:
        msg.header = header
    msg.data = data
    return msg


def face_to_identity(face: FaceResult) -> FaceIdentity:
    return FaceIdentity(**face.identity_fields())


def to_identities(result: FrameResult, header: Header) -> FaceIdentities:
    """``FaceIdentities`` for one frame, with the source image's header."""
    return FaceIdentities(header=header, faces=[face_to_identity(face) for face in result.faces])


def to_detection_array(result: FrameResult, header: Header) -> Detection2DArray:
    """The same result as ``vision_msgs/Detection2DArray``: class_id is the name or "unknown",
    score the similarity, the box in pixels, ``id`` the track id (empty when untracked)."""
    detections = []
    for face in result.faces:
        x_min, y_min, x_max, y_max = (float(v) for v in face.box)
        detection = Detection2D(header=header, id=str(face.track_id) if face.track_id >= 0 else "")
        detection.bbox.center.position.x = (x_min + x_max) / 2.0
        detection.bbox.center.position.y = (y_min + y_max) / 2.0
        detection.bbox.center.theta = 0.0
        detection.bbox.size_x = x_max - x_min
        detection.bbox.size_y = y_max - y_min
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = face.match.name if face.match.is_known and face.match.name else UNKNOWN_CLASS_ID
        hypothesis.hypothesis.score = float(face.match.similarity)
        detection.results = [hypothesis]
        detections.append(detection)
    return Detection2DArray(header=header, detections=detections)
