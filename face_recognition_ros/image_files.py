"""Image files and encoded bytes into the one layout the core uses: (H, W, 3) uint8 RGB.

One rule decides what an image is, in every command (``enroll``, ``recognize``, ``eval``, training
datasets, the video source): a file is an image when Pillow recognises its content, whatever its
name or extension. The declared size is read from the header before anything is decoded, so a
small file claiming a huge picture (a decompression bomb) is refused in milliseconds and never
allocated. Decoding is OpenCV's (fast, and the same code path as camera frames), with Pillow for
the formats a given OpenCV build cannot decode (GIF before OpenCV 4.12, for instance). A photo is
turned upright by its EXIF orientation, as a photo viewer shows it: phones store portraits sideways
with a tag saying so, and neither decoder applies it when asked for the file's exact pixels
(OpenCV's IMREAD_UNCHANGED ignores the tag).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError

#: smallest side a face image can have (a detector anchor is 16 px)
MIN_IMAGE_SIDE = 16
#: largest number of pixels accepted; 8000x8000 (64 MP) fits, a decompression bomb does not
MAX_IMAGE_PIXELS = 100_000_000
#: the EXIF tag that says how the stored pixels must be turned to stand upright (values 1-8)
EXIF_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class ImageHeader:
    """What an image file declares about itself, read without decoding its pixels."""

    format: str  # Pillow's name: JPEG, PNG, GIF, BMP, WEBP, TIFF, PPM, ...
    width: int
    height: int
    orientation: int = 1  # EXIF orientation of the stored pixels; 1 = already upright


@dataclass
class ImageListing:
    """The images found under some paths, and the files that were passed over, with the reason."""

    images: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def read_header(data: bytes | io.BufferedIOBase, source: str = "image") -> ImageHeader:
    """Format and declared size of encoded image bytes (or an open binary file).

    Raises ``ImageError`` when the content is not an image, or declares more than
    ``MAX_IMAGE_PIXELS`` pixels.
    """
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit and raises at twice it; ours is the one that counts.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                header = ImageHeader(str(image.format), int(image.width), int(image.height), _orientation(image))
    except Image.DecompressionBombError:
        raise ImageError(f"{source}: image declares over {MAX_IMAGE_PIXELS} pixels (refused before decoding)") from None
    except UnidentifiedImageError:
        raise ImageError(f"{source}: not a readable image (its content is no image format this software reads)") from None
    except Exception as error:  # noqa: BLE001 - Pillow's parsers raise many types on hostile headers
        raise ImageError(f"{source}: not a readable image ({type(error).__name__}: {error})") from None
    if header.width * header.height > MAX_IMAGE_PIXELS:
        raise ImageError(
            f"{source}: image declares {header.width}x{header.height}, over {MAX_IMAGE_PIXELS} pixels "
            "(refused before decoding)"
        )
    return header


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # noqa: BLE001 - a damaged EXIF block leaves the pixels as stored, it does not refuse them
        return 1
    return value if 1 <= value <= 8 else 1


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """The stored pixels of an image turned as its EXIF ``orientation`` (1-8) says, as a viewer shows them."""
    if orientation in (5, 6, 7, 8):
        image = np.swapaxes(image, 0, 1)  # transposed: 5 as it is, the others one flip away
    if orientation in (2, 6):
        image = image[:, ::-1]
    elif orientation in (4, 8):
        image = image[::-1]
    elif orientation in (3, 7):
        image = image[::-1, ::-1]
    return image


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the file's content is an image (header only: cheap enough for every file of a dataset)."""
    try:
        with open(path, "rb") as handle:
            read_header(handle, str(path))
    except (OSError, ImageError):
        return False
    return True


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


def _decode_with_opencv(data: bytes, source: str) -> np.ndarray | None:
    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    except cv2.error as error:
        raise ImageError(f"{source}: cannot decode image ({error.msg.strip()})") from None
    if decoded is None:
        return None
    if decoded.ndim == 3 and decoded.shape[2] == 3:
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    if decoded.ndim == 3 and decoded.shape[2] == 4:
        return cv2.cvtColor(decoded, cv2.COLOR_BGRA2RGBA)
    return decoded


def _decode_with_pillow(data: bytes, source: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.seek(0)  # the first frame of an animation
            return np.asarray(image.convert("RGBA" if "A" in image.getbands() else "RGB"))
    except Exception as error:  # noqa: BLE001 - as in read_header: hostile files raise many types
        raise ImageError(f"{source}: not a readable image (corrupt or truncated: {error})") from None


def decode_image(data: bytes, source: str = "image") -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, GIF, ...) to (H, W, 3) uint8 RGB.

    The header is checked first (format and declared size), so nothing is decoded that
    ``read_header`` refuses.
    """
    if not data:
        raise ImageError(f"{source}: file is empty")
    header = read_header(data, source)
    decoded = _decode_with_opencv(data, source)
    if decoded is None:
        decoded = _decode_with_pillow(data, source)
    return to_rgb8(upright(decoded, header.orientation), source)


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
    return decode_image(data, str(path))


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def find_images(paths: list[str | os.PathLike], recursive: bool = True) -> ImageListing:
    """Image files among ``paths``: folders are searched (recursively, sorted), files are taken as given.

    Inside a folder, files whose content is not an image are listed in ``skipped`` with the reason
    (hidden files and folders, such as ``.DS_Store``, are passed over silently). A file named
    explicitly is always in ``images``: reading it later says exactly what is wrong with it.
    """
    listing = ImageListing()
    for entry in map(Path, paths):
        if not entry.is_dir():
            listing.images.append(entry)
            continue
        candidates = entry.rglob("*") if recursive else entry.iterdir()
        for path in sorted(p for p in candidates if p.is_file() and not _hidden(p, entry)):
            if is_image_file(path):
                listing.images.append(path)
            else:
                listing.skipped.append((path, "not an image"))
    return listing
