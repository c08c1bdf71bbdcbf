"""The one runner layer: how the detector and every encoder run their networks.

A component (:class:`Runnable`) holds a runner (:class:`RunnerHolder`: plain torch by default);
``attach_backend(component, backend, device, ...)`` gives it another one, from the registered
backends (torch, ONNX Runtime, TensorRT through torch2trt), falling back in a documented order.
A new backend is one :func:`register_backend` call. README.md, "Acceleration", has the fallback
order and the engine cache.
"""

from .attach import (
    BACKENDS,
    PRECISIONS,
    BackendSpec,
    Step,
    attach_backend,
    backend_names,
    default_cache_dir,
    fallback_chain,
    register_backend,
)
from .components import ComponentInfo, Runnable, describe
from .runners import BatchedRunner, Runner, RunnerHolder, TorchRunner

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendSpec",
    "BatchedRunner",
    "ComponentInfo",
    "Runnable",
    "Runner",
    "RunnerHolder",
    "Step",
    "TorchRunner",
    "attach_backend",
    "backend_names",
    "default_cache_dir",
    "describe",
    "fallback_chain",
    "register_backend",
]
