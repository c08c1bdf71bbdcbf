"""Reading images from files and bytes into the one layout the core uses: (H, W, 3) uint8 RGB."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"}

#: smallest side a face image can have (a detector anchor is 16 px)
MIN_IMAGE_SIDE = 16
#: largest number of pixels accepted; 8000x8000 (64 MP) fits, a decompression bomb does not
MAX_IMAGE_PIXELS = 100_000_000


def to_rgb8(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Normalise grayscale, RGBA, 16-bit and float images to contiguous (H, W, 3) uint8 RGB.

    The input is taken as RGB(A) channel order; use ``cv2.cvtColor`` first for BGR.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{source}: not an image array")
    if image.size == 0 or image.ndim not in (2, 3):
        raise ImageError(f"{source}: empty or malformed image (shape {image.shape})")
    height, width = image.shape[:2]
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ImageError(f"{source}: image is {width}x{height}, too small to hold a face")
    if height * width > MAX_IMAGE_PIXELS:
        raise ImageError(f"{source}: image is {width}x{height}, over {MAX_IMAGE_PIXELS} pixels")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * (255.0 if image.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    elif image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        raise ImageError(f"{source}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    channels = image.shape[2]
    if channels == 1:
        image = np.repeat(image, 3, axis=2)
    elif channels == 4:
        image = image[:, :, :3]
    elif channels != 3:
        raise ImageError(f"{source}: unsupported number of channels ({channels})")
    return np.ascontiguousarray(image)


def decode_image(data: bytes, source: str = "image") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to (H, W, 3) uint8 RGB."""
    if not data:
        raise ImageError(f"{source}: file is empty")
    buffer = np.frombuffer(data, np.uint8)
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    except cv2.error as error:
        raise ImageError(f"{source}: cannot decode image ({error.msg.strip()})") from None
    if bgr is None:
        raise ImageError(f"{source}: not a readable image (corrupt or unsupported format)")
    if bgr.ndim == 3 and bgr.shape[2] == 3:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    elif bgr.ndim == 3 and bgr.shape[2] == 4:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGBA)
    else:
        rgb = bgr
    return to_rgb8(rgb, source)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, with a one-line ``ImageError`` on any problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot read ({error.strerror})") from None
    # Reject decompression bombs before decoding (the header carries the size).
    _check_header_size(data, str(path))
    return decode_image(data, str(path))


def _check_header_size(data: bytes, source: str) -> None:
    import struct

    width = height = 0
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"{source}: image is {width}x{height}, over {MAX_IMAGE_PIXELS} pixels")


def iter_image_files(paths: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively, sorted) into image file paths."""
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            files.extend(
                sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            )
        else:
            files.append(entry)
    return files
