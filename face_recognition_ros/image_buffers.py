"""Raw camera buffers (the fields of a ``sensor_msgs/Image``) to and from (H, W, 3) uint8 RGB.

ROS-free on purpose: the node, the bag tool and the tests share it, and it agrees pixel for
pixel with ``cv_bridge.CvBridge().imgmsg_to_cv2(msg, "rgb8")`` for every encoding cv_bridge
converts (checked against the real cv_bridge in ``test/ros/test_image_buffers_cv_bridge.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ImageError
from .image_files import decode_image


@dataclass(frozen=True)
class _Layout:
    channels: int
    dtype: str  # numpy type of one channel, little-endian form
    to_rgb: int | None  # cv2.cvtColor code, None when already RGB


_RGB8 = _Layout(3, "u1", None)
_BGR8 = _Layout(3, "u1", cv2.COLOR_BGR2RGB)
_MONO8 = _Layout(1, "u1", cv2.COLOR_GRAY2RGB)
_MONO16 = _Layout(1, "u2", cv2.COLOR_GRAY2RGB)
_UYVY = _Layout(2, "u1", cv2.COLOR_YUV2RGB_UYVY)
_YUYV = _Layout(2, "u1", cv2.COLOR_YUV2RGB_YUY2)

LAYOUTS: dict[str, _Layout] = {
    "rgb8": _RGB8,
    "bgr8": _BGR8,
    "rgba8": _Layout(4, "u1", cv2.COLOR_RGBA2RGB),
    "bgra8": _Layout(4, "u1", cv2.COLOR_BGRA2RGB),
    "mono8": _MONO8,
    "mono16": _MONO16,
    "rgb16": _Layout(3, "u2", None),
    "bgr16": _Layout(3, "u2", cv2.COLOR_BGR2RGB),
    "rgba16": _Layout(4, "u2", cv2.COLOR_RGBA2RGB),
    "bgra16": _Layout(4, "u2", cv2.COLOR_BGRA2RGB),
    # "yuv422"/"yuv422_yuy2" are the names cv_bridge knows; "uyvy"/"yuyv" are the newer
    # sensor_msgs names for the same byte orders (fourcc UYVY and YUYV).
    "yuv422": _UYVY,
    "uyvy": _UYVY,
    "yuv422_yuy2": _YUYV,
    "yuyv": _YUYV,
    # Channel-only encodings carry no colour meaning, so cv_bridge refuses them; cameras and
    # cv_bridge's own "passthrough" publish OpenCV images this way, hence OpenCV's BGR order.
    "8UC1": _MONO8,
    "8UC3": _BGR8,
    "16UC1": _MONO16,
}

SUPPORTED_ENCODINGS = tuple(LAYOUTS)

#: cv_bridge's 16 -> 8 bit conversion: ``convertTo(..., 255.0 / 65535.0)`` with rounding
_SCALE_16_TO_8 = 255.0 / 65535.0


def image_to_rgb(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | bytearray | memoryview | np.ndarray,
    is_bigendian: bool = False,
) -> np.ndarray:
    """Convert a raw image buffer (``sensor_msgs/Image`` fields) to (H, W, 3) uint8 RGB.

    Rows may be padded (``step`` > ``width`` x bytes per pixel). An rgb8 input comes back as a
    view of ``data`` (no copy; read-only when ``data`` is); other encodings give a new array.
    Raises ``ImageError`` on an unknown encoding or a buffer that does not hold the image.
    """
    layout = LAYOUTS.get(encoding)
    if layout is None:
        raise ImageError(
            f"unsupported image encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    pixels = _view(encoding, layout, height, width, step, data, is_bigendian)
    if layout.dtype == "u2":
        # Like cv_bridge: full 16-bit range to 8 bit, rounded (exact for all 65536 values).
        pixels = cv2.convertScaleAbs(pixels, alpha=_SCALE_16_TO_8)
    if layout.to_rgb is None:
        return pixels
    if layout.channels == 2 and width % 2:
        raise ImageError(f"{encoding} image has odd width {width}; packed YUV 4:2:2 needs pairs of pixels")
    return cv2.cvtColor(pixels, layout.to_rgb)


def _view(
    encoding: str,
    layout: _Layout,
    height: int,
    width: int,
    step: int,
    data: bytes | bytearray | memoryview | np.ndarray,
    is_bigendian: bool,
) -> np.ndarray:
    """A (H, W[, C]) array over ``data`` honouring ``step``, without copying (native byte order)."""
    if height <= 0 or width <= 0:
        raise ImageError(f"{encoding} image has zero size ({width}x{height})")
    itemsize = 2 if layout.dtype == "u2" else 1
    row_bytes = width * layout.channels * itemsize
    if step < row_bytes:
        raise ImageError(
            f"{encoding} image is malformed: step {step} < width {width} x {layout.channels * itemsize} bytes per pixel"
        )
    try:
        if isinstance(data, np.ndarray):
            buffer = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        else:
            buffer = np.frombuffer(data, np.uint8)
    except (TypeError, ValueError) as error:
        raise ImageError(f"{encoding} image data is not a byte buffer ({error})") from None
    needed = (height - 1) * step + row_bytes
    if buffer.size < needed:
        raise ImageError(
            f"{encoding} image is truncated: {buffer.size} bytes for {width}x{height} with step {step} "
            f"(needs at least {needed})"
        )
    dtype = np.dtype(layout.dtype).newbyteorder(">" if is_bigendian else "<")
    shape = (height, width) if layout.channels == 1 else (height, width, layout.channels)
    strides = (step, itemsize) if layout.channels == 1 else (step, layout.channels * itemsize, itemsize)
    view = np.ndarray(shape, dtype, buffer=buffer, strides=strides)
    if not dtype.isnative:
        view = view.astype(dtype.newbyteorder("="))  # OpenCV only reads native byte order
    elif step % itemsize:
        view = np.ascontiguousarray(view)  # OpenCV needs rows that start on a whole element
    return view


def compressed_to_rgb(fmt: str, data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (``format`` such as "jpeg" or "bgr8; jpeg compressed bgr8")."""
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageError(f"compressed image format {fmt!r} is a depth image, not a camera image")
    payload = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    return decode_image(payload, source=f"compressed image ({fmt or 'no format'})")


def message_to_rgb(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a ``sensor_msgs/Image`` or ``CompressedImage``; ``ImageError`` if unusable.

    Any object with the message's fields will do: rclpy's generated classes (the node) and rosbags'
    (the bag tool) alike. A compressed image is told apart by its ``format`` field. ``data`` may be
    an ``array.array('B')``, bytes or a numpy array; raw images are read without a copy.
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return compressed_to_rgb(msg.format, msg.data)
    return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


def rgb_to_image_fields(rgb: np.ndarray, encoding: str = "rgb8") -> tuple[str, int, int, int, bytes]:
    """The ``(encoding, height, width, step, data)`` of a ``sensor_msgs/Image`` holding ``rgb``."""
    if encoding not in ("rgb8", "bgr8"):
        raise ImageError(f"cannot publish as {encoding!r}: choose rgb8 or bgr8")
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ImageError(f"expected an (H, W, 3) uint8 RGB image, got {type(rgb).__name__} {shape}")
    height, width = rgb.shape[:2]
    if height == 0 or width == 0:
        raise ImageError(f"image has zero size ({width}x{height})")
    pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if encoding == "bgr8" else np.ascontiguousarray(rgb)
    return encoding, height, width, width * 3, pixels.tobytes()
