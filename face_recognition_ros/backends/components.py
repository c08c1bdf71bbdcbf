"""What a backend needs of a detector or encoder: the :class:`Runnable` protocol, and its description."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from .runners import Runner

#: detector input side used when the component does not say (its ``max_size`` is None)
DEFAULT_DETECTOR_SIZE = 640
#: the detector's network reduces by 32 at its coarsest level
DETECTOR_STRIDE = 32


@dataclass(frozen=True)
class ComponentInfo:
    """A component's network and the identity of its weights."""

    name: str
    weights_hash: str
    network: torch.nn.Module
    #: (C, H, W) of one input for fixed-size networks (encoders); None for any H, W (the detector)
    fixed_input: tuple[int, int, int] | None
    #: side of the square input a fixed-size engine is built for (detector only)
    max_side: int
    #: which output rows of a padded square input belong to a smaller one (any-size networks that
    #: can run through a fixed-size engine; ``fixed_size.PaddedOutputRows``)
    padded_output_rows: Callable[[int, int, int], np.ndarray] | None = None

    @property
    def dynamic_spatial(self) -> bool:
        return self.fixed_input is None

    def engine_input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) an engine with fixed spatial size is built for."""
        return self.fixed_input if self.fixed_input is not None else (3, self.max_side, self.max_side)


def safe_token(text: str) -> str:
    """A file-name-safe version of a key part (GPU names hold spaces, torch versions a '+')."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "unknown"


@runtime_checkable
class Runnable(Protocol):
    """A component a backend can run: its torch network, the identity of its weights, and a public
    way to take a runner. ``runners.RunnerHolder`` provides ``use_runner``; the detector and every
    encoder are Runnable. Optional: ``name``, ``input_shape`` (fixed-size networks), ``max_size``."""

    @property
    def network(self) -> torch.nn.Module: ...

    @property
    def weights_hash(self) -> str: ...

    def use_runner(self, runner: Runner) -> None: ...


def describe(component: object) -> ComponentInfo:
    """Read ``network``, ``weights_hash``, ``name`` / ``input_shape`` / ``max_size`` off a Runnable component."""
    if not isinstance(component, Runnable):
        missing = [attr for attr in ("network", "weights_hash", "use_runner") if not hasattr(component, attr)]
        raise TypeError(f"{type(component).__name__} cannot take a backend: it lacks {', '.join(missing)}")
    name = getattr(component, "name", "") or type(component).__name__.removesuffix("Detector").lower()
    fixed = getattr(component, "input_shape", None)
    max_size = getattr(component, "max_size", None) or DEFAULT_DETECTOR_SIZE
    side = -(-int(max_size) // DETECTOR_STRIDE) * DETECTOR_STRIDE
    return ComponentInfo(
        name=safe_token(name),
        weights_hash=safe_token(component.weights_hash),
        network=component.network,
        fixed_input=tuple(int(v) for v in fixed) if fixed is not None else None,
        max_side=side,
        padded_output_rows=getattr(component, "padded_output_rows", None),
    )
