"""The ``video_source`` node: a video file or a folder of images as a camera, for trying things out.

Publishes ``sensor_msgs/Image`` on ``image`` (remap it, e.g. to /camera/image_raw) at the video's
own frame rate, or at ``rate`` frames per second; with ``loop`` it starts over at the end,
otherwise the node exits. Reliable QoS, which both best-effort (sensor-data) and reliable
subscribers accept.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import rclpy
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from face_recognition_ros.errors import FaceRecognitionError, ImageError
from face_recognition_ros.image_conversion import rgb_to_image_fields
from face_recognition_ros.imageio import load_image
from face_recognition_ros.ros.shutdown import ignore_further_interrupts

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
FOLDER_DEFAULT_RATE_HZ = 2.0
VIDEO_FALLBACK_RATE_HZ = 30.0  # when the container does not say


class _VideoFrames:
    """Frames of a video file as RGB arrays, rewinding on request."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise ImageError(f"cannot open video {path}")
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.rate_hz = float(fps) if fps and 0.0 < fps < 1000.0 else VIDEO_FALLBACK_RATE_HZ

    def next(self) -> np.ndarray | None:
        ok, bgr = self._capture.read()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None

    def rewind(self) -> None:
        self._capture.release()
        self._capture = cv2.VideoCapture(str(self._path))


class _FolderFrames:
    """The images of a folder, in name order, as RGB arrays."""

    rate_hz = FOLDER_DEFAULT_RATE_HZ

    def __init__(self, path: Path) -> None:
        self._files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise ImageError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
        self._index = 0

    def next(self) -> np.ndarray | None:
        if self._index >= len(self._files):
            return None
        path = self._files[self._index]
        self._index += 1
        return load_image(path)

    def rewind(self) -> None:
        self._index = 0


def open_frames(path: str) -> _VideoFrames | _FolderFrames:
    source = Path(path).expanduser()
    if not path:
        raise ImageError("parameter 'path' is empty: give a video file or an image folder")
    if source.is_dir():
        return _FolderFrames(source)
    if not source.is_file():
        raise ImageError(f"no video file or image folder at {source}")
    return _VideoFrames(source)


class VideoSourceNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("video_source", **kwargs)
        self.declare_parameter("path", "", ParameterDescriptor(
            description="Video file, or folder of images published in name order", read_only=True))
        self.declare_parameter("rate", 0.0, ParameterDescriptor(
            description=f"Frames per second (0.0 = the video's own rate; {FOLDER_DEFAULT_RATE_HZ:g} for a folder)",
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=240.0, step=0.0)], read_only=True))
        self.declare_parameter("loop", True, ParameterDescriptor(
            description="Start over at the end (false: exit after the last frame)", read_only=True))
        self.declare_parameter("frame_id", "camera", ParameterDescriptor(
            description="header.frame_id of the published images", read_only=True))
        self.declare_parameter("encoding", "bgr8", ParameterDescriptor(
            description="Published encoding: bgr8 (like most camera drivers) or rgb8", read_only=True))
        self._frames = open_frames(self.get_parameter("path").value)
        self._loop = bool(self.get_parameter("loop").value)
        self._frame_id = self.get_parameter("frame_id").value
        self._encoding = self.get_parameter("encoding").value
        if self._encoding not in ("bgr8", "rgb8"):
            raise ImageError(f"parameter 'encoding' must be bgr8 or rgb8, got {self._encoding!r}")
        rate = self.get_parameter("rate").value or self._frames.rate_hz
        self.published = 0
        self.finished = False
        self._publisher = self.create_publisher(
            Image, "image", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self._timer = self.create_timer(1.0 / rate, self._publish_next)
        self.get_logger().info(
            f"publishing {self.get_parameter('path').value} on {self._publisher.topic_name} at {rate:.1f} Hz"
            + (" (looping)" if self._loop else ""))

    def _publish_next(self) -> None:
        rgb = self._frames.next()
        if rgb is None and self._loop:
            self._frames.rewind()
            rgb = self._frames.next()
        if rgb is None:
            self.get_logger().info(f"end of input after {self.published} frames")
            self._timer.cancel()
            self.finished = True
            return
        encoding, height, width, step, data = rgb_to_image_fields(rgb, self._encoding)
        msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=step)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self._frame_id
        msg.data = data
        self._publisher.publish(msg)
        self.published += 1


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    try:
        node = VideoSourceNode()
        while rclpy.ok() and not node.finished:
            rclpy.spin_once(node, timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except FaceRecognitionError as error:
        rclpy.logging.get_logger("video_source").fatal(str(error))
        return 1
    finally:
        ignore_further_interrupts()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
