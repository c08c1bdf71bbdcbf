"""The ``video_source`` node: a video file or a folder of images as a camera, for trying things out.

Publishes ``sensor_msgs/Image`` on ``image`` (remap it, e.g. to /camera/image_raw) at the video's
own frame rate, or at ``rate`` frames per second; with ``loop`` it starts over at the end,
otherwise the node exits. Reliable QoS, which both best-effort (sensor-data) and reliable
subscribers accept.
"""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from face_recognition_ros.errors import ImageError
from face_recognition_ros.frame_sources import FOLDER_RATE_HZ, open_frames
from face_recognition_ros.image_buffers import rgb_to_image_fields
from face_recognition_ros.ros.node_main import run_node


class VideoSourceNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("video_source", **kwargs)
        self.declare_parameter("path", "", ParameterDescriptor(
            description="Video file, or folder of images published in name order", read_only=True))
        self.declare_parameter("rate", 0.0, ParameterDescriptor(
            description=f"Frames per second (0.0 = the video's own rate; {FOLDER_RATE_HZ:g} for a folder)",
            floating_point_range=[FloatingPointRange(from_value=0.0, to_value=240.0, step=0.0)], read_only=True))
        self.declare_parameter("loop", True, ParameterDescriptor(
            description="Start over at the end (false: exit after the last frame)", read_only=True))
        self.declare_parameter("frame_id", "camera", ParameterDescriptor(
            description="header.frame_id of the published images", read_only=True))
        self.declare_parameter("encoding", "bgr8", ParameterDescriptor(
            description="Published encoding: bgr8 (like most camera drivers) or rgb8", read_only=True))
        self._source = open_frames(self.get_parameter("path").value, self.get_parameter("rate").value or None)
        self._frames = self._source.frames()
        self._loop = bool(self.get_parameter("loop").value)
        self._frame_id = self.get_parameter("frame_id").value
        self._encoding = self.get_parameter("encoding").value
        if self._encoding not in ("bgr8", "rgb8"):
            raise ImageError(f"parameter 'encoding' must be bgr8 or rgb8, got {self._encoding!r}")
        rate = self._source.rate_hz
        self.published = 0
        self.finished = False
        self._publisher = self.create_publisher(
            Image, "image", QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self._timer = self.create_timer(1.0 / rate, self._publish_next)
        self.get_logger().info(
            f"publishing {self.get_parameter('path').value} on {self._publisher.topic_name} at {rate:.1f} Hz"
            + (" (looping)" if self._loop else ""))

    def _publish_next(self) -> None:
        frame = next(self._frames, None)
        if frame is None and self._loop:
            self._frames = self._source.frames()
            frame = next(self._frames, None)
        if frame is None:
            self.get_logger().info(f"end of input after {self.published} frames")
            self._timer.cancel()
            self.finished = True
            return
        encoding, height, width, step, data = rgb_to_image_fields(frame.rgb, self._encoding)
        msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0, step=step)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self._frame_id
        msg.data = data
        self._publisher.publish(msg)
        self.published += 1


def main(args: list[str] | None = None) -> int:
    return run_node(VideoSourceNode, "video_source", args, until=lambda node: node.finished)


if __name__ == "__main__":
    raise SystemExit(main())
