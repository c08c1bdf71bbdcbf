"""TensorRT engines through torch2trt, serialised to the engine cache and reused on the next start.

UNVERIFIED ON GPU: this workplace has no TensorRT, so this module follows torch2trt's documented API
(``torch2trt(module, [inputs], fp16_mode=..., max_batch_size=...)``, ``TRTModule().load_state_dict``)
without having run it. It stays small on purpose; README.md, "Acceleration" says how to verify it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from ..atomic_file import atomic_path
from ..errors import ModelError
from .components import ComponentInfo, safe_token
from .fixed_size import FixedSizeAdapter
from .runners import BatchedRunner, Outputs, to_numpy

#: the detector sees one frame at a time in the pipeline; a batch-1 engine keeps its memory small
DETECTOR_ENGINE_BATCH = 1


def engine_batch(info: ComponentInfo, max_batch: int) -> int:
    return DETECTOR_ENGINE_BATCH if info.dynamic_spatial else max_batch


def engine_path(
    info: ComponentInfo, cache_dir: Path, tensorrt_version: str, gpu_name: str, precision: str, max_batch: int
) -> Path:
    """``<name>-<weights hash>-trt<version>-<gpu>-<precision>-b<batch>[-<side>x<side>].pth``.

    Any change of weights, TensorRT, GPU model, precision, batch limit or input size is a new
    file, so a stale engine is never loaded.
    """
    parts = [info.name, info.weights_hash, f"trt{tensorrt_version}", gpu_name, precision, f"b{engine_batch(info, max_batch)}"]
    if info.dynamic_spatial:
        parts.append(f"{info.max_side}x{info.max_side}")
    return Path(cache_dir) / ("-".join(safe_token(part) for part in parts) + ".pth")


class TensorRTRunner:
    """Calls a torch2trt ``TRTModule`` with CUDA tensors, returning numpy."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module = module
        self.device = device

    def __call__(self, batch: np.ndarray) -> Outputs:
        with torch.inference_mode():
            return to_numpy(self.module(torch.from_numpy(batch).to(self.device)))


def build_tensorrt_runner(
    info: ComponentInfo, device: str, precision: str, max_batch: int, cache_dir: Path,
    force_engine_update: bool = False, logger: logging.Logger | None = None,
) -> BatchedRunner:
    """Load the cached engine matching every key, else build it with torch2trt and cache it."""
    import tensorrt
    from torch2trt import TRTModule, torch2trt

    cuda = torch.device(device)
    batch_limit = engine_batch(info, max_batch)
    path = engine_path(info, cache_dir, tensorrt.__version__, torch.cuda.get_device_name(cuda), precision, max_batch)
    module = None
    if path.exists() and not force_engine_update:
        try:
            module = TRTModule()
            module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            if logger:
                logger.info(f"{info.name}: loaded TensorRT engine {path}")
        except Exception as error:  # an engine from a crashed write or another driver: rebuild it
            module = None
            if logger:
                logger.warning(f"{info.name}: cached engine {path} unusable ({error}); rebuilding")
    if module is None:
        if logger:
            logger.info(f"{info.name}: building TensorRT engine ({precision}, batch <= {batch_limit}); this takes minutes")
        network = info.network.to(cuda).float().eval()
        example = torch.zeros((batch_limit, *info.engine_input_shape()), device=cuda)
        module = torch2trt(network, [example], fp16_mode=precision == "fp16", max_batch_size=batch_limit)
        with atomic_path(path) as partial:
            torch.save(module.state_dict(), partial)
        if logger:
            logger.info(f"{info.name}: saved TensorRT engine {path}")
    run = TensorRTRunner(module, cuda)
    if info.dynamic_spatial:
        if info.padded_output_rows is None:
            raise ModelError(f"{info.name}: a network of any input size needs padded_output_rows for a fixed-size engine")
        run = FixedSizeAdapter(run, info.max_side, info.padded_output_rows)
    return BatchedRunner(run, batch_limit, "tensorrt", device, precision)
