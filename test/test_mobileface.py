"""MobileFace port: the MXNet .params / -symbol.json readers, the graph-to-torch builder, the encoder.

The files are written here byte by byte from the documented layout (mxnet_format's docstring), so
the reader is checked against the format, not against itself. Tests that need the real MobileFace
weights read their path from FACE_RECOGNITION_MOBILEFACE_WEIGHTS and skip without it.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from face_recognition_ros.alignment import ARCFACE_112
from face_recognition_ros.encoders import create_encoder
from face_recognition_ros.encoders.mobileface import (
    MobileFaceEncoder,
    build_graph,
    symbol_path_for,
)
from face_recognition_ros.encoders.mxnet_format import (
    MXNetFormatError,
    parse_attr,
    parse_ndarray_list,
    parse_symbol,
    read_params,
    read_symbol,
    split_checkpoint,
)
from face_recognition_ros.errors import ModelError

WEIGHTS_ENV = "FACE_RECOGNITION_MOBILEFACE_WEIGHTS"

V1, V2, V3 = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
FLAGS = {np.float32: 0, np.float64: 1, np.float16: 2, np.uint8: 3, np.int32: 4, np.int8: 5, np.int64: 6}


# ------------------------------------------------------------------ writing the format by hand


def ndarray_bytes(array: np.ndarray | None, version: str = "v2", storage: int = 0) -> bytes:
    """One NDArray as MXNet's NDArray::Save writes it (legacy: the pre-1.0 layout)."""
    if version == "legacy":
        if array is None:
            return struct.pack("<I", 0)
        head = struct.pack("<I", array.ndim) + struct.pack(f"<{array.ndim}I", *array.shape)
    else:
        magic = {"v1": V1, "v2": V2, "v3": V3}[version]
        head = struct.pack("<I", magic)
        if version != "v1":
            head += struct.pack("<i", storage)
        if array is None:
            return head + struct.pack("<i", -1 if version == "v3" else 0)
        head += struct.pack("<i", array.ndim) + struct.pack(f"<{array.ndim}q", *array.shape)
    context = struct.pack("<ii", 1, 0)  # cpu(0)
    flag = struct.pack("<i", FLAGS[array.dtype.type])
    return head + context + flag + np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def list_bytes(arrays: list[bytes], names: list[str]) -> bytes:
    out = struct.pack("<QQ", 0x112, 0) + struct.pack("<Q", len(arrays)) + b"".join(arrays)
    out += struct.pack("<Q", len(names))
    for name in names:
        encoded = name.encode()
        out += struct.pack("<Q", len(encoded)) + encoded
    return out


def write_params(path: Path, params: dict[str, np.ndarray], version: str = "v2") -> Path:
    path.write_bytes(list_bytes([ndarray_bytes(v, version) for v in params.values()], list(params)))
    return path


SAMPLE = {
    "arg:conv_weight": np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3) / 7,
    "arg:fc_weight": np.random.default_rng(0).standard_normal((5, 4)),  # float64
    "aux:bn_moving_var": np.array([1.5, 2.5], np.float16),
    "arg:labels": np.array([[0, 255], [7, 9]], np.uint8),
    "arg:index": np.array([-3, 2**40], np.int64),
    "arg:counts": np.array([1, -2, 3], np.int32),
    "arg:small": np.array([-128, 127], np.int8),
}


# ------------------------------------------------------------------ .params reader


@pytest.mark.parametrize("version", ["v1", "v2", "v3", "legacy"])
def test_params_round_trip_names_shapes_dtypes_values(tmp_path, version):
    sample = dict(SAMPLE)  # legacy files store 32-bit dimensions; the arrays are the same
    loaded = read_params(write_params(tmp_path / "m-0000.params", sample, version))
    assert list(loaded) == list(sample)
    for name, expected in sample.items():
        assert loaded[name].shape == expected.shape, name
        assert loaded[name].dtype == expected.dtype, name
        np.testing.assert_array_equal(loaded[name], expected)


def test_v3_scalar_is_kept_and_empty_arrays_are_dropped():
    scalar = np.array(2.5, np.float32)
    data = list_bytes([ndarray_bytes(scalar, "v3"), ndarray_bytes(None, "v3"), ndarray_bytes(None, "v2")],
                      ["arg:s", "arg:none3", "arg:none2"])
    arrays, names = parse_ndarray_list(data)
    assert names == ["arg:s", "arg:none3", "arg:none2"]
    assert arrays[0].shape == () and float(arrays[0]) == 2.5
    assert arrays[1] is None and arrays[2] is None


def test_unnamed_list_is_keyed_by_position(tmp_path):
    path = tmp_path / "x.params"
    path.write_bytes(list_bytes([ndarray_bytes(np.ones(3, np.float32))], []))
    assert list(read_params(path)) == ["0"]


def test_bfloat16_is_widened_exactly():
    values = np.array([1.0, -2.5, 3.140625], np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2")
    data = (struct.pack("<QQQ", 0x112, 0, 1) + struct.pack("<Iii", V2, 0, 1) + struct.pack("<q", 3)
            + struct.pack("<iii", 1, 0, 12) + raw.tobytes() + struct.pack("<Q", 0))
    arrays, _ = parse_ndarray_list(data)
    np.testing.assert_array_equal(arrays[0], values)


def test_split_checkpoint_strips_prefixes():
    args, aux = split_checkpoint({"arg:w": np.zeros(1), "aux:m": np.ones(1), "plain": np.zeros(2)})
    assert sorted(args) == ["plain", "w"] and list(aux) == ["m"]


def test_truncated_file_is_a_clear_error_at_every_cut(tmp_path):
    path = write_params(tmp_path / "t.params", {"arg:a": np.ones((2, 3), np.float32),
                                                "arg:b": np.arange(4, dtype=np.int32)})
    whole = path.read_bytes()
    for cut in [0, 4, 8, 15, 20, 24, 30, 40, 50, len(whole) - 30, len(whole) - 1]:
        with pytest.raises(MXNetFormatError, match="truncated|too short"):
            parse_ndarray_list(whole[:cut], "t.params")
    with pytest.raises(MXNetFormatError, match="unexpected bytes"):
        parse_ndarray_list(whole + b"\0", "t.params")


def test_wrong_magic_is_a_clear_error(tmp_path):
    path = tmp_path / "notparams-0000.params"
    path.write_bytes(b"PK\x03\x04" + bytes(60))  # e.g. a zip (Gluon .params are not this format either)
    with pytest.raises(MXNetFormatError, match="not an MXNet NDArray file"):
        read_params(path)
    assert issubclass(MXNetFormatError, ModelError)


def test_bad_array_magic_sparse_storage_and_name_count_are_refused():
    bad_array = list_bytes([struct.pack("<I", 0xDEADBEEF) + bytes(32)], ["arg:x"])
    with pytest.raises(MXNetFormatError, match="neither an NDArray magic"):
        parse_ndarray_list(bad_array)
    sparse = list_bytes([ndarray_bytes(np.ones(2, np.float32), "v2", storage=1)], ["arg:x"])
    with pytest.raises(MXNetFormatError, match="row_sparse"):
        parse_ndarray_list(sparse)
    wrong_names = list_bytes([ndarray_bytes(np.ones(2, np.float32))], ["a", "b"])
    with pytest.raises(MXNetFormatError, match="2 names for 1 arrays"):
        parse_ndarray_list(wrong_names)
    bad_dtype = list_bytes([struct.pack("<Iii", V2, 0, 1) + struct.pack("<q", 1) + struct.pack("<iii", 1, 0, 99)
                            + bytes(4)], ["x"])
    with pytest.raises(MXNetFormatError, match="dtype flag 99"):
        parse_ndarray_list(bad_dtype)


def test_missing_params_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="cannot read"):
        read_params(tmp_path / "absent-0000.params")


# ------------------------------------------------------------------ symbol graph


def _node(op, name, inputs=(), **attrs):
    return {"op": op, "name": name, "attrs": {k: str(v) for k, v in attrs.items()},
            "inputs": [[i, 0, 0] for i in inputs]}


class GraphBuilder:
    """Writes an NNVM graph the way MXNet's tojson does: parameter nodes, then their operator."""

    def __init__(self) -> None:
        self.nodes = [_node("null", "data")]
        self.params: dict[str, np.ndarray] = {}
        self.rng = np.random.default_rng(1)

    def add(self, op, name, inputs, params=(), aux=(), **attrs) -> int:
        ids = list(inputs)
        for suffix, value in params:
            self.nodes.append(_node("null", f"{name}_{suffix}"))
            self.params[f"arg:{name}_{suffix}"] = value
            ids.append(len(self.nodes) - 1)
        for suffix, value in aux:
            self.nodes.append(_node("null", f"{name}_{suffix}"))
            self.params[f"aux:{name}_{suffix}"] = value
            ids.append(len(self.nodes) - 1)
        self.nodes.append(_node(op, name, ids, **attrs))
        return len(self.nodes) - 1

    def conv(self, name, x, cin, cout, k=3, s=1, p=1, groups=1, bias=False) -> int:
        params = [("weight", self.rng.standard_normal((cout, cin // groups, k, k)).astype(np.float32) * 0.3)]
        if bias:
            params.append(("bias", self.rng.standard_normal(cout).astype(np.float32)))
        attrs = dict(kernel=(k, k), stride=(s, s), pad=(p, p), num_filter=cout)
        if groups > 1:
            attrs["num_group"] = groups
        if not bias:
            attrs["no_bias"] = True
        return self.add("Convolution", name, [x], params, **attrs)

    def bn(self, name, x, c, fix_gamma=False) -> int:
        r = self.rng
        return self.add(
            "BatchNorm", name, [x],
            [("gamma", r.uniform(0.5, 1.5, c).astype(np.float32)), ("beta", r.standard_normal(c).astype(np.float32))],
            [("moving_mean", r.standard_normal(c).astype(np.float32)),
             ("moving_var", r.uniform(0.5, 2, c).astype(np.float32))],
            fix_gamma=fix_gamma, use_global_stats=False,
        )

    def json(self, head: int) -> str:
        return json.dumps({"nodes": self.nodes, "arg_nodes": [], "node_row_ptr": [], "heads": [[head, 0, 0]],
                           "attrs": {"mxnet_version": ["int", 10200]}})


def tiny_mobileface_like(embedding: int = 8) -> GraphBuilder:
    """Every operator kind of MobileFace V2 plus a few more, at toy size, ending in a global pool + FC."""
    g = GraphBuilder()
    x = g.add("_minus_scalar", "_minusscalar0", [0], scalar=127.5)
    x = g.add("_mul_scalar", "_mulscalar0", [x], scalar=0.0078125)
    x = g.conv("conv1", x, 3, 8, s=2, bias=True)
    x = g.bn("bn1", x, 8)
    x = g.add("_minimum_scalar", "min0", [g.add("_maximum_scalar", "max0", [x], scalar=0)], scalar=6)
    y = g.conv("dw", x, 8, 8, groups=8)
    y = g.bn("dw_bn", y, 8, fix_gamma=True)
    y = g.add("LeakyReLU", "prelu0", [y], [("gamma", np.full(8, 0.2, np.float32))], act_type="prelu")
    x = g.add("elemwise_add", "add0", [x, y])
    x = g.add("Activation", "relu0", [x], act_type="relu")
    x = g.add("Pooling", "pool0", [x], kernel=(2, 2), stride=(2, 2), pool_type="max")
    x = g.add("Dropout", "drop0", [x], p=0.5)
    x = g.add("Pooling", "gpool", [x], kernel=(1, 1), global_pool=True, pool_type="avg")
    x = g.add("Flatten", "flatten0", [x])
    x = g.add("FullyConnected", "fc5", [x], [("weight", g.rng.standard_normal((embedding, 8)).astype(np.float32))],
              num_hidden=embedding, no_bias=True)
    g.head = g.bn("fc5_bn", x, embedding)
    return g


def test_graph_from_synthetic_symbol_has_the_right_shape_and_no_nan():
    g = tiny_mobileface_like()
    network = build_graph(parse_symbol(g.json(g.head)), g.params)
    x = torch.rand(3, 3, 20, 24) * 255
    out = network(x)
    assert out.shape == (3, 8)
    assert torch.isfinite(out).all()
    assert not network.training


def test_conv_and_batchnorm_follow_mxnet_semantics():
    g = GraphBuilder()
    conv = g.conv("c", 0, 3, 4, k=3, s=2, p=1, bias=True)
    head = g.bn("b", conv, 4)
    fixed = g.bn("bf", head, 4, fix_gamma=True)
    x = torch.randn(2, 3, 9, 9)
    p = {k.split(":")[1]: torch.from_numpy(v) for k, v in g.params.items()}
    ref = F.conv2d(x, p["c_weight"], p["c_bias"], stride=2, padding=1)
    ref = (ref - p["b_moving_mean"][:, None, None]) / torch.sqrt(p["b_moving_var"][:, None, None] + 1e-3)
    ref = ref * p["b_gamma"][:, None, None] + p["b_beta"][:, None, None]
    out = build_graph(parse_symbol(g.json(head)), g.params)(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # fix_gamma=True: the stored gamma is ignored (taken as 1), as MXNet does
    ref_fixed = (ref - p["bf_moving_mean"][:, None, None]) / torch.sqrt(p["bf_moving_var"][:, None, None] + 1e-3)
    ref_fixed = ref_fixed + p["bf_beta"][:, None, None]
    out_fixed = build_graph(parse_symbol(g.json(fixed)), g.params)(x)
    torch.testing.assert_close(out_fixed, ref_fixed, rtol=1e-5, atol=1e-5)


def test_output_node_can_be_chosen_and_unused_nodes_are_not_built():
    g = tiny_mobileface_like()
    graph = parse_symbol(g.json(g.head))
    network = build_graph(graph, g.params, output="_mulscalar0")
    assert len(network.nodes) == 2
    x = torch.full((1, 3, 4, 4), 255.0)
    torch.testing.assert_close(network(x), torch.full((1, 3, 4, 4), 127.5 * 0.0078125))


def test_unsupported_operator_and_missing_weight_are_model_errors():
    g = GraphBuilder()
    head = g.add("SoftmaxOutput", "softmax", [0])
    with pytest.raises(ModelError, match="SoftmaxOutput"):
        build_graph(parse_symbol(g.json(head)), g.params)
    g = GraphBuilder()
    head = g.conv("c", 0, 3, 4)
    params = dict(g.params)
    params.pop("arg:c_weight")
    with pytest.raises(ModelError, match="c_weight"):
        build_graph(parse_symbol(g.json(head)), params)


def test_malformed_symbol_files_are_refused(tmp_path):
    with pytest.raises(MXNetFormatError, match="not JSON"):
        parse_symbol("{nodes")
    with pytest.raises(MXNetFormatError, match="no 'nodes'"):
        parse_symbol('{"heads": []}')
    forward = {"nodes": [_node("Flatten", "f", [1]), _node("null", "data")], "heads": [[0, 0, 0]]}
    with pytest.raises(MXNetFormatError, match="does not precede"):
        parse_symbol(json.dumps(forward))
    with pytest.raises(ModelError, match="cannot read"):
        read_symbol(tmp_path / "absent-symbol.json")


def test_attribute_strings_are_decoded():
    assert parse_attr("(3, 3)") == (3, 3)
    assert parse_attr("True") is True and parse_attr("false") is False
    assert parse_attr("0.0078125") == 0.0078125
    assert parse_attr("prelu") == "prelu"
    assert parse_attr(None, 7) == 7


# ------------------------------------------------------------------ encoder


def write_checkpoint(folder: Path, builder: GraphBuilder, prefix: str = "tiny") -> Path:
    params = folder / f"{prefix}-0000.params"
    write_params(params, builder.params)
    (folder / f"{prefix}-symbol.json").write_text(builder.json(builder.head))
    return params


def test_encoder_requires_weights():
    with pytest.raises(ModelError, match="needs weights=PATH"):
        MobileFaceEncoder()
    with pytest.raises(ModelError, match="needs weights=PATH"):
        create_encoder("mobileface")


def test_encoder_refuses_missing_or_misnamed_files(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        MobileFaceEncoder(weights=tmp_path / "MobileFace_Identification_V2-0000.params")
    lonely = write_params(tmp_path / "lonely-0000.params", {"arg:x": np.ones(1, np.float32)})
    with pytest.raises(ModelError, match="lonely-symbol.json"):
        MobileFaceEncoder(weights=lonely)
    odd = write_params(tmp_path / "weights.params", {"arg:x": np.ones(1, np.float32)})
    with pytest.raises(ModelError, match="PREFIX-NNNN.params"):
        MobileFaceEncoder(weights=odd)


def test_symbol_path_is_found_beside_the_params():
    assert symbol_path_for("/m/MobileFace_Identification_V2-0000.params") == Path(
        "/m/MobileFace_Identification_V2-symbol.json")
    assert symbol_path_for("a/b/model-0123.params").name == "model-symbol.json"


def test_encoder_on_a_synthetic_checkpoint(tmp_path):
    weights = write_checkpoint(tmp_path, tiny_mobileface_like(embedding=8))
    encoder = create_encoder("mobileface", weights=str(weights))
    assert encoder.template is ARCFACE_112 and encoder.input_shape == (3, 112, 112)
    assert encoder.embedding_size == 8
    faces = np.random.default_rng(2).integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    batch = encoder.preprocess(faces)
    assert batch.dtype == np.float32 and batch.shape == (4, 3, 112, 112)
    np.testing.assert_array_equal(batch[1, :, 5, 7], faces[1, 5, 7])  # RGB order kept, 0..255 (graph scales)
    vectors = encoder.embed(faces)
    assert vectors.shape == (4, 8) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="112x112"):
        encoder.embed(faces[:, :100])
    # the identity covers both files: another graph with the same name gives another identity
    other = tmp_path / "other"
    other.mkdir()
    second = create_encoder("mobileface", weights=write_checkpoint(other, tiny_mobileface_like(embedding=6)))
    assert second.identity != encoder.identity and second.embedding_size == 6


def test_synthetic_checkpoint_runs_through_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    from face_recognition_ros.backends import attach_backend

    weights = write_checkpoint(tmp_path, tiny_mobileface_like())
    plain, accelerated = create_encoder("mobileface", weights=weights), create_encoder("mobileface", weights=weights)
    assert attach_backend(accelerated, "onnxruntime", cache_dir=tmp_path / "cache", strict=True) == "onnxruntime"
    faces = np.random.default_rng(4).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    np.testing.assert_allclose(accelerated.embed(faces), plain.embed(faces), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ the real weights


@pytest.fixture(scope="module")
def real_weights() -> Path:
    value = os.environ.get(WEIGHTS_ENV)
    if not value:
        pytest.skip(f"set {WEIGHTS_ENV} to MobileFace_Identification_V2-0000.params (github.com/becauseofAI/"
                    "MobileFace, MobileFace_Identification/) to run the tests on the real weights")
    path = Path(value)
    if not path.is_file():
        pytest.skip(f"{WEIGHTS_ENV}={value}: no such file")
    return path


def test_real_checkpoint_parses_completely(real_weights):
    params = read_params(real_weights)
    args, aux = split_checkpoint(params)
    assert (len(params), len(args), len(aux)) == (191, 115, 76)
    assert params["arg:fc5_weight"].shape == (256, 2048)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in params.values())
    graph = read_symbol(symbol_path_for(real_weights))
    assert graph.nodes[graph.heads[0][0]].name == "fc5_bn"


def test_real_encoder_embeds_faces(real_weights):
    encoder = MobileFaceEncoder(weights=real_weights)
    assert encoder.embedding_size == 256
    assert sum(p.numel() for p in encoder.network.parameters()) == 882_208
    rng = np.random.default_rng(3)
    faces = rng.integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    vectors = encoder.embed(faces)
    assert vectors.shape == (2, 256) and np.isfinite(vectors).all()
    np.testing.assert_allclose(encoder.embed(faces[:1]), vectors[:1], rtol=1e-4, atol=1e-5)  # batch-independent
