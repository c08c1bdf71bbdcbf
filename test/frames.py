"""Test frames shared by the ROS-free recognizer test and the ROS launch test (no ROS import here)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def load_frame(path: Path, max_side: int = 640) -> np.ndarray:
    """An RGB test frame, downscaled so the recognizer's CPU time stays small."""
    bgr = cv2.imread(str(path))
    assert bgr is not None, f"cannot read {path}"
    scale = max_side / max(bgr.shape[:2])
    if scale < 1.0:
        bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
