"""Readers for MXNet's two model files: the ``.params`` NDArray list and the ``-symbol.json`` graph.

Why a reader of our own: the ``mxnet`` wheels stopped at Python 3.9 / old NumPy and do not install
beside this project's torch, yet several good face encoders (InsightFace's, MobileFace) were only
ever published as MXNet checkpoints. The two formats are small and stable, so they are parsed here
with NumPy alone and the network is rebuilt in torch (``encoders.mobileface``).

``.params`` (MXNet ``NDArray::Save`` of a list, src/ndarray/ndarray.cc; little-endian throughout)::

    uint64 0x112            list magic (kMXAPINDArrayListMagic)
    uint64 0                reserved
    uint64 N, then N arrays (below)
    uint64 K (0 or N), then K names: uint64 byte length + UTF-8 bytes
                            ("arg:conv1_weight", "aux:bn1_moving_mean" in a checkpoint)

one array::

    uint32 magic            0xF993FAC9 (V2, MXNet >= 1.0) or 0xF993FACA (V3, numpy-shape mode):
                              int32 storage type (0 dense, 1 row_sparse, 2 csr), then the shape;
                            0xF993FAC8 (V1): the shape follows directly;
                            anything else (pre-1.0 files): this word *is* ndim, followed by
                              ndim uint32 dimensions
    shape                   int32 ndim + ndim int64 dimensions (V1-V3). An empty array ends here:
                              ndim 0 (V1/V2), or ndim -1 / any dimension -1 (V3)
    int32 dev_type, int32 dev_id   the context it was saved from (ignored: we load on the CPU)
    int32 dtype flag        mshadow type (0 float32, 1 float64, 2 float16, 3 uint8, ...)
    data                    prod(shape) * itemsize bytes, C order

Sparse arrays (storage type 1 or 2) carry extra shapes and index arrays; face checkpoints never use
them, so they are refused with a clear error rather than half-supported.

``-symbol.json`` is NNVM's graph serialisation: ``nodes`` in topological order, each with ``op``
(``"null"`` for inputs and parameters), ``name``, string-valued ``attrs`` (older files: ``attr`` or
``param``) and ``inputs`` as ``[node index, output index, version]``; ``heads`` names the outputs.
"""

from __future__ import annotations

import ast
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModelError

LIST_MAGIC = 0x112
NDARRAY_V1_MAGIC = 0xF993FAC8
NDARRAY_V2_MAGIC = 0xF993FAC9
NDARRAY_V3_MAGIC = 0xF993FACA

# mshadow's type flags (include/mshadow/base.h). bfloat16 (12) has no NumPy type: read as uint16
# and widened to float32 by shifting into the high half, which is exact.
DTYPE_FLAGS: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("<f8"),
    2: np.dtype("<f2"),
    3: np.dtype("u1"),
    4: np.dtype("<i4"),
    5: np.dtype("i1"),
    6: np.dtype("<i8"),
    7: np.dtype("?"),
    8: np.dtype("<i2"),
    9: np.dtype("<u2"),
    10: np.dtype("<u4"),
    11: np.dtype("<u8"),
}
BFLOAT16_FLAG = 12
STORAGE_NAMES = {0: "dense", 1: "row_sparse", 2: "csr"}


class MXNetFormatError(ModelError):
    """An MXNet file is truncated, of an unknown version, or uses a feature not supported here."""


class _Reader:
    """Bounds-checked little-endian reads, so a short file fails with where and what was missing."""

    def __init__(self, data: bytes, source: str) -> None:
        self.data = memoryview(data)
        self.offset = 0
        self.source = source

    def take(self, count: int, what: str) -> memoryview:
        if count < 0 or self.offset + count > len(self.data):
            raise MXNetFormatError(
                f"{self.source}: truncated MXNet file: {what} needs {count} bytes at offset "
                f"{self.offset}, only {len(self.data) - self.offset} left"
            )
        chunk = self.data[self.offset:self.offset + count]
        self.offset += count
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def u32(self, what: str) -> int:
        return self.unpack("I", what)[0]

    def i32(self, what: str) -> int:
        return self.unpack("i", what)[0]

    def u64(self, what: str) -> int:
        return self.unpack("Q", what)[0]


def _read_shape(reader: _Reader, what: str) -> tuple[int, ...] | None:
    """TShape::Load: int32 ndim then int64 dims; None for an unknown shape (ndim -1)."""
    ndim = reader.i32(f"{what} ndim")
    if ndim == -1:
        return None
    if ndim < -1 or ndim > 32:
        raise MXNetFormatError(f"{reader.source}: implausible ndim {ndim} for {what} at offset {reader.offset - 4}")
    return tuple(reader.unpack(f"{ndim}q", f"{what} dimensions")) if ndim else ()


def _read_array(reader: _Reader, index: int) -> np.ndarray | None:
    """One NDArray as a NumPy array (a copy, C order); None for an empty ("none") array."""
    what = f"array {index}"
    start = reader.offset
    magic = reader.u32(f"{what} magic")
    if magic in (NDARRAY_V2_MAGIC, NDARRAY_V3_MAGIC):
        storage = reader.i32(f"{what} storage type")
        if storage != 0:
            raise MXNetFormatError(
                f"{reader.source}: {what} uses {STORAGE_NAMES.get(storage, f'storage type {storage}')} "
                "storage; only dense arrays are supported"
            )
        shape = _read_shape(reader, what)
        numpy_shape = magic == NDARRAY_V3_MAGIC
        if shape is None or (numpy_shape and any(d < 0 for d in shape)) or (not numpy_shape and shape == ()):
            return None
    elif magic == NDARRAY_V1_MAGIC:
        shape = _read_shape(reader, what)
        if not shape:
            return None
    else:
        # pre-1.0 layout: the word just read is ndim, then uint32 dimensions
        if magic > 32:
            raise MXNetFormatError(
                f"{reader.source}: {what} at offset {start} starts with 0x{magic:08X}, which is neither an "
                "NDArray magic (0xF993FAC8/9/A) nor a legacy dimension count: not an MXNet .params file, "
                "or corrupt"
            )
        shape = tuple(reader.unpack(f"{magic}I", f"{what} legacy dimensions")) if magic else ()
        if not shape:
            return None
    if any(d < 0 for d in shape):
        raise MXNetFormatError(f"{reader.source}: {what} has a negative dimension in {shape}")
    reader.i32(f"{what} device type")
    reader.i32(f"{what} device id")
    flag = reader.i32(f"{what} dtype flag")
    count = int(np.prod(shape, dtype=np.int64))
    if flag == BFLOAT16_FLAG:
        raw = np.frombuffer(reader.take(2 * count, f"{what} data ({count} bfloat16)"), "<u2")
        return (raw.astype(np.uint32) << 16).view(np.float32).reshape(shape)
    if flag not in DTYPE_FLAGS:
        raise MXNetFormatError(f"{reader.source}: {what} has unknown dtype flag {flag}")
    dtype = DTYPE_FLAGS[flag]
    data = reader.take(dtype.itemsize * count, f"{what} data ({count} x {dtype.name})")
    return np.frombuffer(data, dtype).reshape(shape).copy()


def parse_ndarray_list(data: bytes, source: str = "<bytes>") -> tuple[list[np.ndarray | None], list[str]]:
    """The arrays and names of an ``mx.nd.save`` byte string (names empty for an unnamed list)."""
    reader = _Reader(data, source)
    if len(data) < 8:
        raise MXNetFormatError(f"{source}: {len(data)} bytes is too short for an MXNet .params file")
    magic = reader.u64("list magic")
    if magic != LIST_MAGIC:
        raise MXNetFormatError(
            f"{source}: not an MXNet NDArray file (magic 0x{magic:X}, expected 0x{LIST_MAGIC:X})"
        )
    reader.u64("reserved word")
    count = reader.u64("array count")
    if count > len(data):  # every array takes at least 4 bytes; a huge count means garbage
        raise MXNetFormatError(f"{source}: implausible array count {count}")
    arrays = [_read_array(reader, index) for index in range(count)]
    name_count = reader.u64("name count")
    if name_count not in (0, count):
        raise MXNetFormatError(f"{source}: {name_count} names for {count} arrays")
    names = []
    for index in range(name_count):
        length = reader.u64(f"name {index} length")
        raw = bytes(reader.take(length, f"name {index}"))
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise MXNetFormatError(f"{source}: name {index} is not UTF-8: {error}") from None
    if reader.offset != len(data):
        raise MXNetFormatError(f"{source}: {len(data) - reader.offset} unexpected bytes after the name list")
    return arrays, names


def read_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``name -> array`` of an MXNet ``.params`` file (names keep their ``arg:``/``aux:`` prefixes).

    Empty arrays are dropped; an unnamed list is keyed ``"0"``, ``"1"``, ...
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelError(f"cannot read MXNet params {path}: {error.strerror or error}") from error
    arrays, names = parse_ndarray_list(data, str(path))
    keys = names or [str(i) for i in range(len(arrays))]
    if len(set(keys)) != len(keys):
        raise MXNetFormatError(f"{path}: duplicate array names")
    return {key: array for key, array in zip(keys, arrays) if array is not None}


def split_checkpoint(params: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(arg_params, aux_params) of a checkpoint, prefixes stripped, as ``mx.model.load_checkpoint``.

    Names without a prefix (``gluon``'s ``save_parameters``) count as arguments.
    """
    args: dict[str, np.ndarray] = {}
    aux: dict[str, np.ndarray] = {}
    for name, value in params.items():
        kind, sep, rest = name.partition(":")
        if sep and kind == "aux":
            aux[rest] = value
        elif sep and kind == "arg":
            args[rest] = value
        else:
            args[name] = value
    return args, aux


# ----------------------------------------------------------------------------- symbol graph


@dataclass(frozen=True)
class SymbolNode:
    """One graph node; ``inputs`` are (node index, output index) pairs."""

    op: str
    name: str
    attrs: dict[str, str] = field(default_factory=dict)
    inputs: tuple[tuple[int, int], ...] = ()

    def attr(self, key: str, default: str | None = None) -> str | None:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class Symbol:
    """A parsed ``-symbol.json``: nodes in topological order and the (node, output) heads."""

    nodes: tuple[SymbolNode, ...]
    heads: tuple[tuple[int, int], ...]

    def index(self, name: str) -> int:
        for i, node in enumerate(self.nodes):
            if node.name == name:
                return i
        raise ModelError(f"no node named {name!r} in the symbol graph")


def parse_symbol(text: str, source: str = "<json>") -> Symbol:
    """Parse NNVM graph JSON, checking the references so a broken file fails here, not mid-forward."""
    try:
        graph = json.loads(text)
    except json.JSONDecodeError as error:
        raise MXNetFormatError(f"{source}: not JSON: {error}") from None
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
        raise MXNetFormatError(f"{source}: no 'nodes' list: not an MXNet symbol file")
    nodes = []
    for i, raw in enumerate(graph["nodes"]):
        try:
            attrs = raw.get("attrs", raw.get("attr", raw.get("param", {}))) or {}
            inputs = tuple((int(entry[0]), int(entry[1])) for entry in raw.get("inputs", []))
            node = SymbolNode(str(raw["op"]), str(raw["name"]), {str(k): str(v) for k, v in attrs.items()}, inputs)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
            raise MXNetFormatError(f"{source}: node {i} is malformed: {error!r}") from None
        for source_index, _ in inputs:
            if not 0 <= source_index < i:
                raise MXNetFormatError(
                    f"{source}: node {i} ({node.name}) reads node {source_index}, which does not precede it"
                )
        nodes.append(node)
    try:
        heads = tuple((int(h[0]), int(h[1])) for h in graph.get("heads", []))
    except (TypeError, ValueError, IndexError) as error:
        raise MXNetFormatError(f"{source}: malformed 'heads': {error!r}") from None
    if not heads:
        raise MXNetFormatError(f"{source}: the graph names no output ('heads')")
    for node_index, _ in heads:
        if not 0 <= node_index < len(nodes):
            raise MXNetFormatError(f"{source}: head refers to node {node_index} of {len(nodes)}")
    return Symbol(tuple(nodes), heads)


def read_symbol(path: str | os.PathLike) -> Symbol:
    """Parse a ``-symbol.json`` file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ModelError(f"cannot read MXNet symbol {path}: {error.strerror or error}") from error
    return parse_symbol(text, str(path))


def parse_attr(value: str | None, default=None):
    """An attribute string as Python: ``"(3, 3)"`` -> (3, 3), ``"True"`` -> True, ``"0.5"`` -> 0.5.

    MXNet writes every parameter with ``str()``, so tuples, numbers and booleans need decoding;
    anything that is not a literal (``"relu"``, ``"valid"``) stays a string.
    """
    if value is None:
        return default
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_tuple(value: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    """An integer tuple attribute (``kernel``, ``stride``, ``pad``); a bare integer becomes (n,)."""
    parsed = parse_attr(value, default)
    if parsed is None or parsed == ():
        return default
    if isinstance(parsed, (int, float)):
        return (int(parsed),)
    return tuple(int(v) for v in parsed)
