"""Run the detector through an engine built for one square input size (TensorRT through torch2trt).

torch2trt engines keep the spatial size they were built with, but the detector feeds frames of any
size up to ``max_size``. The adapter pads each batch at the bottom and right to the engine's side
(with zeros, i.e. the training mean colour, since the network input is the image minus its mean),
runs the engine, and keeps only the anchors of the unpadded frame's grid, in the order the
detector's anchor decoding expects. Scores near the padded border can differ slightly from an
unpadded run (the receptive field sees mean colour instead of the conv's zero padding).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..detection.retinaface_net import ANCHORS_PER_LOCATION, FEATURE_STRIDES
from ..errors import ImageError
from .runners import Outputs, Runner


@lru_cache(maxsize=32)
def anchor_subset(height: int, width: int, side: int) -> np.ndarray:
    """Indices, among the anchors of a side x side input, of those of a height x width input."""
    indices, offset = [], 0
    for stride in FEATURE_STRIDES:
        padded_cols = math.ceil(side / stride)
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        cells = np.arange(rows)[:, None] * padded_cols + np.arange(cols)[None, :]
        per_anchor = cells.reshape(-1, 1) * ANCHORS_PER_LOCATION + np.arange(ANCHORS_PER_LOCATION)
        indices.append(offset + per_anchor.ravel())
        offset += math.ceil(side / stride) * padded_cols * ANCHORS_PER_LOCATION
    subset = np.concatenate(indices)
    subset.flags.writeable = False
    return subset


class FixedSizeAdapter:
    """Wraps a runner that only accepts (N, 3, side, side) so it takes any (N, 3, H <= side, W <= side)."""

    def __init__(self, run: Runner, side: int) -> None:
        self.run = run
        self.side = side
        self._padded: np.ndarray | None = None  # reused between frames: one allocation per batch size

    def __call__(self, batch: np.ndarray) -> Outputs:
        count, channels, height, width = batch.shape
        if height > self.side or width > self.side:
            raise ImageError(
                f"detector input {width}x{height} exceeds the {self.side}x{self.side} engine; "
                "set the detector's max_size to at most the engine size"
            )
        if (height, width) == (self.side, self.side):
            return self.run(batch)
        if self._padded is None or self._padded.shape[:2] != (count, channels):
            self._padded = np.zeros((count, channels, self.side, self.side), np.float32)
        else:
            self._padded.fill(0.0)
        self._padded[:, :, :height, :width] = batch
        outputs = self.run(self._padded)
        keep = anchor_subset(height, width, self.side)
        if isinstance(outputs, tuple):
            return tuple(output[:, keep] for output in outputs)
        return outputs[:, keep]
