"""Reader for dlib's binary serialisation of the face-recognition ResNet (``anet_type``).

dlib writes a network recursively: ``serialize(add_layer)`` writes its version, then its whole
sub-network, then its own layer details. So the file holds the loss layer, then the version
numbers of every wrapper from the output down to the input, then the input layer, then the layer
details from the input back up to the output. The format is not self-describing, so the reader
walks a description of ``anet_type`` (``ANET_SPEC``, transcribed from dlib's
``examples/dnn_face_recognition_ex.cpp``) and checks each layer's name and hyper-parameters.

Encodings (dlib/serialize.h, dlib/float_details.h, dlib/cuda/tensor.h):

* integers: one control byte (low 4 bits = byte count, bit 7 = negative) then little-endian
  magnitude bytes;
* floats: integer mantissa then integer exponent, value = mantissa * 2**exponent;
* bools: ASCII ``'1'`` / ``'0'``;
* strings: integer length then bytes;
* tensors: version 2, then num_samples, k, nr, nc, then raw little-endian float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError

# float_details exponents that stand for special values
_EXP_INF, _EXP_NINF, _EXP_NAN = 32000, 32001, 32002


class DlibFormatError(ModelError):
    """The bytes are not a dlib serialisation of the expected network."""


class DlibReader:
    """Sequential decoder of dlib's serialisation primitives over an in-memory buffer."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.pos = 0

    def _take(self, count: int) -> memoryview:
        end = self.pos + count
        if count < 0 or end > len(self._data):
            raise DlibFormatError(f"truncated dlib file: wanted {count} bytes at offset {self.pos}")
        chunk = self._data[self.pos : end]
        self.pos = end
        return chunk

    def read_int(self, signed: bool = True) -> int:
        control = self._take(1)[0]
        negative = bool(control & 0x80)
        size = control & 0x0F
        if size == 0 or size > 8 or (negative and not signed) or (control & 0x70):
            raise DlibFormatError(f"bad integer control byte 0x{control:02x} at offset {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if negative else value

    def read_float(self) -> float:
        if self.pos < len(self._data) and self._data[self.pos] & 0x70:
            # dlib's pre-2013 ASCII float format; no released model uses it
            raise DlibFormatError(f"unsupported ASCII float at offset {self.pos}")
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _EXP_INF:
            return float("inf")
        if exponent == _EXP_NINF:
            return float("-inf")
        if exponent == _EXP_NAN:
            return float("nan")
        return float(np.ldexp(float(mantissa), exponent))

    def read_bool(self) -> bool:
        char = bytes(self._take(1))
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {char!r} at offset {self.pos - 1}")
        return char == b"1"

    def read_string(self) -> str:
        length = self.read_int(signed=False)
        return bytes(self._take(length)).decode("latin-1")

    def expect_string(self, *allowed: str) -> str:
        offset = self.pos
        text = self.read_string()
        if text not in allowed:
            raise DlibFormatError(f"expected {' or '.join(allowed)} at offset {offset}, found {text!r}")
        return text

    def expect_version(self, what: str, *allowed: int) -> int:
        offset = self.pos
        version = self.read_int()
        if version not in allowed:
            raise DlibFormatError(f"unexpected {what} version {version} at offset {offset}")
        return version

    def read_tensor(self) -> np.ndarray:
        """A ``resizable_tensor`` as a (num_samples, k, nr, nc) float32 array (a copy)."""
        self.expect_version("tensor", 2)
        shape = tuple(self.read_int() for _ in range(4))
        if min(shape) < 0:
            raise DlibFormatError(f"negative tensor shape {shape}")
        count = int(np.prod(shape))
        return np.frombuffer(self._take(4 * count), "<f4").astype(np.float32).reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """An ``alias_tensor``: only a shape (it views into a layer's params)."""
        self.expect_version("alias_tensor", 1)
        return tuple(self.read_int() for _ in range(4))  # type: ignore[return-value]

    def at_end(self) -> bool:
        return self.pos == len(self._data)


# ---------------------------------------------------------------------------------------------
# The network structure


@dataclass(frozen=True)
class Spec:
    """One wrapper of dlib's layer stack: an ``add_layer`` (kind + hyper-parameters), a tag or a skip."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc, tag, skip
    args: tuple[int, ...] = ()


def _block(filters: int, stride: int) -> list[Spec]:
    # block = BN<con<N,3,3,1,1,relu<BN<con<N,3,3,stride,stride,SUBNET>>>>>, outermost first
    return [
        Spec("affine"),
        Spec("con", (filters, 3, 3, 1, 1)),
        Spec("relu"),
        Spec("affine"),
        Spec("con", (filters, 3, 3, stride, stride)),
    ]


def _ares(filters: int) -> list[Spec]:
    # relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [Spec("relu"), Spec("add_prev", (1,)), *_block(filters, 1), Spec("tag", (1,))]


def _ares_down(filters: int) -> list[Spec]:
    # relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return [
        Spec("relu"),
        Spec("add_prev", (2,)),
        Spec("avg_pool", (2, 2, 2, 2)),
        Spec("skip", (1,)),
        Spec("tag", (2,)),
        *_block(filters, 2),
        Spec("tag", (1,)),
    ]


#: anet_type below its loss_metric, outermost (output) first, ending with the first conv
ANET_SPEC: tuple[Spec, ...] = (
    Spec("fc", (128,)),
    Spec("avg_pool", (0, 0, 1, 1)),  # avg_pool_everything
    *_ares_down(256),  # alevel0
    *_ares(256), *_ares(256), *_ares_down(256),  # alevel1
    *_ares(128), *_ares(128), *_ares_down(128),  # alevel2
    *_ares(64), *_ares(64), *_ares(64), *_ares_down(64),  # alevel3
    *_ares(32), *_ares(32), *_ares(32),  # alevel4
    Spec("max_pool", (3, 3, 2, 2)),
    Spec("relu"),
    Spec("affine"),
    Spec("con", (32, 7, 7, 2, 2)),
)  # fmt: skip

INPUT_SIZE = 150


def default_padding(size: int, stride: int) -> int:
    """dlib's default padding for con_ and pooling layers: none when strided, else 'same'."""
    return 0 if stride != 1 else size // 2


@dataclass
class DlibLayer:
    """One parsed layer, in evaluation order (input to output)."""

    kind: str
    args: tuple[int, ...] = ()
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    """Everything in the file that affects the forward pass."""

    input_mean_rgb: np.ndarray  # (3,) float32 channel means subtracted before the /256 scaling
    layers: list[DlibLayer]  # evaluation order: first conv first, fc last; tags and skips included
    loss_margin: float
    loss_distance_threshold: float


# ---------------------------------------------------------------------------------------------
# Layer details


def _read_con(reader: DlibReader, spec: Spec) -> DlibLayer:
    version = reader.expect_string("con_4", "con_5", "con_6")
    params = reader.read_tensor().reshape(-1)
    num_filters = reader.read_int()
    nr, nc, stride_y, stride_x = (reader.read_int() for _ in range(4))
    padding_y, padding_x = reader.read_int(), reader.read_int()
    filter_shape = reader.read_alias_tensor()
    bias_shape = reader.read_alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.read_float()
    use_bias = reader.read_bool() if version in ("con_5", "con_6") else True
    use_relu = reader.read_bool() if version == "con_6" else False
    expected = spec.args
    found = (num_filters, nr, nc, stride_y, stride_x)
    pads = (default_padding(nr, stride_y), default_padding(nc, stride_x))
    if found != expected or (padding_y, padding_x) != pads:
        raise DlibFormatError(f"con layer {found} pad {(padding_y, padding_x)} where {expected} was expected")
    if use_relu:
        raise DlibFormatError("con layers with a fused relu are not supported")
    weight_count = int(np.prod(filter_shape))
    bias_count = num_filters if use_bias else 0
    if params.size != weight_count + bias_count or filter_shape[0] != num_filters:
        raise DlibFormatError(f"con params of size {params.size} do not fit filters {filter_shape}")
    layer = DlibLayer("con", found, {"weight": params[:weight_count].reshape(filter_shape)})
    if use_bias:
        if int(np.prod(bias_shape)) != num_filters:
            raise DlibFormatError(f"con bias shape {bias_shape} for {num_filters} filters")
        layer.params["bias"] = params[weight_count:]
    return layer


def _read_affine(reader: DlibReader, spec: Spec) -> DlibLayer:
    version = reader.expect_string("affine_", "affine_2")
    params = reader.read_tensor().reshape(-1)
    gamma_shape = reader.read_alias_tensor()
    beta_shape = reader.read_alias_tensor()
    mode = reader.read_int()
    disabled = reader.read_bool() if version == "affine_2" else False
    if disabled:
        raise DlibFormatError("disabled affine layers are not supported")
    # layer_mode: CONV_MODE = 0 (one scale per channel), FC_MODE = 1 (one per element)
    if mode != 0 or gamma_shape != beta_shape or gamma_shape[0] != 1 or gamma_shape[2:] != (1, 1):
        raise DlibFormatError(f"affine layer mode {mode} with gamma {gamma_shape}: expected per-channel")
    channels = gamma_shape[1]
    if params.size != 2 * channels:
        raise DlibFormatError(f"affine params of size {params.size} for {channels} channels")
    return DlibLayer("affine", (channels,), {"weight": params[:channels], "bias": params[channels:]})


def _read_relu(reader: DlibReader, spec: Spec) -> DlibLayer:
    version = reader.expect_string("relu_", "relu_2")
    if version == "relu_2" and reader.read_bool():
        raise DlibFormatError("disabled relu layers are not supported")
    return DlibLayer("relu")


def _read_pool(reader: DlibReader, spec: Spec) -> DlibLayer:
    reader.expect_string(f"{spec.kind}_2")
    nr, nc, stride_y, stride_x, padding_y, padding_x = (reader.read_int() for _ in range(6))
    pads = (default_padding(nr, stride_y), default_padding(nc, stride_x))
    if (nr, nc, stride_y, stride_x) != spec.args or (padding_y, padding_x) != pads:
        raise DlibFormatError(f"{spec.kind} {(nr, nc, stride_y, stride_x)} where {spec.args} was expected")
    return DlibLayer(spec.kind, (nr, nc, stride_y, stride_x, padding_y, padding_x))


def _read_add_prev(reader: DlibReader, spec: Spec) -> DlibLayer:
    reader.expect_string("add_prev_")  # the tag id lives in the type, not in the file
    return DlibLayer("add_prev", spec.args)


def _read_fc(reader: DlibReader, spec: Spec) -> DlibLayer:
    version = reader.expect_string("fc_2", "fc_3")
    num_outputs = reader.read_int(signed=False)
    num_inputs = reader.read_int(signed=False)
    params = reader.read_tensor().reshape(-1)
    weight_shape = reader.read_alias_tensor()
    reader.read_alias_tensor()  # biases: unused without a bias
    bias_mode = reader.read_int()
    for _ in range(4):
        reader.read_float()
    if version == "fc_3":
        reader.read_bool()  # use_bias, meaningless for FC_NO_BIAS
    # fc_bias_mode: FC_HAS_BIAS = 0, FC_NO_BIAS = 1; the weights form a (num_inputs, num_outputs) matrix
    if bias_mode != 1 or num_outputs != spec.args[0] or weight_shape[:2] != (num_inputs, num_outputs):
        raise DlibFormatError(
            f"fc layer {num_inputs}->{num_outputs} (bias mode {bias_mode}) is not fc_no_bias<{spec.args[0]}>"
        )
    if params.size != num_inputs * num_outputs:
        raise DlibFormatError(f"fc params of size {params.size} for {num_inputs}x{num_outputs} weights")
    return DlibLayer("fc", (num_inputs, num_outputs), {"weight": params.reshape(num_inputs, num_outputs)})


_DETAIL_READERS = {
    "con": _read_con,
    "affine": _read_affine,
    "relu": _read_relu,
    "max_pool": _read_pool,
    "avg_pool": _read_pool,
    "add_prev": _read_add_prev,
    "fc": _read_fc,
}


def _read_layer_state(reader: DlibReader, version: int) -> None:
    # add_layer bookkeeping after the details: three flags, then x_grad, cached_output and (from
    # version 2) params_grad, all empty in a saved model but read to stay aligned
    for _ in range(3):
        reader.read_bool()
    reader.read_tensor()
    reader.read_tensor()
    if version >= 2:
        reader.read_tensor()


def _read_input(reader: DlibReader) -> np.ndarray:
    reader.expect_string("input_rgb_image_sized")
    mean = np.array([reader.read_float() for _ in range(3)], np.float32)
    rows, cols = reader.read_int(signed=False), reader.read_int(signed=False)
    if (rows, cols) != (INPUT_SIZE, INPUT_SIZE):
        raise DlibFormatError(f"input size {rows}x{cols}, expected {INPUT_SIZE}x{INPUT_SIZE}")
    return mean


# ---------------------------------------------------------------------------------------------


def parse_anet(data: bytes) -> DlibNetwork:
    """Decode a serialised ``anet_type`` (dlib_face_recognition_resnet_model_v1)."""
    reader = DlibReader(data)
    reader.expect_version("add_loss_layer", 1)
    loss_version = reader.expect_string("loss_metric_", "loss_metric_2")
    margin, threshold = 0.1, 0.75  # the values "loss_metric_" (version 1) hard-coded
    if loss_version == "loss_metric_2":
        margin, threshold = reader.read_float(), reader.read_float()

    # Going down: every wrapper writes its version before its sub-network.
    *outer, first = ANET_SPEC
    versions: list[int] = []
    for spec in outer:
        if spec.kind in ("tag", "skip"):
            versions.append(reader.expect_version(f"{spec.kind} layer", 1))
        else:
            versions.append(reader.expect_version("add_layer", 1, 2))

    # The bottom add_layer holds the input layer itself.
    bottom_version = reader.expect_version("input add_layer", 2, 3)
    input_mean = _read_input(reader)
    layers = [_read_con(reader, first)]
    for _ in range(3):
        reader.read_bool()
    reader.read_tensor()  # x_grad
    reader.read_tensor()  # cached_output
    reader.read_tensor()  # grad_final
    if bottom_version >= 3:
        reader.read_int()  # sample expansion factor

    # Coming back up: each add_layer writes its details after its sub-network.
    for spec, version in zip(reversed(outer), reversed(versions)):
        if spec.kind in ("tag", "skip"):
            layers.append(DlibLayer(spec.kind, spec.args))
            continue
        layers.append(_DETAIL_READERS[spec.kind](reader, spec))
        _read_layer_state(reader, version)

    if not reader.at_end():
        raise DlibFormatError(f"{len(data) - reader.pos} unexpected trailing bytes after the network")
    return DlibNetwork(input_mean, layers, margin, threshold)


def read_anet(path: str | Path) -> DlibNetwork:
    """Read and decode a dlib face-recognition model file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read dlib model {path}: {error.strerror or error}") from error
    try:
        return parse_anet(data)
    except DlibFormatError as error:
        raise DlibFormatError(f"{path} is not a dlib face-recognition ResNet: {error}") from error
