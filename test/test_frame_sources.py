"""Frames from a video file, a camera or an image folder: what each yields, and what each refuses."""

from __future__ import annotations

import math
import shutil

import cv2
import numpy as np
import pytest

from face_recognition_ros.errors import ImageError
from face_recognition_ros.frame_sources import FolderFrames, VideoFrames, open_frames

CLIP = "short_hamilton_clip.mp4"


def test_a_video_gives_rgb_frames_at_its_container_rate_with_rising_times(media_dir):
    source = open_frames(media_dir / CLIP)
    capture = cv2.VideoCapture(str(media_dir / CLIP))
    container_rate = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    assert isinstance(source, VideoFrames) and source.rate_hz == pytest.approx(container_rate)
    frames = []
    for frame in source.frames():
        frames.append(frame)
        if len(frames) == 5:
            break
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.rgb.ndim == 3 and f.rgb.shape[2] == 3 and f.rgb.dtype.name == "uint8" for f in frames)
    times = [f.time_s for f in frames]
    assert times == sorted(times) and times[1] - times[0] == pytest.approx(1 / container_rate, rel=0.05)


def test_a_folder_of_images_plays_in_name_order_skipping_what_is_no_image(media_dir, tmp_path):
    for name in ("b.jpg", "a.jpg"):
        shutil.copy(media_dir / "obama.jpg", tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    source = open_frames(tmp_path, rate_hz=2.0)
    assert isinstance(source, FolderFrames)
    assert [f.source.rsplit("/", 1)[1] for f in source.frames()] == ["a.jpg", "b.jpg"]
    assert [f.time_s for f in source.frames()] == [0.0, 0.5]
    assert [p.name for p, _ in source.skipped] == ["notes.txt"]


@pytest.mark.parametrize("rate", [0.0, -5.0, math.nan, math.inf])
def test_a_frame_rate_that_is_not_positive_and_finite_is_refused(media_dir, rate):
    with pytest.raises(ImageError, match="frame rate must be positive and finite"):
        open_frames(media_dir / CLIP, rate_hz=rate)
    with pytest.raises(ImageError, match="frame rate must be positive and finite"):
        FolderFrames(media_dir, rate_hz=rate)


def test_a_negative_camera_index_is_refused_before_opencv_sees_it():
    # OpenCV takes -1 as "any camera"; on a machine without one that crashed the whole process.
    with pytest.raises(ImageError, match="camera -1: a camera index is 0 or more"):
        open_frames(-1)


def test_a_single_image_or_a_missing_path_is_not_a_stream(media_dir, tmp_path):
    with pytest.raises(ImageError, match="is a single image, not a video"):
        open_frames(media_dir / "obama.jpg")
    with pytest.raises(ImageError, match="no such video file or image folder"):
        open_frames(tmp_path / "missing.mp4")
    float_tiff = tmp_path / "float.tiff"  # an image OpenCV writes and Pillow cannot parse
    assert cv2.imwrite(str(float_tiff), np.random.default_rng(0).random((64, 64, 3), dtype=np.float32))
    for reader in (open_frames, VideoFrames):  # not played as a one-frame video by either
        with pytest.raises(ImageError, match="float.tiff: is a single image, not a video"):
            reader(float_tiff)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0" * 1000)
    with pytest.raises(ImageError, match="broken.mp4"):
        open_frames(broken)
