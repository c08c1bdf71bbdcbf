"""Raw image buffers to RGB: every encoding on synthetic images with known pixels, padded rows, bad input."""

from __future__ import annotations

import array

import cv2
import numpy as np
import pytest

from face_recognition_ros.errors import ImageError
from face_recognition_ros.image_buffers import (
    SUPPORTED_ENCODINGS,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_image_fields,
)

RNG = np.random.default_rng(7)
HEIGHT, WIDTH = 5, 6


def padded(pixels: np.ndarray, pad: int) -> tuple[int, bytes]:
    """Row-padded bytes of an (H, W[, C]) array, with junk in the padding, and their step."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    full = np.concatenate([rows, junk], axis=1)
    return full.shape[1], full.tobytes()


@pytest.fixture
def rgb() -> np.ndarray:
    return RNG.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.mark.parametrize("pad", [0, 5])
def test_rgb8_is_returned_unchanged_including_padded_rows(rgb, pad):
    step, data = padded(rgb, pad)
    np.testing.assert_array_equal(image_to_rgb("rgb8", HEIGHT, WIDTH, step, data), rgb)


def test_rgb8_is_a_view_of_the_message_buffer_not_a_copy(rgb):
    step, data = padded(rgb, 4)
    buffer = bytearray(data)
    out = image_to_rgb("rgb8", HEIGHT, WIDTH, step, buffer)
    assert np.shares_memory(out, np.frombuffer(buffer, np.uint8))


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    "encoding, from_rgb",
    [
        ("bgr8", lambda im: im[:, :, ::-1]),
        ("8UC3", lambda im: im[:, :, ::-1]),
        ("rgba8", lambda im: np.dstack([im, np.full(im.shape[:2], 9, np.uint8)])),
        ("bgra8", lambda im: np.dstack([im[:, :, ::-1], np.full(im.shape[:2], 9, np.uint8)])),
    ],
)
def test_colour_encodings_give_the_original_rgb(rgb, encoding, from_rgb, pad):
    step, data = padded(np.ascontiguousarray(from_rgb(rgb)), pad)
    np.testing.assert_array_equal(image_to_rgb(encoding, HEIGHT, WIDTH, step, data), rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_is_repeated_over_three_channels(encoding):
    gray = RNG.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)
    step, data = padded(gray, 2)
    out = image_to_rgb(encoding, HEIGHT, WIDTH, step, data)
    assert out.shape == (HEIGHT, WIDTH, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_scales_the_full_range_to_8_bit_with_rounding(encoding, bigendian):
    values = np.array([[0, 128, 129, 257, 32767, 65535]], np.uint16)
    expected = np.array([0, 0, 1, 1, 127, 255], np.uint8)  # round(v * 255 / 65535)
    data = values.astype(">u2" if bigendian else "<u2").tobytes()
    out = image_to_rgb(encoding, 1, 6, 12, data, is_bigendian=bigendian)
    np.testing.assert_array_equal(out[0, :, 0], expected)
    np.testing.assert_array_equal(out[0, :, 2], expected)


def test_16_bit_rows_padded_by_an_odd_number_of_bytes_are_read_correctly():
    values = np.array([[65535, 0], [257, 32767]], np.uint16)
    step, data = padded(values, 1)  # rows start at odd byte offsets
    out = image_to_rgb("mono16", 2, 2, step, data)
    np.testing.assert_array_equal(out[:, :, 1], [[255, 0], [1, 127]])


def test_rgb16_keeps_channel_order_and_scales():
    values = np.array([[[65535, 0, 257]]], np.uint16)
    out = image_to_rgb("rgb16", 1, 1, 6, values.tobytes())
    np.testing.assert_array_equal(out[0, 0], [255, 0, 1])


def _yuv_bytes(y: np.ndarray, u: np.ndarray, v: np.ndarray, order: str) -> np.ndarray:
    """Pack 4:2:2 planes as UYVY or YUYV (u, v hold one sample per pair of pixels)."""
    packed = np.empty((y.shape[0], y.shape[1] * 2), np.uint8)
    if order == "uyvy":
        packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = u, y[:, 0::2], v, y[:, 1::2]
    else:
        packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = y[:, 0::2], u, y[:, 1::2], v
    return packed


def _bt601_video_range_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The ITU-R BT.601 limited-range YCbCr -> RGB formula that camera YUV 4:2:2 uses."""
    y, u, v = (np.asarray(c, np.float64) for c in (y, u, v))
    luma = 1.164 * (y - 16)
    red = luma + 1.596 * (v - 128)
    green = luma - 0.813 * (v - 128) - 0.391 * (u - 128)
    blue = luma + 2.018 * (u - 128)
    rgb = np.stack([red, green, blue], -1)
    return np.clip(np.rint(rgb), 0, 255)


@pytest.mark.parametrize(
    "encoding, order", [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")]
)
def test_packed_yuv422_decodes_with_bt601_and_shared_chroma(encoding, order):
    y = RNG.integers(16, 236, (2, 6)).astype(np.uint8)
    u = np.array([[128, 90, 200], [60, 128, 150]], np.uint8)  # one chroma sample per pixel pair
    v = np.array([[128, 170, 80], [128, 220, 100]], np.uint8)
    step, data = padded(_yuv_bytes(y, u, v, order), 4)
    out = image_to_rgb(encoding, 2, 6, step, data)
    expected = _bt601_video_range_to_rgb(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    assert np.abs(out.astype(int) - expected).max() <= 2


def test_uyvy_and_yuyv_read_bytes_in_different_orders():
    packed = RNG.integers(0, 256, (2, 8), dtype=np.uint8).tobytes()
    assert not np.array_equal(image_to_rgb("uyvy", 2, 4, 8, packed), image_to_rgb("yuyv", 2, 4, 8, packed))
    np.testing.assert_array_equal(image_to_rgb("uyvy", 2, 4, 8, packed), image_to_rgb("yuv422", 2, 4, 8, packed))


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "array", "ndarray"])
def test_accepts_every_buffer_type_a_message_field_can_have(rgb, kind):
    raw = rgb.tobytes()
    data = {
        "bytes": raw,
        "bytearray": bytearray(raw),
        "memoryview": memoryview(raw),
        "array": array.array("B", raw),  # what rclpy puts in Image.data
        "ndarray": np.frombuffer(raw, np.uint8),
    }[kind]
    np.testing.assert_array_equal(image_to_rgb("rgb8", HEIGHT, WIDTH, WIDTH * 3, data), rgb)


def test_every_supported_encoding_converts_a_well_formed_buffer():
    for encoding in SUPPORTED_ENCODINGS:
        out = image_to_rgb(encoding, 4, 4, 64, bytes(256))
        assert out.shape == (4, 4, 3) and out.dtype == np.uint8, encoding


@pytest.mark.parametrize(
    "args, message",
    [
        (("jpeg", 2, 2, 6, bytes(12)), "unsupported image encoding 'jpeg'"),
        (("rgb8", 2, 2, 6, bytes(11)), "truncated"),
        (("mono16", 2, 2, 4, bytes(7)), "truncated"),
        (("rgb8", 2, 2, 5, bytes(12)), "step 5 < width 2"),
        (("bgra8", 2, 2, 7, bytes(16)), "step 7 < width 2"),
        (("rgb8", 0, 2, 6, b""), "zero size"),
        (("mono8", 3, 0, 0, b""), "zero size"),
        (("yuyv", 2, 3, 6, bytes(12)), "odd width"),
        (("rgb8", 2, 2, 6, 12345), "not a byte buffer"),
    ],
)
def test_bad_input_raises_image_error_saying_why(args, message):
    with pytest.raises(ImageError, match=message):
        image_to_rgb(*args)


def test_compressed_jpeg_and_png_decode_to_rgb():
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16] = (255, 0, 0)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    np.testing.assert_array_equal(compressed_to_rgb("png", png.tobytes()), rgb)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    decoded = compressed_to_rgb("bgr8; jpeg compressed bgr8", array.array("B", jpeg.tobytes()))
    assert decoded[16, 4, 0] > 200 and decoded[16, 4, 2] < 50  # red stays red


@pytest.mark.parametrize(
    "fmt, data, message",
    [
        ("jpeg", b"", "empty"),
        ("jpeg", b"not a jpeg at all", "not a readable image"),
        ("16UC1; compressedDepth png", b"\x00" * 20, "depth image"),
    ],
)
def test_bad_compressed_images_raise_image_error(fmt, data, message):
    with pytest.raises(ImageError, match=message):
        compressed_to_rgb(fmt, data)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_image_fields_round_trip_through_image_to_rgb(rgb, encoding):
    fields = rgb_to_image_fields(rgb, encoding)
    assert fields[:4] == (encoding, HEIGHT, WIDTH, WIDTH * 3)
    np.testing.assert_array_equal(image_to_rgb(*fields), rgb)


def test_image_fields_of_a_non_contiguous_view_are_packed(rgb):
    view = rgb[:, ::2]
    encoding, height, width, step, data = rgb_to_image_fields(view)
    assert (height, width, step, len(data)) == (HEIGHT, WIDTH // 2, WIDTH // 2 * 3, HEIGHT * WIDTH // 2 * 3)
    np.testing.assert_array_equal(image_to_rgb(encoding, height, width, step, data), view)


@pytest.mark.parametrize(
    "image, encoding, message",
    [
        (np.zeros((4, 4), np.uint8), "rgb8", "expected an"),
        (np.zeros((4, 4, 3), np.float32), "rgb8", "expected an"),
        (np.zeros((0, 4, 3), np.uint8), "rgb8", "zero size"),
        (np.zeros((4, 4, 3), np.uint8), "mono8", "choose rgb8 or bgr8"),
    ],
)
def test_image_fields_reject_what_is_not_an_rgb_image(image, encoding, message):
    with pytest.raises(ImageError, match=message):
        rgb_to_image_fields(image, encoding)
