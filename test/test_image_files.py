"""What counts as an image (its content, not its name), and files that lie about their size."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from face_recognition_ros.errors import ImageError
from face_recognition_ros.image_files import MAX_IMAGE_PIXELS, find_images, is_image_file, load_image, read_header

PICTURE = np.dstack([np.tile(np.arange(64, dtype=np.uint8)[None] * 4, (48, 1))] * 3)


def encoded(fmt: str, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(PICTURE).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt, mode, name", [
    ("GIF", "P", "photo.gif"), ("PPM", "L", "photo.pgm"), ("PPM", "RGB", "photo.ppm"), ("TIFF", "RGB", "photo.tif"),
    ("JPEG", "RGB", "photo_without_extension"), ("PNG", "RGB", "photo.jpg"), ("WEBP", "RGB", "photo.webp"),
    ("BMP", "RGB", "photo.bmp"),
])
def test_any_format_the_decoders_read_is_an_image_whatever_its_name(tmp_path, fmt, mode, name):
    path = tmp_path / name
    path.write_bytes(encoded(fmt, mode))
    assert is_image_file(path)
    image = load_image(path)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert find_images([tmp_path]).images == [path]


def test_a_text_file_named_like_an_image_is_skipped_in_a_folder_and_refused_by_name(tmp_path):
    (tmp_path / "notes.png").write_text("this is not a picture")
    (tmp_path / "good.jpg").write_bytes(encoded("JPEG"))
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    listing = find_images([tmp_path])
    assert listing.images == [tmp_path / "good.jpg"]
    assert listing.skipped == [(tmp_path / "notes.png", "not an image")]
    assert not is_image_file(tmp_path / "notes.png")
    with pytest.raises(ImageError, match="notes.png: not a readable image"):
        load_image(tmp_path / "notes.png")


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(encoded("JPEG"))
    marker = data.find(b"\xff\xc0")
    data[marker + 5:marker + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_declaring(width: int, height: int) -> bytes:
    data = bytearray(encoded("PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # a valid IHDR checksum
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encoded("GIF", "P"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encoded("BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def webp_declaring(width: int, height: int) -> bytes:
    # A lossless WebP (VP8L) header: 14-bit width-1 and height-1 after the signature byte 0x2f.
    bits = (width - 1) | ((height - 1) << 14)
    chunk = b"\x2f" + struct.pack("<I", bits) + b"\0" * 8
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(chunk)) + b"WEBPVP8L" + struct.pack("<I", len(chunk)) + chunk


BOMBS = {"jpeg": jpeg_declaring(32000, 32000), "png": png_declaring(32000, 32000),
         "gif": gif_declaring(65535, 65535), "bmp": bmp_declaring(32000, 32000),
         "webp": webp_declaring(16384, 16384)}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_small_file_declaring_a_huge_picture_is_refused_before_decoding(tmp_path, kind):
    path = tmp_path / f"bomb.{kind}"
    path.write_bytes(BOMBS[kind])
    assert len(BOMBS[kind]) < 10_000
    with pytest.raises(ImageError, match=f"over {MAX_IMAGE_PIXELS} pixels"):
        load_image(path)


def test_header_is_read_without_decoding():
    header = read_header(encoded("PNG"))
    assert (header.format, header.width, header.height) == ("PNG", 64, 48)


PROBE = """
import json, resource, sys, time
from face_recognition_ros.errors import ImageError
from face_recognition_ros.image_files import load_image
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load_image(sys.argv[1])
    outcome = "loaded"
except ImageError as error:
    outcome = str(error)
print(json.dumps({"seconds": time.perf_counter() - start, "outcome": outcome,
                  "peak_growth_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024}))
"""


def probe(path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_jpeg_header_bomb_costs_no_more_than_a_normal_photo(tmp_path, media_dir):
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(BOMBS["jpeg"])
    photo = probe(media_dir / "obama.jpg")
    refused = probe(bomb)
    assert photo["outcome"] == "loaded"
    assert "over" in refused["outcome"]
    assert refused["seconds"] < photo["seconds"] + 1.0
    assert refused["peak_growth_mb"] < photo["peak_growth_mb"] + 100


# ---- EXIF orientation ------------------------------------------------------------------------

#: how the stored pixels of each orientation are made: the upright picture turned the other way
STORED_FOR_ORIENTATION = {
    1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1), 6: lambda a: np.rot90(a, 1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, -1),
}


def asymmetric_picture() -> np.ndarray:
    """Smooth (JPEG keeps it), but no flip or turn of it equals another: a bright corner and two ramps."""
    rows, cols = np.mgrid[0:48, 0:64]
    picture = np.dstack([rows * 5, cols * 4, np.full_like(rows, 60)]).astype(np.uint8)
    picture[:12, :16] = 255
    return picture


def jpeg_with_orientation(stored: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(stored)).save(buffer, "JPEG", quality=100, subsampling=0, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_photo_is_turned_upright_by_its_exif_orientation_as_a_viewer_shows_it(tmp_path, orientation):
    upright_picture = asymmetric_picture()
    path = tmp_path / "phone.jpg"
    path.write_bytes(jpeg_with_orientation(STORED_FOR_ORIENTATION[orientation](upright_picture), orientation))
    assert read_header(path.read_bytes()).orientation == orientation
    loaded = load_image(path)
    with Image.open(path) as stored:
        viewer = np.asarray(ImageOps.exif_transpose(stored).convert("RGB"))  # Pillow's own reading of the tag
    assert loaded.shape == upright_picture.shape == viewer.shape
    assert np.abs(loaded.astype(int) - viewer).max() <= 8
    assert np.abs(loaded.astype(int) - upright_picture).max() <= 8


def test_a_damaged_or_out_of_range_orientation_leaves_the_pixels_as_stored(tmp_path):
    picture = asymmetric_picture()
    path = tmp_path / "odd.jpg"
    path.write_bytes(jpeg_with_orientation(picture, 9))
    assert read_header(path.read_bytes()).orientation == 1
    assert np.abs(load_image(path).astype(int) - picture).max() <= 8


def test_a_sideways_phone_portrait_is_detected_where_the_upright_photo_has_the_face(tmp_path, media_dir):
    from face_recognition_ros.detection import RetinaFaceDetector

    upright_photo = load_image(media_dir / "obama-480p.jpg")
    phone = tmp_path / "portrait.jpg"
    phone.write_bytes(jpeg_with_orientation(np.rot90(upright_photo, 1), 6))  # stored a quarter turn left
    loaded = load_image(phone)
    assert loaded.shape == upright_photo.shape
    detector = RetinaFaceDetector()
    expected, found = detector.detect(upright_photo), detector.detect(loaded)
    assert len(expected) == len(found) == 1
    np.testing.assert_allclose(found.boxes, expected.boxes, atol=4.0)
