"""ONNX export of a component's network (cached by weights hash, opset and torch version) and ONNX Runtime."""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from ..atomic_file import atomic_path
from ..errors import ModelError
from .components import ComponentInfo, safe_token
from .runners import Outputs, to_numpy

OPSET = 17
#: exported outputs must match torch within this, relative to the output's largest magnitude (or 1)
PARITY_TOLERANCE = 1e-3
#: spatial size the detector is traced at; its H and W stay dynamic in the exported graph
DETECTOR_TRACE_SIZE = (96, 128)


def onnx_cache_path(info: ComponentInfo, cache_dir: Path) -> Path:
    """Cache file for a component: rebuilt whenever the weights, the opset or the exporter change."""
    return Path(cache_dir) / f"{info.name}-{info.weights_hash}-opset{OPSET}-torch{safe_token(torch.__version__)}.onnx"


def example_input(info: ComponentInfo) -> torch.Tensor:
    """A small deterministic batch to trace with: batch 2, so the batch axis is not specialised to 1."""
    shape = info.fixed_input or (3, *DETECTOR_TRACE_SIZE)
    generator = torch.Generator().manual_seed(0)
    return torch.rand((2, *shape), generator=generator) * 2 - 1


def _cpu_fp32(network: torch.nn.Module) -> torch.nn.Module:
    """The network itself when it is already CPU fp32 (the usual case), else a CPU fp32 copy."""
    tensors = list(network.parameters()) + list(network.buffers())
    if all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return network.eval()
    return copy.deepcopy(network).float().cpu().eval()


def export_onnx(info: ComponentInfo, path: Path, logger: logging.Logger | None = None) -> Path:
    """Export ``info.network`` to ``path`` (dynamic batch; dynamic H, W for the detector), checked.

    The file appears atomically, only after ``onnx.checker`` and a parity run against torch
    passed: a crash mid-export never leaves a broken cache entry behind.
    """
    import onnx

    network = _cpu_fp32(info.network)
    example = example_input(info)
    with torch.inference_mode():
        reference = to_numpy(network(example))
    outputs = reference if isinstance(reference, tuple) else (reference,)
    output_names = ["output"] if len(outputs) == 1 else [f"output{i}" for i in range(len(outputs))]
    input_axes = {0: "batch"} | ({2: "height", 3: "width"} if info.dynamic_spatial else {})
    # The detector's outputs have one row per anchor, and the anchor count follows H and W.
    output_axes = {0: "batch"} | ({1: "anchors"} if info.dynamic_spatial else {})

    path = Path(path)
    with atomic_path(path) as partial:
        with warnings.catch_warnings():
            # torch >= 2.9 warns that the TorchScript exporter is legacy; the dynamo exporter needs
            # onnxscript, which this project does not depend on.
            warnings.simplefilter("ignore", DeprecationWarning)
            if not info.dynamic_spatial:
                # Shape-dependent Python branches (dlib's zero-padded residual add) are constant for a
                # fixed input size, which is the only size an encoder is ever given.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                network,
                (example,),
                str(partial),
                input_names=["input"],
                output_names=output_names,
                dynamic_axes={"input": input_axes} | {name: output_axes for name in output_names},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        onnx.checker.check_model(str(partial))
        difference = check_parity(create_session(partial), example.numpy(), outputs, info.name)
    if logger:
        logger.info(f"{info.name}: ONNX model checked; max |onnxruntime - torch| = {difference:.2e}")
    return path


def check_parity(session, batch: np.ndarray, expected: tuple[np.ndarray, ...], name: str) -> float:
    """Largest absolute ONNX Runtime vs torch difference; ModelError when beyond tolerance."""
    actual = session.run(None, {session.get_inputs()[0].name: batch})
    worst = 0.0
    for got, want in zip(actual, expected):
        if got.shape != want.shape:
            raise ModelError(f"{name}: ONNX output shape {got.shape} != torch {want.shape}")
        difference = float(np.max(np.abs(got - want))) if want.size else 0.0
        scale = max(1.0, float(np.max(np.abs(want))) if want.size else 1.0)
        if not difference <= PARITY_TOLERANCE * scale:
            raise ModelError(f"{name}: ONNX export differs from torch by {difference:.3g} (scale {scale:.3g})")
        worst = max(worst, difference)
    return worst


def cached_onnx(info: ComponentInfo, cache_dir: Path, force: bool = False, logger: logging.Logger | None = None) -> Path:
    """The component's ONNX file in ``cache_dir``, exported on a cache miss (or when forced)."""
    path = onnx_cache_path(info, cache_dir)
    if path.exists() and not force:
        if logger:
            logger.info(f"{info.name}: reusing ONNX model {path}")
        return path
    if logger:
        logger.info(f"{info.name}: exporting ONNX model to {path}")
    return export_onnx(info, path, logger)


def create_session(
    path: Path | bytes, device: str = "cpu", precision: str = "fp32", threads: int | None = None,
    engine_cache_dir: Path | None = None, logger: logging.Logger | None = None,
):
    """An ONNX Runtime session of a model file (or the model's bytes): TensorRT / CUDA execution
    providers first on a CUDA device when installed."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    providers: list = []
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        if "TensorrtExecutionProvider" in available:
            trt_options = {"device_id": index, "trt_fp16_enable": precision == "fp16"}
            if engine_cache_dir is not None:
                trt_options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(engine_cache_dir)}
            providers.append(("TensorrtExecutionProvider", trt_options))
        if "CUDAExecutionProvider" in available:
            providers.append(("CUDAExecutionProvider", {"device_id": index}))
        elif logger:
            logger.warning(f"onnxruntime has no CUDA execution provider (installed: {', '.join(available)}); running on CPU")
    providers.append("CPUExecutionProvider")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # ORT's per-node placement warnings are noise on a robot console
    # Idle ORT threads busy-wait by default, taking CPU from the robot's other nodes (and from our own
    # decode / alignment); without spinning the 2-core CI machine ran the detector and encoder faster.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    model = bytes(path) if isinstance(path, (bytes, bytearray)) else str(path)
    return ort.InferenceSession(model, options, providers=providers)


class OnnxRuntimeRunner:
    """Runs an ONNX Runtime session; one array out for one output, a tuple for several."""

    def __init__(self, session) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.providers = session.get_providers()

    def __call__(self, batch: np.ndarray) -> Outputs:
        outputs = self.session.run(None, {self.input_name: batch})
        return outputs[0] if len(outputs) == 1 else tuple(outputs)
