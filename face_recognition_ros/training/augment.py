"""Identity-preserving augmentation of aligned face crops, in numpy + OpenCV (no torchvision)."""

from __future__ import annotations

import cv2
import numpy as np

from .config import AugmentConfig

# The perturbations' ranges, shared with the batched torch version (augment_torch).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
BLUR_SIGMA = (0.3, 1.5)
DOWNSCALE_FACTOR = (0.35, 0.9)  # of the side
NOISE_SIGMA = (2.0, 8.0)  # grey levels
JPEG_QUALITY = (30, 90)  # inclusive
ERASE_AREA = (0.03, 0.2)  # of the crop
ERASE_ASPECT = (0.5, 2.0)
_GRAY_WEIGHTS = np.array(GRAY_WEIGHTS, np.float32)


def augment_face(crop: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """One randomly perturbed copy of an (H, W, 3) uint8 crop: geometry, flip, colour, blur, and when the
    config asks for them low resolution, JPEG artefacts, noise and an occluding rectangle."""
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
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*BLUR_SIGMA))
    if config.downscale and rng.random() < config.downscale:
        factor = rng.uniform(*DOWNSCALE_FACTOR)
        small = cv2.resize(out, (max(8, round(width * factor)), max(8, round(height * factor))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if config.noise and rng.random() < config.noise:
        noisy = out.astype(np.float32) + rng.normal(0.0, rng.uniform(*NOISE_SIGMA), out.shape).astype(np.float32)
        out = np.clip(noisy, 0, 255).astype(np.uint8)
    if config.jpeg and rng.random() < config.jpeg:
        ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(out), [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))])
        if ok:
            out = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).reshape(height, width, 3)
    if config.erase and rng.random() < config.erase:
        area = rng.uniform(*ERASE_AREA) * width * height
        aspect = np.exp(rng.uniform(np.log(ERASE_ASPECT[0]), np.log(ERASE_ASPECT[1])))
        box_w = int(min(width, round(np.sqrt(area * aspect))))
        box_h = int(min(height, round(np.sqrt(area / aspect))))
        x0, y0 = int(rng.integers(0, width - box_w + 1)), int(rng.integers(0, height - box_h + 1))
        out = np.array(out)  # writable (a flip leaves a view)
        out[y0:y0 + box_h, x0:x0 + box_w] = rng.integers(0, 256, 3, dtype=np.uint8)
    return np.ascontiguousarray(out)
