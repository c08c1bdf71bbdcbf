"""Run a network of any input size through an engine built for one square size (TensorRT).

torch2trt engines keep the spatial size they were built with, but the detector feeds frames of any
size up to ``max_size``. The adapter pads each batch at the bottom and right to the engine's side
(with zeros, i.e. the training mean colour, since the detector's input is the image minus its mean),
runs the engine, and keeps only the output rows the unpadded input would have had. Which rows those
are is the component's knowledge (``padded_output_rows``, the detector's anchor grid), not this
layer's. Scores near the padded border can differ slightly from an unpadded run (the receptive field
sees mean colour instead of the conv's zero padding).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ImageError
from .runners import Outputs, Runner

#: (height, width, side) -> indices, among the output rows of a side x side input, of the rows of a
#: height x width input
PaddedOutputRows = Callable[[int, int, int], np.ndarray]


class FixedSizeAdapter:
    """Wraps a runner that only accepts (N, 3, side, side) so it takes any (N, 3, H <= side, W <= side)."""

    def __init__(self, run: Runner, side: int, output_rows: PaddedOutputRows) -> None:
        self.run = run
        self.side = side
        self.output_rows = output_rows
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
        keep = self.output_rows(height, width, self.side)
        if isinstance(outputs, tuple):
            return tuple(output[:, keep] for output in outputs)
        return outputs[:, keep]
