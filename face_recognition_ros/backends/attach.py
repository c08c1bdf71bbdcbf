"""Pick an inference backend for a detector or encoder, falling back in a documented order."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BackendUnavailableError, FaceRecognitionError
from . import onnx_backend, probes, tensorrt_backend
from .components import ComponentInfo, describe
from .runners import BatchedRunner, TorchRunner

PRECISIONS = ("fp32", "fp16")
_LOG = logging.getLogger("face_recognition_ros.backends")


class BackendOptionError(FaceRecognitionError, ValueError):
    """An unknown backend, device or precision name, or an impossible batch size."""


@dataclass(frozen=True)
class Step:
    """One backend on one device, a link of the fallback chain."""

    backend: str
    device: str

    def __str__(self) -> str:
        return f"{self.backend} ({self.device})"


def default_cache_dir() -> Path:
    """Where exported ONNX models and TensorRT engines are kept between runs."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("face_recognition_ros")) / "engines"


def normalise_device(device: str, logger=_LOG) -> str:
    """``cpu`` / ``cuda`` / ``cuda:N`` as given; ``auto`` -> ``cuda`` when available, else ``cpu``."""
    device = str(device).strip().lower()
    kind, _, index = device.partition(":")
    if device == "auto":
        probe = probes.cuda_probe()
        if not probe.ok:
            logger.info(f"device auto -> cpu: {probe.reason}")
        return "cuda" if probe.ok else "cpu"
    if kind not in ("cpu", "cuda") or (index and (kind == "cpu" or not index.isdigit())):
        raise BackendOptionError(f"unsupported device {device!r}: use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    return device


@dataclass(frozen=True)
class BackendSpec:
    """One inference backend: where it sits in the fallback order, how to probe it, how to build it.

    ``steps`` are its places in the order, as (position, device): ``"cuda"`` (the requested CUDA
    device, or the first one), ``"cpu"``, or ``"requested"`` (the device asked for). Adding a
    backend (a CUDA-graph torch runner, say) is one ``register_backend`` call: the chain, the probes
    and ``attach_backend`` pick it up.
    """

    name: str
    steps: tuple[tuple[int, str], ...]
    probe: Callable[[Step], probes.Probe]  # can this step run here, and if not, why
    build: Callable[..., BatchedRunner]


_REGISTRY: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> BackendSpec:
    """Make a backend available by name (``--backend``, the node's ``backend`` parameter)."""
    _REGISTRY[spec.name] = spec
    return spec


def backend_names() -> tuple[str, ...]:
    """``auto`` and every registered backend, in fallback order."""
    ordered = sorted(_REGISTRY.values(), key=lambda spec: min(position for position, _ in spec.steps))
    return ("auto", *(spec.name for spec in ordered))


def fallback_chain(backend: str, device: str) -> list[Step]:
    """The steps tried, in order: tensorrt -> torch cuda -> onnxruntime -> torch cpu, from the request on.

    ``auto`` on a CPU device starts at the first step that runs on the CPU (onnxruntime, faster than
    torch there, see README.md, "Acceleration"); an explicit backend starts at its own step for the
    device (torch's CUDA step on a CUDA device, its CPU step on the CPU).
    """
    if backend not in backend_names():
        raise BackendOptionError(f"unknown backend {backend!r}; choose one of {', '.join(backend_names())}")
    gpu = device if device.startswith("cuda") else "cuda"
    where = {"cuda": gpu, "cpu": "cpu", "requested": device}
    placed = sorted((position, kind, spec.name) for spec in _REGISTRY.values() for position, kind in spec.steps)
    chain = [(Step(name, where[kind]), kind) for _, kind, name in placed]
    on_cpu = device == "cpu"
    if backend == "auto":
        start = next(i for i, (_, kind) in enumerate(chain) if not on_cpu or kind != "cuda")
    else:
        mine = [i for i, (step, kind) in enumerate(chain) if step.backend == backend]
        start = next((i for i in mine if not on_cpu or chain[i][1] != "cuda"), mine[0])
    return [step for step, _ in chain[start:]]


def step_probe(step: Step, requested_device: str) -> probes.Probe:
    """Whether a step can run here; the reason is what the user reads in the log."""
    if step.device.startswith("cuda") and requested_device == "cpu":
        return probes.Probe(False, "it needs a CUDA device and device 'cpu' was requested")
    return _REGISTRY[step.backend].probe(step)


def build_runner(
    info: ComponentInfo, step: Step, precision: str, max_batch: int, cache_dir: Path,
    force_engine_update: bool, threads: int | None, logger,
) -> BatchedRunner:
    """Create the runner of one step (raises when the backend fails to build)."""
    return _REGISTRY[step.backend].build(info, step, precision, max_batch, cache_dir, force_engine_update, threads, logger)


def _build_tensorrt(info, step, precision, max_batch, cache_dir, force_engine_update, threads, logger) -> BatchedRunner:
    return tensorrt_backend.build_tensorrt_runner(info, step.device, precision, max_batch, cache_dir,
                                                  force_engine_update, logger)


def _build_torch(info, step, precision, max_batch, cache_dir, force_engine_update, threads, logger) -> BatchedRunner:
    if threads and step.device == "cpu":
        torch.set_num_threads(threads)  # process-wide: torch has no per-module thread pool
    return BatchedRunner(TorchRunner(info.network, step.device, precision), max_batch, "torch", step.device, precision)


def _build_onnxruntime(info, step, precision, max_batch, cache_dir, force_engine_update, threads, logger) -> BatchedRunner:
    path = onnx_backend.cached_onnx(info, cache_dir, force=force_engine_update, logger=logger)
    try:
        session = onnx_backend.create_session(path, step.device, precision, threads, cache_dir / "onnxruntime-trt", logger)
    except Exception as error:  # a truncated or foreign file in the cache: export it again once
        logger.warning(f"{info.name}: cached ONNX model {path} unusable ({error}); exporting again")
        path = onnx_backend.cached_onnx(info, cache_dir, force=True, logger=logger)
        session = onnx_backend.create_session(path, step.device, precision, threads, cache_dir / "onnxruntime-trt", logger)
    runner = onnx_backend.OnnxRuntimeRunner(session)
    on_gpu = any(p in runner.providers for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider"))
    if precision == "fp16" and "TensorrtExecutionProvider" not in runner.providers:
        # Only ORT's TensorRT provider turns the fp32 graph into fp16 kernels.
        logger.info(f"{info.name}: onnxruntime without its TensorRT provider runs fp32")
        precision = "fp32"
    return BatchedRunner(runner, max_batch, "onnxruntime", step.device if on_gpu else "cpu", precision)


# Probes are looked up when called, so that a test can replace them on the probes module.
register_backend(BackendSpec("tensorrt", ((0, "cuda"),), lambda step: probes.tensorrt_probe(), _build_tensorrt))
register_backend(BackendSpec(
    "torch", ((1, "cuda"), (3, "cpu")),
    lambda step: probes.cuda_probe() if step.device.startswith("cuda") else probes.Probe(True), _build_torch))
register_backend(BackendSpec("onnxruntime", ((2, "requested"),), lambda step: probes.onnxruntime_probe(),
                             _build_onnxruntime))
BACKENDS = backend_names()


def effective_precision(step: Step, precision: str, name: str, logger) -> str:
    """fp16 needs a CUDA device; on CPU the step runs fp32, and the log says so."""
    if precision == "fp16" and step.device == "cpu":
        logger.info(f"{name}: fp16 needs a CUDA device; {step} runs fp32")
        return "fp32"
    return precision


def attach_backend(
    component: object,
    backend: str = "auto",
    device: str = "cpu",
    precision: str = "fp32",
    max_batch: int = 16,
    cache_dir: Path | str | None = None,
    force_engine_update: bool = False,
    logger=None,
    strict: bool = False,
    threads: int | None = None,
) -> str:
    """Make ``component`` (a detector or encoder) run its network through ``backend``.

    Hands ``component`` (a :class:`~.components.Runnable`) a :class:`BatchedRunner` that takes any
    batch size (chunks of at most ``max_batch``), through its ``use_runner``. An unavailable or
    failing backend is logged with its reason and the next one of :func:`fallback_chain` is
    tried; with ``strict`` it raises BackendUnavailableError instead. ``threads`` sets ONNX Runtime's intra-op threads for this session, or torch's
    (process-wide) on CPU; default one per core. On a CPU shared with other busy processes one
    thread can be many times faster than two (README.md, "Acceleration").
    The component's torch module may be moved to the device (and converted to fp16) in place.

    Returns:
        The backend actually used: ``"tensorrt"``, ``"torch"`` or ``"onnxruntime"``.
    """
    logger = logger or _LOG
    if precision not in PRECISIONS:
        raise BackendOptionError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if max_batch < 1:
        raise BackendOptionError(f"max_batch must be at least 1, got {max_batch}")
    info = describe(component)
    device = normalise_device(device, logger)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    chain = fallback_chain(backend, device)
    explicit = backend != "auto"
    for position, step in enumerate(chain):
        following = f"; trying {chain[position + 1]}" if position + 1 < len(chain) else ""
        probe = step_probe(step, device)
        failure = None if probe.ok else f"{step.backend} unavailable: {probe.reason}"
        runner = None
        if failure is None:
            step_precision = effective_precision(step, precision, info.name, logger)
            try:
                runner = build_runner(info, step, step_precision, max_batch, cache, force_engine_update, threads, logger)
            except Exception as error:
                failure = f"{step.backend} failed on {step.device}: {type(error).__name__}: {error}"
        if runner is not None:
            component.use_runner(runner)
            logger.info(f"{info.name}: inference through {runner!r}")
            return step.backend
        if strict:
            raise BackendUnavailableError(f"{info.name}: {failure}")
        # Leaving the user's explicit choice is worth a warning; auto's normal descent is not.
        log = logger.warning if explicit else logger.info
        log(f"{info.name}: {failure}{following}")
    raise BackendUnavailableError(f"{info.name}: no backend could run (tried {', '.join(map(str, chain))})")
