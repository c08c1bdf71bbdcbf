"""Runners: callables mapping a float32 NCHW numpy batch to the network's outputs as numpy.

A runner returns one array for a single-output network (encoders) and a tuple for several (the
detector's ``loc, conf, landmarks``). This is the ground floor every model runs on: the detector
and every encoder hold one runner (:class:`RunnerHolder`), which is plain torch until a backend
(``attach_backend``) gives them another; nothing else in the package calls a network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

import numpy as np
import torch

from ..errors import BackendUnavailableError

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
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {device!r} requested but torch has no CUDA here")
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


class RunnerHolder:
    """The one way a component runs its network: ``self.runner(batch)``.

    The detector and every encoder inherit it. Until a backend hands over another runner with
    :meth:`use_runner` (which ``attach_backend`` does), the runner is :class:`TorchRunner` on the
    component's ``device``; a subclass provides ``network`` and may set ``device``.
    """

    device: str | torch.device = "cpu"
    _runner: Runner | None = None

    @property
    def network(self) -> torch.nn.Module:  # pragma: no cover - every component defines it
        raise NotImplementedError

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            self._runner = TorchRunner(self.network, str(self.device))
        return self._runner

    def use_runner(self, runner: Runner) -> None:
        """Run the network through ``runner`` from now on (any backend, or a test double)."""
        if not callable(runner):
            raise TypeError(f"a runner is a callable batch -> outputs, got {type(runner).__name__}")
        self._runner = runner

    def run_network(self, batch: np.ndarray) -> Outputs:
        """The network's raw outputs for a float32 (N, C, H, W) batch."""
        return self.runner(np.ascontiguousarray(batch, np.float32))
