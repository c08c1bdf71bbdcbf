"""Identity-preserving augmentation of aligned face crops, in numpy + OpenCV (no torchvision)."""

from __future__ import annotations

import cv2
import numpy as np

from .config import AugmentConfig

_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def augment_face(crop: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One randomly perturbed copy of an (H, W, 3) uint8 crop: geometry, flip, colour, blur."""
    height, width = crop.shape[:2]
    out = crop
    if config.rotate_deg or config.scale or config.shift_px:
        # A small similarity jitter stands in for landmark noise of the detector.
        angle = rng.uniform(-config.rotate_deg, config.rotate_deg)
        scale = 1.0 + rng.uniform(-config.scale, config.scale)
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-config.shift_px, config.shift_px, 2)
        out = cv2.warpAffine(out, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < config.flip:
        out = out[:, ::-1]
    image = out.astype(np.float32)
    if rng.random() < config.grayscale:
        image[:] = (image @ _GRAY_WEIGHTS)[..., None]
    elif config.saturation:
        gray = (image @ _GRAY_WEIGHTS)[..., None]
        image = gray + (image - gray) * (1.0 + rng.uniform(-config.saturation, config.saturation))
    if config.contrast:
        mean = image.mean()
        image = mean + (image - mean) * (1.0 + rng.uniform(-config.contrast, config.contrast))
    if config.brightness:
        image = image * (1.0 + rng.uniform(-config.brightness, config.brightness))
    out = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < config.blur:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.5))
    return np.ascontiguousarray(out)
