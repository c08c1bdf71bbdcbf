"""``export``: ONNX files that pass onnx.checker, keep dynamic axes and match torch; clear refusals."""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from face_recognition_ros import engine_export as export
from face_recognition_ros.backends import probes
from face_recognition_ros.errors import BackendUnavailableError, FaceRecognitionError, ModelError


def _input_dims(path) -> list:
    (graph_input,) = onnx.load(str(path)).graph.input
    return [dim.dim_param or dim.dim_value for dim in graph_input.type.tensor_type.shape.dim]


def test_encoder_onnx_export_has_a_dynamic_batch_and_matches_torch(tmp_path):
    from face_recognition_ros.encoders import create_encoder

    path = export.export_encoder("dlib_resnet", "onnx", tmp_path / "dlib.onnx")
    onnx.checker.check_model(str(path))
    assert _input_dims(path) == ["batch", 3, 150, 150]
    batch = np.random.default_rng(0).uniform(-0.5, 0.5, (3, 3, 150, 150)).astype(np.float32)
    (actual,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": batch})
    with torch.inference_mode():
        expected = create_encoder("dlib_resnet").network(torch.from_numpy(batch)).numpy()
    assert actual.shape == (3, 128)
    assert np.max(np.abs(actual - expected)) <= 1e-3


def test_detector_onnx_export_keeps_height_and_width_dynamic(tmp_path):
    path = export.export_detector("onnx", tmp_path / "retinaface.onnx")
    assert _input_dims(path) == ["batch", 3, "height", "width"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    loc, conf, landmarks = session.run(None, {"input": np.zeros((1, 3, 64, 96), np.float32)})
    anchors = 2 * (8 * 12 + 4 * 6 + 2 * 3)
    assert loc.shape == (1, anchors, 4) and conf.shape == (1, anchors, 2) and landmarks.shape == (1, anchors, 10)


def test_export_parser_runs_the_export(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    export.add_export_parser(parser.add_subparsers())
    args = parser.parse_args(["export", "--detector", "--format", "onnx", "--out", str(tmp_path / "d.onnx")])
    assert args.func(args) == 0
    assert (tmp_path / "d.onnx").stat().st_size > 1_000_000
    assert f"wrote {tmp_path / 'd.onnx'}" in capsys.readouterr().out


def test_export_parser_needs_exactly_one_network():
    parser = argparse.ArgumentParser()
    export.add_export_parser(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--format", "onnx"])
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--detector", "--encoder", "dlib_resnet"])


def test_fp16_onnx_is_refused_with_the_reason(tmp_path):
    with pytest.raises(FaceRecognitionError, match="fp16 applies to tensorrt"):
        export.export_detector("onnx", tmp_path / "d.onnx", fp16=True)
    assert not (tmp_path / "d.onnx").exists()


def test_unknown_encoder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="unknown encoder"):
        export.export_encoder("no_such_encoder", "onnx", tmp_path / "x.onnx")


def test_tensorrt_export_without_tensorrt_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(probes, "tensorrt_probe", lambda: probes.Probe(False, "tensorrt not importable (No module named 'tensorrt')"))
    with pytest.raises(BackendUnavailableError, match="No module named 'tensorrt'"):
        export.export_detector("tensorrt", tmp_path / "d.pth")


@pytest.mark.skipif(not probes.tensorrt_probe().ok, reason="needs a CUDA GPU with TensorRT and torch2trt: unverified here")
def test_tensorrt_encoder_export_writes_an_engine(tmp_path):
    path = export.export_encoder("dlib_resnet", "tensorrt", fp16=True, max_batch=4, cache_dir=tmp_path)
    assert path.name.endswith("-fp16-b4.pth") and path.stat().st_size > 0
