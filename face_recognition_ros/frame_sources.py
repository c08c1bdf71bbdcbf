"""Frames from a video file, a camera or a folder of images: the one reader every stream user shares.

The CLI's ``recognize`` and ``demo``, ``video-to-bag`` and the ``video_source`` node all take their
frames from here, so a folder of images or a video means the same frames, in the same order, with
the same timestamps, in each of them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError
from .image_files import find_images, is_image_file, load_image, to_rgb8

#: frames per second of an image folder played as a stream, unless told otherwise
FOLDER_RATE_HZ = 2.0
#: frames per second assumed when a video container does not say
FALLBACK_RATE_HZ = 30.0


@dataclass(frozen=True)
class Frame:
    """One frame of a stream."""

    index: int  # position in the stream, from 0
    time_s: float  # from the video's own timestamps when it has them, else index / rate
    rgb: np.ndarray  # (H, W, 3) uint8
    source: str  # the video, camera or image file it came from


def _check_rate(rate_hz: float | None) -> None:
    if rate_hz is not None and not 0 < rate_hz < math.inf:  # NaN too
        raise ImageError(f"a frame rate must be positive and finite, got {rate_hz}")


class VideoFrames:
    """A video file (any container OpenCV reads) or a camera (an integer device index)."""

    def __init__(self, video: str | os.PathLike | int, rate_hz: float | None = None) -> None:
        self.is_camera = isinstance(video, int)
        self.name = f"camera {video}" if self.is_camera else str(video)
        if not self.is_camera and not Path(video).is_file():
            raise ImageError(f"{video}: no such video file")
        # OpenCV's video reader plays a still image as a one-frame video: an image by this software's rule
        # (Pillow recognises it), and one only OpenCV recognises (a 3-channel float TIFF), is never a stream.
        if not self.is_camera and (is_image_file(video) or cv2.haveImageReader(str(video))):
            raise ImageError(f"{video}: is a single image, not a video")
        if self.is_camera and video < 0:  # OpenCV's "any camera" index; it crashed the process here
            raise ImageError(f"camera {video}: a camera index is 0 or more")
        _check_rate(rate_hz)
        self._target = video if self.is_camera else str(video)
        capture = self._open()
        try:
            container_rate = capture.get(cv2.CAP_PROP_FPS) or 0.0
            self.frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            if not self.is_camera and not capture.read()[0]:
                raise ImageError(f"{self.name}: no frame could be read (not a video, or corrupt)")
        finally:
            capture.release()
        self._own_times = rate_hz is None
        self.rate_hz = float(rate_hz or (container_rate if 0.0 < container_rate < 1000.0 else FALLBACK_RATE_HZ))

    def _open(self) -> cv2.VideoCapture:
        # Files go to FFmpeg alone: OpenCV's default also tries its image-sequence reader, which
        # "opens" any file with an image extension, text included.
        capture = cv2.VideoCapture(self._target) if self.is_camera else cv2.VideoCapture(self._target, cv2.CAP_FFMPEG)
        if not capture.isOpened():
            capture.release()
            raise ImageError(f"{self.name}: cannot open the video (unsupported format, corrupt, or no such camera)")
        return capture

    def frames(self) -> Iterator[Frame]:
        """Every frame from the start; each call starts over (a camera simply goes on)."""
        capture = self._open()
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                rgb = to_rgb8(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{self.name} frame {index}")
                yield Frame(index, self._time(capture, index), rgb, self.name)
                index += 1
        finally:
            capture.release()

    def _time(self, capture: cv2.VideoCapture, index: int) -> float:
        if self._own_times and not self.is_camera:
            msec = capture.get(cv2.CAP_PROP_POS_MSEC)
            if msec > 0 or (index == 0 and msec == 0):
                return msec / 1000.0
        return index / self.rate_hz


class FolderFrames:
    """The images of one folder (not its sub-folders), in name order, as a stream."""

    def __init__(self, folder: str | os.PathLike, rate_hz: float | None = None) -> None:
        self.is_camera = False
        self.name = str(folder)
        _check_rate(rate_hz)
        listing = find_images([folder], recursive=False)
        self.files = listing.images
        self.skipped = listing.skipped
        if not self.files:
            raise ImageError(f"{folder}: the folder holds no images")
        self.rate_hz = float(rate_hz or FOLDER_RATE_HZ)
        self.frame_count = len(self.files)

    def frames(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            yield Frame(index, index / self.rate_hz, load_image(path), str(path))


FrameSource = VideoFrames | FolderFrames


def open_frames(source: str | os.PathLike | int, rate_hz: float | None = None) -> FrameSource:
    """A camera (int), an image folder, or a video file, as a stream of frames."""
    if isinstance(source, int):
        return VideoFrames(source, rate_hz)
    if not str(source):
        raise ImageError("no video file or image folder given")
    path = Path(source).expanduser()
    if path.is_dir():
        return FolderFrames(path, rate_hz)
    if not path.is_file():
        raise ImageError(f"{path}: no such video file or image folder")
    return VideoFrames(path, rate_hz)  # which refuses a single image
