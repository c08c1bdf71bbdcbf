"""Runners: callables mapping a float32 NCHW numpy batch to the network's outputs as numpy.

A runner returns one array for a single-output network (encoders) and a tuple for several (the
detector's ``loc, conf, landmarks``), exactly as the component's default torch call would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

import numpy as np
import torch

Outputs = Union[np.ndarray, tuple[np.ndarray, ...]]
Runner = Callable[[np.ndarray], Outputs]


def to_numpy(outputs: torch.Tensor | tuple | list) -> Outputs:
    """Torch outputs (any device or float type) -> float32 numpy, keeping the tuple structure."""
    if isinstance(outputs, torch.Tensor):
        return outputs.float().cpu().numpy()
    return tuple(output.float().cpu().numpy() for output in outputs)


class BatchedRunner:
    """Accepts any batch size: batches above ``max_batch`` are run in chunks and concatenated."""

    def __init__(self, run: Runner, max_batch: int, backend: str, device: str, precision: str) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.run = run
        self.max_batch = max_batch
        self.backend = backend
        self.device = device
        self.precision = precision

    def __repr__(self) -> str:
        return f"BatchedRunner({self.backend} on {self.device}, {self.precision}, max_batch={self.max_batch})"

    def __call__(self, batch: np.ndarray) -> Outputs:
        batch = np.ascontiguousarray(batch, np.float32)  # no copy when it already is
        if batch.ndim != 4:
            raise ValueError(f"expected a (N, C, H, W) batch, got shape {batch.shape}")
        if batch.shape[0] <= self.max_batch:
            return self.run(batch)
        # Slices along axis 0 of a C-contiguous array are contiguous views: no copies here.
        parts = [self.run(batch[start : start + self.max_batch]) for start in range(0, batch.shape[0], self.max_batch)]
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate(outputs) for outputs in zip(*parts))
        return np.concatenate(parts)


def prefers_channels_last(network: torch.nn.Module) -> bool:
    """Whether a CPU network runs faster in NHWC: true for depthwise (grouped) convolutions.

    Measured on the 2-core CI CPU (README.md, "Acceleration"): RetinaFace's MobileNet (depthwise) ran
    about 3x faster with channels_last, dlib's ResNet (dense 3x3 convs) no faster.
    """
    return any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in network.modules())


class TorchRunner:
    """The component's own torch module, on CPU (fp32) or CUDA (fp32 / fp16).

    The module is moved (and on fp16 converted) in place rather than copied: on an embedded GPU a
    second copy of the weights costs memory the engine needs.
    """

    def __init__(self, network: torch.nn.Module, device: str, precision: str = "fp32") -> None:
        self.device = torch.device(device)
        self.half = precision == "fp16"
        if self.half and self.device.type != "cuda":
            raise ValueError("fp16 torch inference needs a CUDA device")
        self.channels_last = self.device.type == "cpu" and prefers_channels_last(network)
        network = network.to(self.device).eval()
        if self.half:
            network = network.half()
        if self.channels_last:
            network = network.to(memory_format=torch.channels_last)
        self.network = network

    def __call__(self, batch: np.ndarray) -> Outputs:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device, non_blocking=True)
            if self.half:
                x = x.half()
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return to_numpy(self.network(x))
