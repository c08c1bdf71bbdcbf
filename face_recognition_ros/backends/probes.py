"""Can a backend run here? Each probe answers yes, or no with the reason a user needs to fix it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Probe:
    """Availability of one backend ingredient; ``reason`` says why not."""

    ok: bool
    reason: str = ""


def cuda_probe() -> Probe:
    if not torch.cuda.is_available():
        build = "a CPU-only torch build" if torch.version.cuda is None else "no visible CUDA device"
        return Probe(False, f"CUDA not available ({build})")
    return Probe(True)


def _import_probe(module: str) -> Probe:
    try:
        importlib.import_module(module)
    except Exception as error:  # a broken install raises more than ImportError (OSError on missing .so)
        return Probe(False, f"{module} not importable ({error})")
    return Probe(True)


def tensorrt_probe() -> Probe:
    """torch2trt needs CUDA, TensorRT's Python bindings and torch2trt itself."""
    for probe in (cuda_probe(), _import_probe("tensorrt"), _import_probe("torch2trt")):
        if not probe.ok:
            return probe
    return Probe(True)


def onnxruntime_probe() -> Probe:
    return _import_probe("onnxruntime")


def onnxruntime_providers() -> list[str]:
    """Execution providers of the installed onnxruntime build (empty when it is missing)."""
    try:
        import onnxruntime
    except Exception:
        return []
    return list(onnxruntime.get_available_providers())
