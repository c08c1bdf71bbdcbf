"""RetinaFace anchors (priors) for a given network input size, in input pixels."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .retinaface_net import FEATURE_STRIDES

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
