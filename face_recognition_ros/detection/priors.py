"""RetinaFace anchors (priors) for a given network input size, in input pixels."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .retinaface_net import ANCHORS_PER_LOCATION, FEATURE_STRIDES

# Square anchor sides per level, in input pixels (two per feature-map location).
ANCHOR_SIZES = ((16, 32), (64, 128), (256, 512))


@lru_cache(maxsize=16)
def anchor_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Anchor centres (P, 2) as x, y and sides (P, 1), float32, read-only, in network output order.

    Order: level by level (strides 8, 16, 32), then grid rows, columns, then anchor size, matching
    the heads' (N, A*k, H, W) -> (N, H*W*A, k) flattening. Grids cover ceil(size / stride) cells,
    as a stride-2, padding-1 conv stack produces.
    """
    centres, sides = [], []
    for stride, sizes in zip(FEATURE_STRIDES, ANCHOR_SIZES):
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grid = (np.stack((xs.ravel(), ys.ravel()), axis=1) + 0.5) * stride
        centres.append(np.repeat(grid, len(sizes), axis=0))
        sides.append(np.tile(np.asarray(sizes, np.float64), rows * cols))
    centre_array = np.concatenate(centres).astype(np.float32)
    side_array = np.concatenate(sides).astype(np.float32)[:, None]
    centre_array.flags.writeable = side_array.flags.writeable = False
    return centre_array, side_array


def anchor_count(height: int, width: int) -> int:
    """Number of anchors (rows of the network outputs) for an input of this size."""
    return sum(
        len(sizes) * math.ceil(height / stride) * math.ceil(width / stride)
        for stride, sizes in zip(FEATURE_STRIDES, ANCHOR_SIZES)
    )


@lru_cache(maxsize=32)
def anchor_subset(height: int, width: int, side: int) -> np.ndarray:
    """Indices, among the anchors of a side x side input, of those of a height x width input.

    What a fixed-size engine's output rows mean when a smaller frame is padded into it
    (``backends.fixed_size``).
    """
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
