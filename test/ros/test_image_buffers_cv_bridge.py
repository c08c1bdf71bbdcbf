"""image_buffers agrees pixel for pixel with the real cv_bridge (run with ROS 2 sourced).

Known differences of cv_bridge's Python layer that these tests work around, on purpose:
- rows padded by a byte count that is not a whole number of pixels (e.g. rgb8, width 641, step
  1924) are misread by ``imgmsg_to_cv2`` (it assumes ``step`` divides into pixels); we follow the
  message definition and the C++ cv_bridge, so such cases are compared with cv_bridge's result
  for the same pixels without padding;
- big-endian 16-bit images make it call ``ndarray.newbyteorder``, gone in numpy 2, so they are
  compared with cv_bridge's result for the byte-swapped little-endian message;
- this cv_bridge does not know the newer names "uyvy"/"yuyv", only "yuv422"/"yuv422_yuy2";
- it refuses channel-only encodings (8UC1, 8UC3, 16UC1) for "rgb8"; we read them as
  mono8 / bgr8 / mono16.
"""

from __future__ import annotations

import numpy as np
import pytest

from ros_env import REQUIRE_ENV, ros_required

# Needs only ROS 2 sourced (cv_bridge, sensor_msgs), not this package built.
try:
    import cv_bridge
    from sensor_msgs.msg import CompressedImage, Image
except ImportError as error:
    if ros_required():
        pytest.fail(f"{REQUIRE_ENV}=1 but cv_bridge cannot be imported ({error})", pytrace=False)
    pytest.skip(f"ROS 2 with cv_bridge is not sourced ({error})", allow_module_level=True)

from face_recognition_ros.image_buffers import compressed_to_rgb, image_to_rgb  # noqa: E402

BRIDGE = cv_bridge.CvBridge()
RNG = np.random.default_rng(11)

# encoding -> (channels, bytes per channel) for every encoding cv_bridge converts to rgb8
CV_BRIDGE_ENCODINGS = {
    "rgb8": (3, 1),
    "bgr8": (3, 1),
    "rgba8": (4, 1),
    "bgra8": (4, 1),
    "mono8": (1, 1),
    "mono16": (1, 2),
    "rgb16": (3, 2),
    "bgr16": (3, 2),
    "rgba16": (4, 2),
    "bgra16": (4, 2),
    "yuv422": (2, 1),
    "yuv422_yuy2": (2, 1),
}


def make_msg(encoding: str, height: int, width: int, pixel_bytes: int, pad: int, rows: np.ndarray | None = None,
             bigendian: bool = False) -> Image:
    """An Image message of random pixels (or ``rows``) with ``pad`` junk bytes after each row."""
    row_bytes = width * pixel_bytes
    if rows is None:
        rows = RNG.integers(0, 256, (height, row_bytes), dtype=np.uint8)
    junk = RNG.integers(0, 256, (height, pad), dtype=np.uint8)
    msg = Image()
    msg.header.frame_id = "camera"
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.is_bigendian = int(bigendian)
    msg.step = row_bytes + pad
    msg.data = np.concatenate([rows, junk], axis=1).tobytes()
    return msg


def ours(msg: Image) -> np.ndarray:
    return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))


def cv_bridge_rgb8(msg: Image) -> np.ndarray:
    return BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")


def rows_of(msg: Image) -> np.ndarray:
    """The pixel bytes of ``msg`` without row padding, (H, width x bytes per pixel)."""
    data = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    return data[:, : len(data[0]) - (msg.step - _row_bytes(msg))]


def _row_bytes(msg: Image) -> int:
    channels, depth = CV_BRIDGE_ENCODINGS[msg.encoding]
    return msg.width * channels * depth


@pytest.mark.parametrize("size", [(7, 10), (48, 64)])
@pytest.mark.parametrize("whole_pixels_of_padding", [0, 1, 3])
@pytest.mark.parametrize("encoding", sorted(CV_BRIDGE_ENCODINGS))
def test_matches_cv_bridge_for_every_encoding_and_padding(encoding, whole_pixels_of_padding, size):
    channels, depth = CV_BRIDGE_ENCODINGS[encoding]
    height, width = size
    msg = make_msg(encoding, height, width, channels * depth, whole_pixels_of_padding * channels * depth)
    expected = cv_bridge_rgb8(msg)
    assert expected.shape == (height, width, 3)
    np.testing.assert_array_equal(ours(msg), expected)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono16", "yuv422", "bgra8"])
@pytest.mark.parametrize("pad", [1, 3])
def test_padding_that_is_not_whole_pixels_matches_cv_bridge_on_the_unpadded_pixels(encoding, pad):
    channels, depth = CV_BRIDGE_ENCODINGS[encoding]
    padded = make_msg(encoding, 9, 8, channels * depth, pad)
    unpadded = make_msg(encoding, 9, 8, channels * depth, 0, rows=rows_of(padded))
    np.testing.assert_array_equal(ours(padded), cv_bridge_rgb8(unpadded))


@pytest.mark.parametrize("encoding", ["mono16", "rgb16", "bgra16"])
def test_big_endian_16_bit_matches_cv_bridge_on_the_little_endian_message(encoding):
    channels, depth = CV_BRIDGE_ENCODINGS[encoding]
    little = make_msg(encoding, 6, 5, channels * depth, 2 * channels)
    words = np.frombuffer(bytes(little.data), "<u2")
    big = Image(height=little.height, width=little.width, encoding=encoding, step=little.step,
                is_bigendian=1, data=words.astype(">u2").tobytes())
    np.testing.assert_array_equal(ours(big), cv_bridge_rgb8(little))


def test_mono16_matches_cv_bridge_for_every_16_bit_value():
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    msg = make_msg("mono16", 256, 256, 2, 0, rows=values.view(np.uint8).reshape(256, 512))
    np.testing.assert_array_equal(ours(msg), cv_bridge_rgb8(msg))


@pytest.mark.parametrize("new_name, cv_bridge_name", [("uyvy", "yuv422"), ("yuyv", "yuv422_yuy2")])
def test_new_yuv_names_match_cv_bridge_for_the_old_names(new_name, cv_bridge_name):
    msg = make_msg(cv_bridge_name, 8, 12, 2, 4)
    renamed = Image(height=msg.height, width=msg.width, encoding=new_name, step=msg.step, data=msg.data)
    np.testing.assert_array_equal(ours(renamed), cv_bridge_rgb8(msg))


@pytest.mark.parametrize("channel_only, read_as", [("8UC1", "mono8"), ("8UC3", "bgr8"), ("16UC1", "mono16")])
def test_channel_only_encodings_match_cv_bridge_for_the_colour_encoding_they_stand_for(channel_only, read_as):
    channels, depth = CV_BRIDGE_ENCODINGS[read_as]
    msg = make_msg(read_as, 8, 12, channels * depth, channels * depth)
    renamed = Image(height=msg.height, width=msg.width, encoding=channel_only, step=msg.step, data=msg.data)
    with pytest.raises(cv_bridge.CvBridgeError):
        cv_bridge_rgb8(renamed)  # cv_bridge has no colour meaning for them; we pick OpenCV's
    np.testing.assert_array_equal(ours(renamed), cv_bridge_rgb8(msg))


def test_real_photo_in_every_encoding_matches_cv_bridge(media_dir):
    import cv2

    bgr = cv2.imread(str(media_dir / "obama-480p.jpg"))
    for encoding, image in {
        "bgr8": bgr,
        "rgb8": cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
        "mono8": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "bgra8": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
        "mono16": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257,
    }.items():
        msg = BRIDGE.cv2_to_imgmsg(image, encoding=encoding)
        np.testing.assert_array_equal(ours(msg), cv_bridge_rgb8(msg), err_msg=encoding)


@pytest.mark.parametrize("fmt, ext", [("jpeg", ".jpg"), ("png", ".png"), ("bgr8; jpeg compressed bgr8", ".jpg")])
def test_compressed_images_match_cv_bridge(fmt, ext):
    import cv2

    bgr = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    msg = CompressedImage(format=fmt, data=cv2.imencode(ext, bgr)[1].tobytes())
    np.testing.assert_array_equal(compressed_to_rgb(msg.format, msg.data),
                                  BRIDGE.compressed_imgmsg_to_cv2(msg, desired_encoding="rgb8"))
