"""Live enrollment: pick good samples of one person's face from a stream of processed frames."""

from __future__ import annotations

from collections import Counter
from typing import Protocol

import cv2
import numpy as np

from .types import AMBIGUITY_RATIO, Detections

ACCEPTED = "accepted"
NO_FACE = "no face"
AMBIGUOUS = "ambiguous: several equally large faces"
TOO_SMALL = "too small"
BLURRY = "blurry"
DUPLICATE = "duplicate"
DONE = "done"
TIMED_OUT = "timed out"

#: Variance of the Laplacian of the 256x256 grayscale storage crop below which a face is blurry.
#: Measured on real crops (300 random LFW photos, whose ~90 px faces are upscaled to the crop,
#: and the photos in media/): 99.7 % of them score >= 7 (median 35, sharp webcam-size faces
#: 100-2000), while every one of the same crops blurred with a Gaussian of sigma 3 px scores < 7.
DEFAULT_MIN_SHARPNESS = 7.0


class FaceBatchLike(Protocol):
    """What enrollment needs of ``pipeline.FaceBatch`` (from ``analyze(image, storage_crops=True)``)."""

    detections: Detections
    storage_crops: np.ndarray | None
    embeddings: np.ndarray


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of an RGB crop's grayscale: low for blurred or featureless faces."""
    gray = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


class LiveEnrollment:
    """Collects ``num_samples`` distinct, sharp, large samples of the largest face within ``timeout_s``.

    Feed every processed frame to :meth:`offer`; it answers with a short status saying whether the
    frame gave a sample and, if not, why. Frames with several faces of nearly the same size
    (second largest >= ``ambiguity_ratio`` x largest area) are refused: it would be a guess who
    is being enrolled. The clock starts at ``started_at``, or else at the first frame offered.
    """

    def __init__(
        self,
        num_samples: int = 5,
        timeout_s: float = 10.0,
        min_face_size: float = 60,
        min_sharpness: float = DEFAULT_MIN_SHARPNESS,
        duplicate_similarity: float = 0.97,
        ambiguity_ratio: float = AMBIGUITY_RATIO,
        started_at: float | None = None,
    ) -> None:
        if num_samples < 1 or timeout_s <= 0:
            raise ValueError(f"num_samples must be >= 1 and timeout_s > 0, got {num_samples}, {timeout_s}")
        if not 0.0 < ambiguity_ratio <= 1.0:
            raise ValueError(f"ambiguity_ratio must be in (0, 1], got {ambiguity_ratio}")
        self.num_samples = num_samples
        self.timeout_s = timeout_s
        self.min_face_size = min_face_size
        self.min_sharpness = min_sharpness
        self.duplicate_similarity = duplicate_similarity
        self.ambiguity_ratio = ambiguity_ratio
        self.started_at = started_at
        self.last_status: str | None = None
        self.rejections: Counter[str] = Counter()
        self._crops: list[np.ndarray] = []
        self._embeddings: list[np.ndarray] = []

    @property
    def done(self) -> bool:
        return len(self._crops) >= self.num_samples

    @property
    def num_accepted(self) -> int:
        return len(self._crops)

    @property
    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """The accepted ``(storage_crops (K, 256, 256, 3), embeddings (K, D))``, in acceptance order."""
        if not self._crops:
            return np.zeros((0, 256, 256, 3), np.uint8), np.zeros((0, 0), np.float32)
        return np.stack(self._crops), np.stack(self._embeddings)

    def offer(self, batch: FaceBatchLike, now: float) -> str:
        """Consider one frame's faces; returns ``ACCEPTED`` or the reason the frame gave no sample."""
        if self.started_at is None:
            self.started_at = now
        if self.done:
            return DONE
        if self._expired(now):
            return TIMED_OUT
        status = self._judge(batch)
        self.last_status = status
        if status != ACCEPTED:
            self.rejections[status] += 1
        return status

    def failure(self, now: float) -> str | None:
        """Why enrollment failed once the timeout has passed without enough samples; None otherwise."""
        if self.started_at is None:
            self.started_at = now
        if self.done or not self._expired(now):
            return None
        message = (
            f"timed out after {self.timeout_s:.1f} s with {self.num_accepted}/{self.num_samples} samples; "
            f"last: {self.last_status or 'no frame received'}"
        )
        if self.rejections:
            message += " (rejected: " + ", ".join(f"{why} {n}" for why, n in self.rejections.most_common()) + ")"
        return message

    def _expired(self, now: float) -> bool:
        return now - self.started_at >= self.timeout_s

    def _judge(self, batch: FaceBatchLike) -> str:
        detections = batch.detections
        if len(detections) == 0:
            return NO_FACE
        if batch.storage_crops is None:
            raise ValueError("live enrollment needs storage crops: use pipeline.analyze(image, storage_crops=True)")
        largest = detections.dominant_index(self.ambiguity_ratio)
        if largest is None:
            return AMBIGUOUS
        sides = np.clip(np.asarray(detections.boxes[largest, 2:], np.float64) - detections.boxes[largest, :2], 0, None)
        if sides.min() < self.min_face_size:
            return TOO_SMALL
        crop = batch.storage_crops[largest]
        if sharpness(crop) < self.min_sharpness:
            return BLURRY
        embedding = np.asarray(batch.embeddings[largest], np.float32)
        if self._embeddings and self._max_similarity(embedding) > self.duplicate_similarity:
            return DUPLICATE
        self._crops.append(np.array(crop, np.uint8))
        self._embeddings.append(embedding.copy())
        return ACCEPTED

    def _max_similarity(self, embedding: np.ndarray) -> float:
        accepted = np.stack(self._embeddings)
        norms = np.linalg.norm(accepted, axis=1) * np.linalg.norm(embedding)
        return float(np.max(accepted @ embedding / np.maximum(norms, 1e-12)))
