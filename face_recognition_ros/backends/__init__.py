"""Inference backends for the detector and encoders: torch, ONNX Runtime and TensorRT (torch2trt).

``attach_backend(component, backend, device, ...)`` gives a component a runner; see
README.md, "Acceleration" for the fallback order and the engine cache.
"""

from .attach import BACKENDS, PRECISIONS, Step, attach_backend, default_cache_dir, fallback_chain
from .components import ComponentInfo, describe
from .runners import BatchedRunner

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BatchedRunner",
    "ComponentInfo",
    "Step",
    "attach_backend",
    "default_cache_dir",
    "describe",
    "fallback_chain",
]
