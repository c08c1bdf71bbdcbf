"""MobileFace_Identification_V2 (becauseofAI/MobileFace, MIT) as a torch encoder, built from its MXNet graph.

Meant as a training-time teacher for the EfficientNet-B0 student (and usable as an encoder in its
own right): a 3.4 MB MobileNetV2-style network with a 256-d output that its authors report at
99.65% on LFW. Nothing is downloaded: the caller passes ``weights=`` the
``MobileFace_Identification_V2-0000.params`` file; the graph is read from the
``MobileFace_Identification_V2-symbol.json`` beside it (see ``mxnet_format``).

The torch network is not a hand-written copy of the architecture: ``MXNetGraph`` walks the
symbol's nodes in their (topological) order and creates one torch module per operator, so the
numbers and the wiring come from the same two files MXNet itself would load. Operator semantics
follow MXNet 1.x's defaults, which the JSON leaves out when a parameter was not set:

* ``Convolution``: stride 1, pad 0, dilation 1, groups 1, bias unless ``no_bias``;
* ``BatchNorm``: inference form with the moving statistics, ``eps=1e-3`` (MXNet's default, not
  torch's 1e-5), ``fix_gamma`` true by default, meaning gamma is taken as 1 whatever is stored;
* ``FullyConnected``: flattens its input first unless ``flatten=False``;
* ``Pooling``: ``pooling_convention="valid"`` is floor, ``"full"`` ceil; averages count padding;
* ``Dropout`` is the identity at inference.

Pre-processing, from the MobileFace repository (README, ``benchmark/LFW/lfw_comparison_and_plot_roc.py``,
``MobileFace_Identification/Symbol_MobileFace_Identification_V2.py``):

* input 112x112, aligned like InsightFace's ``lfw.bin`` ("aligned by MTCNN and cropped to 112x112",
  the ``faces_ms1m-refine-v2_112x112`` release), i.e. the ArcFace five-point template ``ARCFACE_112``;
* the LFW benchmark decodes those crops with ``mx.image.imdecode``, which gives **RGB**, and feeds
  raw 0-255 pixels: the scaling ``(x - 127.5) * 0.0078125`` is the graph's first two nodes
  (``_minus_scalar``, ``_mul_scalar``), so ``preprocess`` here only reorders to NCHW float32;
* the embedding is the ``fc5_bn`` output (the graph's head), L2-normalised by ``FaceEncoder.embed``.
  (The published 99.653% adds the horizontally flipped crop's embedding before normalising;
  this encoder embeds one crop, like every other encoder here.)
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..alignment import ARCFACE_112, AlignmentTemplate
from ..errors import ModelError
from . import register_encoder
from .base import FaceEncoder
from .mxnet_format import Symbol, SymbolNode, parse_attr, parse_tuple, read_params, read_symbol, split_checkpoint

WEIGHTS_FILE = "MobileFace_Identification_V2-0000.params"
SYMBOL_FILE = "MobileFace_Identification_V2-symbol.json"
INPUT_SIZE = 112
WEIGHTS_HINT = (
    "mobileface needs weights=PATH to MobileFace_Identification_V2-0000.params (with "
    "MobileFace_Identification_V2-symbol.json beside it), from github.com/becauseofAI/MobileFace "
    "(MobileFace_Identification/); nothing is downloaded"
)

_PARAMS_SUFFIX = re.compile(r"-\d{4}\.params$")


def symbol_path_for(params_path: str | os.PathLike) -> Path:
    """The ``-symbol.json`` of a checkpoint: ``prefix-0000.params`` -> ``prefix-symbol.json``."""
    path = Path(params_path)
    if not _PARAMS_SUFFIX.search(path.name):
        raise ModelError(
            f"{path.name} is not named like an MXNet checkpoint (PREFIX-NNNN.params), so its "
            "PREFIX-symbol.json cannot be found"
        )
    return path.with_name(_PARAMS_SUFFIX.sub("-symbol.json", path.name))


# ------------------------------------------------------------------------------ operator modules


class FrozenBatchNorm(nn.Module):
    """MXNet ``BatchNorm`` at inference on axis 1 of any rank (after a conv or a fully connected layer)."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(np.asarray(gamma, np.float32).copy()))
        self.bias = nn.Parameter(torch.from_numpy(np.asarray(beta, np.float32).copy()))
        self.register_buffer("running_mean", torch.from_numpy(np.asarray(mean, np.float32).copy()))
        self.register_buffer("running_var", torch.from_numpy(np.asarray(var, np.float32).copy()))
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class Elementwise(nn.Module):
    """A parameter-free operator: scalar arithmetic, activations, add/multiply, flatten, concat."""

    def __init__(self, description: str, function: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.description = description
        self.function = function

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.function(*inputs)

    def extra_repr(self) -> str:
        return self.description


class FullyConnected(nn.Module):
    """MXNet ``FullyConnected``: a linear layer, on the flattened input unless ``flatten=False``."""

    def __init__(self, linear: nn.Linear, flatten: bool) -> None:
        super().__init__()
        self.linear = linear
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1) if self.flatten else x)


def _rsub(x: torch.Tensor, s: float) -> torch.Tensor:
    return s - x


def _rdiv(x: torch.Tensor, s: float) -> torch.Tensor:
    return s / x


def _clamp_min(x: torch.Tensor, s: float) -> torch.Tensor:
    return torch.clamp(x, min=s)


def _clamp_max(x: torch.Tensor, s: float) -> torch.Tensor:
    return torch.clamp(x, max=s)


# module-level functions only (no lambdas), so the network can be deep-copied and pickled
_SCALAR_OPS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "_plus_scalar": torch.add, "_minus_scalar": torch.sub, "_rminus_scalar": _rsub,
    "_mul_scalar": torch.mul, "_div_scalar": torch.div, "_rdiv_scalar": _rdiv, "_power_scalar": torch.pow,
    "_maximum_scalar": _clamp_min, "_minimum_scalar": _clamp_max,
}  # fmt: skip


_BINARY_OPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "elemwise_add": torch.add, "_plus": torch.add, "_Plus": torch.add, "broadcast_add": torch.add,
    "broadcast_plus": torch.add,
    "elemwise_sub": torch.sub, "_minus": torch.sub, "_Minus": torch.sub, "broadcast_sub": torch.sub,
    "broadcast_minus": torch.sub,
    "elemwise_mul": torch.mul, "_mul": torch.mul, "_Mul": torch.mul, "broadcast_mul": torch.mul,
    "elemwise_div": torch.div, "_div": torch.div, "_Div": torch.div, "broadcast_div": torch.div,
    "_maximum": torch.maximum, "broadcast_maximum": torch.maximum,
    "_minimum": torch.minimum, "broadcast_minimum": torch.minimum,
}  # fmt: skip

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softrelu": F.softplus,
    "softsign": F.softsign,
}  # fmt: skip

_IDENTITY_OPS = {"Dropout", "_copy", "identity", "BlockGrad", "stop_gradient", "_CrossDeviceCopy"}


def _l2_normalization(x: torch.Tensor, mode: str, eps: float) -> torch.Tensor:
    if mode == "instance":
        norm = torch.sqrt((x.flatten(1) ** 2).sum(1) + eps).view(-1, *([1] * (x.dim() - 1)))
    elif mode == "channel":
        norm = torch.sqrt((x**2).sum(1, keepdim=True) + eps)
    elif mode == "spatial":
        norm = torch.sqrt((x.flatten(2) ** 2).sum(2) + eps).view(*x.shape[:2], *([1] * (x.dim() - 2)))
    else:
        raise ModelError(f"L2Normalization mode {mode!r} is not supported")
    return x / norm


def _pooling(node: SymbolNode) -> Elementwise:
    pool_type = str(parse_attr(node.attr("pool_type"), "max"))
    if parse_attr(node.attr("global_pool"), False):
        reductions = {"max": torch.amax, "avg": torch.mean, "sum": torch.sum}
        if pool_type in reductions:
            return Elementwise(f"global {pool_type} pool",
                               functools.partial(reductions[pool_type], dim=(2, 3), keepdim=True))
        raise ModelError(f"{node.name}: pool_type {pool_type!r} is not supported")
    kernel = parse_tuple(node.attr("kernel"), ())
    if len(kernel) != 2:
        raise ModelError(f"{node.name}: only 2-D pooling is supported, kernel {kernel}")
    stride = parse_tuple(node.attr("stride"), (1, 1))
    pad = parse_tuple(node.attr("pad"), (0, 0))
    convention = str(parse_attr(node.attr("pooling_convention"), "valid"))
    if convention not in ("valid", "full"):
        raise ModelError(f"{node.name}: pooling_convention {convention!r} is not supported")
    ceil = convention == "full"
    if pool_type == "max":
        return Elementwise(f"max pool {kernel}/{stride}", functools.partial(
            F.max_pool2d, kernel_size=kernel, stride=stride, padding=pad, ceil_mode=ceil))
    if pool_type in ("avg", "sum"):
        include_pad = bool(parse_attr(node.attr("count_include_pad"), True))
        average = functools.partial(F.avg_pool2d, kernel_size=kernel, stride=stride, padding=pad,
                                    ceil_mode=ceil, count_include_pad=include_pad)
        if pool_type == "sum":
            area = float(kernel[0] * kernel[1])
            return Elementwise(f"sum pool {kernel}/{stride}", functools.partial(_scaled, average, area))
        return Elementwise(f"avg pool {kernel}/{stride}", average)
    raise ModelError(f"{node.name}: pool_type {pool_type!r} is not supported")


# ------------------------------------------------------------------------------------- graph


class MXNetGraph(nn.Module):
    """An MXNet symbol graph with its weights, run node by node in torch.

    Only the nodes the output depends on are built. Every operator node becomes one module
    (stored under ``nodes[f"n{index}"]``) and ``forward`` evaluates them in file order, which
    NNVM guarantees is topological; the loop is plain Python, so tracing (ONNX export, torch2trt)
    sees the straight-line network.

    Args:
        symbol: the parsed graph.
        arg_params, aux_params: weights by node name, without ``arg:``/``aux:`` prefixes.
        output: name of the node to return (default: the graph's first head).
        input_name: the one data input (default ``data``).
    """

    def __init__(
        self,
        symbol: Symbol,
        arg_params: dict[str, np.ndarray],
        aux_params: dict[str, np.ndarray],
        output: str | None = None,
        input_name: str = "data",
    ) -> None:
        super().__init__()
        self._symbol = symbol
        self._params = {**arg_params, **aux_params}
        head = symbol.index(output) if output is not None else symbol.heads[0][0]
        needed = self._needed(head)
        try:
            self.input_index = symbol.index(input_name)
        except ModelError:
            raise ModelError(f"the symbol graph has no input named {input_name!r}") from None
        if self.input_index not in needed:
            raise ModelError(f"the output {symbol.nodes[head].name!r} does not depend on {input_name!r}")
        self.output_index = head
        self.nodes = nn.ModuleDict()
        self._program: list[tuple[int, tuple[int, ...]]] = []
        for index in sorted(needed):
            node = symbol.nodes[index]
            if node.op == "null":
                if index != self.input_index and node.name not in self._params:
                    raise ModelError(f"no weights for graph input {node.name!r} in the .params file")
                continue
            module, data_inputs = self._build(node)
            self.nodes[f"n{index}"] = module
            self._program.append((index, data_inputs))
        self._symbol = None  # not needed after construction; keeps the module picklable and small
        self._params = {}

    def _needed(self, head: int) -> set[int]:
        needed: set[int] = set()
        stack = [head]
        while stack:
            index = stack.pop()
            if index in needed:
                continue
            needed.add(index)
            stack.extend(source for source, _ in self._symbol.nodes[index].inputs)
        return needed

    def _weight(self, node: SymbolNode, position: int, what: str) -> np.ndarray:
        if position >= len(node.inputs):
            raise ModelError(f"{node.name} ({node.op}) has no input {position} for its {what}")
        source = self._symbol.nodes[node.inputs[position][0]]
        if source.op != "null" or source.name not in self._params:
            raise ModelError(f"{node.name} ({node.op}): {what} {source.name!r} is not in the .params file")
        return self._params[source.name].astype(np.float32, copy=False)

    def _data_inputs(self, node: SymbolNode, count: int | None = None) -> tuple[int, ...]:
        inputs = node.inputs if count is None else node.inputs[:count]
        for source, output_index in inputs:
            if output_index != 0:
                raise ModelError(f"{node.name} reads output {output_index} of node {source}: multi-output "
                                 "operators are not supported")
        return tuple(source for source, _ in inputs)

    def _build(self, node: SymbolNode) -> tuple[nn.Module, tuple[int, ...]]:
        op, attr = node.op, node.attr
        if op == "Convolution":
            weight = self._weight(node, 1, "weight")
            if weight.ndim != 4:
                raise ModelError(f"{node.name}: only 2-D convolutions are supported, weight {weight.shape}")
            groups = int(parse_attr(attr("num_group"), 1))
            no_bias = bool(parse_attr(attr("no_bias"), False))
            kernel = parse_tuple(attr("kernel"), tuple(weight.shape[2:]))
            if tuple(kernel) != tuple(weight.shape[2:]):
                raise ModelError(f"{node.name}: kernel {kernel} but weight {weight.shape}")
            conv = nn.Conv2d(
                weight.shape[1] * groups, weight.shape[0], kernel,
                stride=parse_tuple(attr("stride"), (1, 1)), padding=parse_tuple(attr("pad"), (0, 0)),
                dilation=parse_tuple(attr("dilate"), (1, 1)), groups=groups, bias=not no_bias,
            )
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(weight))
                if not no_bias:
                    conv.bias.copy_(torch.from_numpy(self._weight(node, 2, "bias")))
            return conv, self._data_inputs(node, 1)
        if op == "BatchNorm":
            if int(parse_attr(attr("axis"), 1)) != 1:
                raise ModelError(f"{node.name}: BatchNorm on axis {attr('axis')} is not supported")
            gamma = self._weight(node, 1, "gamma")
            if parse_attr(attr("fix_gamma"), True):
                gamma = np.ones_like(gamma)  # MXNet ignores the stored gamma then
            module = FrozenBatchNorm(gamma, self._weight(node, 2, "beta"), self._weight(node, 3, "moving mean"),
                                     self._weight(node, 4, "moving var"), float(parse_attr(attr("eps"), 1e-3)))
            return module, self._data_inputs(node, 1)
        if op == "FullyConnected":
            weight = self._weight(node, 1, "weight")
            no_bias = bool(parse_attr(attr("no_bias"), False))
            linear = nn.Linear(weight.shape[1], weight.shape[0], bias=not no_bias)
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(weight))
                if not no_bias:
                    linear.bias.copy_(torch.from_numpy(self._weight(node, 2, "bias")))
            return FullyConnected(linear, bool(parse_attr(attr("flatten"), True))), self._data_inputs(node, 1)
        if op == "LeakyReLU":
            act = str(parse_attr(attr("act_type"), "leaky"))
            slope = float(parse_attr(attr("slope"), 0.25))
            if act == "prelu":
                gamma = self._weight(node, 1, "gamma")
                prelu = nn.PReLU(gamma.size)
                with torch.no_grad():
                    prelu.weight.copy_(torch.from_numpy(gamma.reshape(-1)))
                return prelu, self._data_inputs(node, 1)
            if act == "leaky":
                return Elementwise(f"leaky {slope}", functools.partial(F.leaky_relu, negative_slope=slope)), \
                    self._data_inputs(node, 1)
            if act == "elu":
                return Elementwise(f"elu {slope}", functools.partial(F.elu, alpha=slope)), self._data_inputs(node, 1)
            if act == "selu":
                return Elementwise("selu", F.selu), self._data_inputs(node, 1)
            if act == "gelu":
                return Elementwise("gelu", F.gelu), self._data_inputs(node, 1)
            if act == "rrelu":  # inference uses the mean of the random slope's range
                lower = float(parse_attr(attr("lower_bound"), 0.125))
                upper = float(parse_attr(attr("upper_bound"), 0.334))
                mid = (lower + upper) / 2
                return Elementwise(f"rrelu {mid}", functools.partial(F.leaky_relu, negative_slope=mid)), \
                    self._data_inputs(node, 1)
            raise ModelError(f"{node.name}: LeakyReLU act_type {act!r} is not supported")
        if op == "Activation":
            act = str(parse_attr(attr("act_type"), ""))
            if act not in _ACTIVATIONS:
                raise ModelError(f"{node.name}: activation {act!r} is not supported")
            return Elementwise(act, _ACTIVATIONS[act]), self._data_inputs(node, 1)
        if op in _SCALAR_OPS:
            scalar = float(parse_attr(attr("scalar"), 0.0))
            return Elementwise(f"{op} {scalar}", functools.partial(_apply_scalar, _SCALAR_OPS[op], scalar)), \
                self._data_inputs(node)
        if op in _BINARY_OPS:
            return Elementwise(op, _BINARY_OPS[op]), self._data_inputs(node)
        if op in ("add_n", "ElementWiseSum"):
            return Elementwise(op, _sum_all), self._data_inputs(node)
        if op in ("Flatten", "flatten"):
            return Elementwise("flatten", _flatten), self._data_inputs(node)
        if op in ("Concat", "concat"):
            dim = int(parse_attr(attr("dim"), 1))
            return Elementwise(f"concat dim {dim}", functools.partial(_concat, dim)), self._data_inputs(node)
        if op == "Pooling":
            return _pooling(node), self._data_inputs(node)
        if op == "clip":
            low, high = float(parse_attr(attr("a_min"))), float(parse_attr(attr("a_max")))
            return Elementwise(f"clip {low} {high}", functools.partial(torch.clamp, min=low, max=high)), \
                self._data_inputs(node)
        if op == "L2Normalization":
            mode = str(parse_attr(attr("mode"), "instance"))
            eps = float(parse_attr(attr("eps"), 1e-10))
            return Elementwise(f"l2 {mode}", functools.partial(_l2_normalization, mode=mode, eps=eps)), \
                self._data_inputs(node)
        if op in _IDENTITY_OPS:
            return nn.Identity(), self._data_inputs(node, 1)
        raise ModelError(f"operator {op!r} (node {node.name}) is not supported by the MXNet graph port")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {self.input_index: x}
        for index, inputs in self._program:
            values[index] = self.nodes[f"n{index}"](*(values[i] for i in inputs))
        return values[self.output_index]


def _apply_scalar(
    function: Callable[[torch.Tensor, float], torch.Tensor], scalar: float, x: torch.Tensor
) -> torch.Tensor:
    return function(x, scalar)


def _scaled(function: Callable[[torch.Tensor], torch.Tensor], factor: float, x: torch.Tensor) -> torch.Tensor:
    return function(x) * factor


def _sum_all(*inputs: torch.Tensor) -> torch.Tensor:
    total = inputs[0]
    for value in inputs[1:]:
        total = total + value
    return total


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)


def _concat(dim: int, *inputs: torch.Tensor) -> torch.Tensor:
    return torch.cat(inputs, dim=dim)


def build_graph(symbol: Symbol, params: dict[str, np.ndarray], output: str | None = None) -> MXNetGraph:
    """An ``MXNetGraph`` in eval mode from a parsed symbol and a ``read_params`` dict (prefixed names)."""
    args, aux = split_checkpoint(params)
    return MXNetGraph(symbol, args, aux, output=output).eval()


# ------------------------------------------------------------------------------------ encoder


def _file_bytes_hash(*paths: Path) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=4)
def _load_cached(
    params: str, symbol: str, stamp: tuple[int, int, int, int]
) -> tuple[Symbol, dict[str, np.ndarray], str]:
    # keyed on both files' mtimes and sizes, so a replaced file is parsed again
    return read_symbol(symbol), read_params(params), _file_bytes_hash(Path(params), Path(symbol))


def load_mobileface(weights: str | os.PathLike | None) -> tuple[MXNetGraph, str]:
    """(network in eval mode, weights hash) from a ``-0000.params`` path, its symbol beside it.

    The files are parsed once per process; each call builds its own module from them.
    """
    if weights is None:
        raise ModelError(WEIGHTS_HINT)
    params = Path(weights).expanduser().resolve()
    if not params.is_file():
        raise ModelError(f"mobileface weights not found at {params}; {WEIGHTS_HINT}")
    symbol = symbol_path_for(params)
    if not symbol.is_file():
        raise ModelError(f"mobileface needs the graph {symbol.name} beside {params.name} (looked in {params.parent})")
    stats = params.stat(), symbol.stat()
    graph, arrays, weights_hash = _load_cached(
        str(params), str(symbol), (stats[0].st_mtime_ns, stats[0].st_size, stats[1].st_mtime_ns, stats[1].st_size)
    )
    return build_graph(graph, arrays), weights_hash


@register_encoder("mobileface")
class MobileFaceEncoder(FaceEncoder):
    """MobileFace_Identification_V2: 112x112 ArcFace-aligned RGB crops -> 256-d ``fc5_bn`` embeddings."""

    name = "mobileface"
    # Calibrated: the mean of the ten per-fold thresholds of the LFW View 2 protocol (`face-recognition-ros
    # eval lfw --encoder mobileface --encoder-weights ... --backend torch`: RetinaFace + ARCFACE_112
    # crops, RGB, one crop per image), 99.00% +- 0.45 accuracy there (dlib_resnet: 98.90%).
    default_threshold = 0.2654
    # Not calibrated for this encoder (the interface's default); `eval identify` would be the way.
    default_margin = 0.05

    def __init__(self, weights: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__()
        try:
            self.device = torch.device(device)
        except RuntimeError as error:
            raise ModelError(f"invalid device {device!r}: {error}") from error
        network, self._weights_hash = load_mobileface(weights)
        self._network = network.to(self.device)
        with torch.inference_mode():
            probe = self._network(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, device=self.device))
        if probe.dim() != 2 or not torch.isfinite(probe).all():
            raise ModelError(f"the MobileFace graph gives output of shape {tuple(probe.shape)}, expected finite (1, D)")
        self._embedding_size = int(probe.shape[1])

    @property
    def embedding_size(self) -> int:
        return self._embedding_size

    @property
    def template(self) -> AlignmentTemplate:
        return ARCFACE_112

    @property
    def weights_hash(self) -> str:
        return self._weights_hash

    @property
    def network(self) -> nn.Module:
        return self._network

    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        """RGB uint8 NHWC -> float32 NCHW in 0..255: the graph itself scales by (x - 127.5) / 128."""
        if faces.ndim != 4 or faces.shape[3] != 3:
            raise ValueError(f"expected (N, H, W, 3) RGB crops, got shape {faces.shape}")
        return np.ascontiguousarray(faces.transpose(0, 3, 1, 2), dtype=np.float32)
