"""Inference backends: ONNX Runtime parity with torch on real photos, the engine cache, the fallback order.

Fallback tests replace the availability probes and the runner factory (selection logic only, no
fake inference); parity tests run the real networks. CUDA / TensorRT tests skip without a GPU.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from face_recognition_ros.alignment import align_faces
from face_recognition_ros.backends import BatchedRunner, Step, attach, attach_backend, fallback_chain, onnx_backend, probes
from face_recognition_ros.backends.attach import BackendOptionError
from face_recognition_ros.backends.components import describe
from face_recognition_ros.backends.fixed_size import FixedSizeAdapter
from face_recognition_ros.backends.runners import RunnerHolder, TorchRunner
from face_recognition_ros.backends.tensorrt_backend import engine_path
from face_recognition_ros.detection import RetinaFaceDetector
from face_recognition_ros.detection.priors import anchor_count, anchor_subset
from face_recognition_ros.encoders import available_encoders, create_encoder
from face_recognition_ros.errors import BackendUnavailableError, ModelError
from face_recognition_ros.image_files import load_image

# fp32 ONNX Runtime vs torch: both accumulate in fp32 but fuse and order ops differently.
EMBEDDING_TOLERANCE = 1e-4  # max abs difference between unit-norm embeddings
DETECTOR_PROBABILITY_TOLERANCE = 1e-4  # class probabilities
DETECTOR_OFFSET_TOLERANCE = 1e-3  # raw box / landmark offsets, of order 1

NEEDS_CUDA = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU (this CI machine has none): unverified here"
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(scope="module")
def photo(media_dir):
    return load_image(media_dir / "two_people.jpg")


@pytest.fixture(scope="module")
def detector():
    return RetinaFaceDetector()


@pytest.fixture(scope="module")
def photo_detections(detector, photo):
    detections = detector.detect(photo)
    assert len(detections) == 2, "two_people.jpg holds two faces"
    return detections


def _encoder_or_skip(name: str):
    try:
        return create_encoder(name)
    except ModelError as error:
        pytest.skip(f"{name} has no weights here: {error}")


# ---- parity on real images ----------------------------------------------------------------------


def test_onnxruntime_detector_outputs_match_torch_on_a_real_photo(detector, photo, cache_dir):
    accelerated = RetinaFaceDetector()
    assert attach_backend(accelerated, "onnxruntime", cache_dir=cache_dir, strict=True) == "onnxruntime"
    prepared = detector._prepare(photo)
    from face_recognition_ros.detection import to_network_input

    batch = to_network_input(prepared.network_image)  # 640x380: not the 96x128 size it was traced at
    expected = detector.run_network(batch)
    actual = accelerated.run_network(batch)
    loc, conf, landmarks = (np.max(np.abs(a - e)) for a, e in zip(actual, expected))
    assert conf <= DETECTOR_PROBABILITY_TOLERANCE
    assert max(loc, landmarks) <= DETECTOR_OFFSET_TOLERANCE
    found = accelerated.detect(photo)
    np.testing.assert_allclose(found.boxes, detector.detect(photo).boxes, atol=0.05)


@pytest.mark.parametrize("name", available_encoders())
def test_onnxruntime_embeddings_match_torch_on_aligned_real_faces(name, photo, photo_detections, cache_dir):
    reference = _encoder_or_skip(name)
    accelerated = _encoder_or_skip(name)
    assert attach_backend(accelerated, "onnxruntime", cache_dir=cache_dir, strict=True) == "onnxruntime"
    crops = align_faces(photo, photo_detections.landmarks, reference.template)
    expected, actual = reference.embed(crops), accelerated.embed(crops)
    assert np.max(np.abs(actual - expected)) <= EMBEDDING_TOLERANCE
    # The two people stay two people under both backends.
    assert float(expected[0] @ expected[1]) < 0.9


def test_fixed_size_adapter_keeps_detections_of_an_unpadded_run(detector, photo, photo_detections):
    """The TensorRT detector path pads frames to the engine size; checked here with the torch network."""
    padded = RetinaFaceDetector()
    torch_runner = TorchRunner(padded.network, "cpu")
    seen_shapes = []

    def square_only(batch):
        seen_shapes.append(batch.shape[2:])
        return torch_runner(batch)

    padded.use_runner(FixedSizeAdapter(square_only, 640, padded.padded_output_rows))
    found = padded.detect(photo)
    assert seen_shapes == [(640, 640)]
    assert len(found) == len(photo_detections)
    np.testing.assert_allclose(found.boxes, photo_detections.boxes, atol=1.5)
    np.testing.assert_allclose(found.landmarks, photo_detections.landmarks, atol=1.5)


@pytest.mark.parametrize("height,width,side", [(480, 640, 640), (380, 640, 640), (17, 33, 64)])
def test_anchor_subset_selects_one_anchor_per_unpadded_anchor(height, width, side):
    subset = anchor_subset(height, width, side)
    assert subset.size == anchor_count(height, width)
    assert np.all(np.diff(subset) > 0) and subset[-1] < anchor_count(side, side)


# ---- batching -----------------------------------------------------------------------------------


def test_runner_splits_batches_above_max_batch_without_changing_results(detector):
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    torch_runner = TorchRunner(network, "cpu")
    chunk_sizes = []

    def recording(batch):
        chunk_sizes.append(batch.shape[0])
        return torch_runner(batch)

    batch = np.random.default_rng(0).standard_normal((7, 3, 16, 16)).astype(np.float32)
    runner = BatchedRunner(recording, max_batch=3, backend="torch", device="cpu", precision="fp32")
    np.testing.assert_allclose(runner(batch), torch_runner(batch), atol=1e-6)
    assert chunk_sizes == [3, 3, 1]


def test_runner_concatenates_tuple_outputs_per_output():
    runner = BatchedRunner(lambda b: (b[:, 0, 0, 0], b[:, :, 0, 0]), max_batch=2, backend="x", device="cpu", precision="fp32")
    batch = np.arange(5 * 3, dtype=np.float32).reshape(5, 3, 1, 1)
    first, second = runner(batch)
    np.testing.assert_array_equal(first, batch[:, 0, 0, 0])
    assert second.shape == (5, 3)


# ---- engine cache -------------------------------------------------------------------------------


class _SmallEncoder(RunnerHolder):
    """A real (small, so the cache tests stay fast) component: network, weights hash, runner slot."""

    name = "small"
    input_shape = (3, 16, 16)

    def __init__(self, weights_hash="0123abcd"):
        torch.manual_seed(0)
        self._network = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
        self.weights_hash = weights_hash

    @property
    def network(self):
        return self._network


def test_second_attach_reuses_the_cached_onnx_model(tmp_path, monkeypatch):
    exports = []
    real_export = onnx_backend.export_onnx
    monkeypatch.setattr(onnx_backend, "export_onnx", lambda *a, **k: exports.append(a[1]) or real_export(*a, **k))
    first, second = _SmallEncoder(), _SmallEncoder()
    attach_backend(first, "onnxruntime", cache_dir=tmp_path, strict=True)
    (model,) = tmp_path.glob("*.onnx")
    stamp = model.stat().st_mtime_ns
    attach_backend(second, "onnxruntime", cache_dir=tmp_path, strict=True)
    assert len(exports) == 1
    assert model.stat().st_mtime_ns == stamp
    attach_backend(second, "onnxruntime", cache_dir=tmp_path, strict=True, force_engine_update=True)
    assert len(exports) == 2


def test_changed_weights_hash_exports_a_new_model(tmp_path):
    attach_backend(_SmallEncoder("0123abcd"), "onnxruntime", cache_dir=tmp_path, strict=True)
    attach_backend(_SmallEncoder("retrained01"), "onnxruntime", cache_dir=tmp_path, strict=True)
    names = sorted(path.name for path in tmp_path.glob("*.onnx"))
    assert len(names) == 2 and any("retrained01" in name for name in names)


def test_unreadable_cached_model_is_exported_again(tmp_path):
    component = _SmallEncoder()
    path = onnx_backend.onnx_cache_path(describe(component), tmp_path)
    path.write_bytes(b"not an onnx model")
    assert attach_backend(component, "onnxruntime", cache_dir=tmp_path, strict=True) == "onnxruntime"
    batch = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with torch.inference_mode():
        expected = component.network(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(component.runner(batch), expected, atol=1e-5)


def test_engine_file_name_changes_with_every_key():
    info = describe(RetinaFaceDetector())
    base = dict(tensorrt_version="10.3.0", gpu_name="Orin (nvgpu)", precision="fp16", max_batch=16)
    reference = engine_path(info, "/c", **base)
    assert reference.name == f"retinaface-{info.weights_hash}-trt10.3.0-Orin_nvgpu-fp16-b1-640x640.pth"
    variants = [dict(base, tensorrt_version="10.4.0"), dict(base, gpu_name="NVIDIA H100"), dict(base, precision="fp32")]
    assert len({engine_path(info, "/c", **v) for v in variants} | {reference}) == 4
    retrained = describe(RetinaFaceDetector())
    object.__setattr__(retrained, "weights_hash", "other")
    assert engine_path(retrained, "/c", **base) != reference


# ---- fallback order (availability probes replaced: selection logic only) ------------------------


class _Recorder:
    """Stands in for the runner factory: records the steps tried, fails those listed."""

    def __init__(self, failing=()):
        self.tried: list[Step] = []
        self.failing = set(failing)

    def __call__(self, info, step, precision, max_batch, *rest):
        self.tried.append(step)
        if step.backend in self.failing:
            raise RuntimeError(f"{step.backend} conversion failed")
        return BatchedRunner(lambda batch: batch, max_batch, step.backend, step.device, precision)


@pytest.fixture
def recorder(monkeypatch):
    recorder = _Recorder()
    monkeypatch.setattr(attach, "build_runner", recorder)
    return recorder


def _probes(monkeypatch, cuda=True, tensorrt=True, onnxruntime=True):
    monkeypatch.setattr(probes, "cuda_probe", lambda: probes.Probe(cuda, "" if cuda else "CUDA not available (test)"))
    cuda_reason = "" if cuda else "CUDA not available (test)"
    reason = cuda_reason or ("" if tensorrt else "torch2trt not importable (No module named 'torch2trt')")
    monkeypatch.setattr(probes, "tensorrt_probe", lambda: probes.Probe(tensorrt and cuda, reason))
    monkeypatch.setattr(probes, "onnxruntime_probe", lambda: probes.Probe(onnxruntime, "" if onnxruntime else "onnxruntime not importable (test)"))


def test_fallback_chain_is_the_documented_order():
    assert [str(s) for s in fallback_chain("auto", "cuda")] == ["tensorrt (cuda)", "torch (cuda)", "onnxruntime (cuda)", "torch (cpu)"]
    assert [str(s) for s in fallback_chain("auto", "cpu")] == ["onnxruntime (cpu)", "torch (cpu)"]
    assert [str(s) for s in fallback_chain("torch", "cpu")] == ["torch (cpu)"]
    assert [str(s) for s in fallback_chain("onnxruntime", "cuda:1")] == ["onnxruntime (cuda:1)", "torch (cpu)"]


def test_auto_takes_tensorrt_when_everything_is_there(monkeypatch, recorder, detector):
    _probes(monkeypatch)
    assert attach_backend(detector, "auto", device="cuda") == "tensorrt"
    assert recorder.tried == [Step("tensorrt", "cuda")]


def test_missing_torch2trt_falls_back_to_torch_cuda_saying_why(monkeypatch, recorder, detector, caplog):
    _probes(monkeypatch, tensorrt=False)
    with caplog.at_level(logging.INFO, logger="face_recognition_ros.backends"):
        assert attach_backend(detector, "auto", device="cuda") == "torch"
    assert "tensorrt unavailable: torch2trt not importable (No module named 'torch2trt')" in caplog.text
    assert recorder.tried == [Step("torch", "cuda")]


def test_no_cuda_falls_back_to_onnxruntime_then_torch_cpu(monkeypatch, recorder, detector, caplog):
    _probes(monkeypatch, cuda=False, onnxruntime=False)
    with caplog.at_level(logging.INFO, logger="face_recognition_ros.backends"):
        assert attach_backend(detector, "auto", device="cuda") == "torch"
    assert recorder.tried == [Step("torch", "cpu")]
    assert caplog.text.count("CUDA not available (test)") == 2
    assert "onnxruntime unavailable: onnxruntime not importable" in caplog.text


def test_explicit_backend_that_fails_to_build_falls_back_with_a_warning(monkeypatch, detector, caplog):
    _probes(monkeypatch)
    recorder = _Recorder(failing={"tensorrt"})
    monkeypatch.setattr(attach, "build_runner", recorder)
    with caplog.at_level(logging.WARNING, logger="face_recognition_ros.backends"):
        assert attach_backend(detector, "tensorrt", device="cuda:0") == "torch"
    assert "tensorrt failed on cuda:0: RuntimeError: tensorrt conversion failed; trying torch (cuda:0)" in caplog.text


def test_strict_request_raises_instead_of_falling_back(monkeypatch, recorder, detector):
    _probes(monkeypatch, tensorrt=False)
    with pytest.raises(BackendUnavailableError, match="torch2trt not importable"):
        attach_backend(detector, "tensorrt", device="cuda", strict=True)
    assert recorder.tried == []


def test_tensorrt_on_a_cpu_device_is_refused_with_the_reason(monkeypatch, recorder, detector, caplog):
    _probes(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="face_recognition_ros.backends"):
        assert attach_backend(detector, "tensorrt", device="cpu") == "onnxruntime"
    assert "needs a CUDA device and device 'cpu' was requested" in caplog.text


def test_fp16_on_cpu_runs_fp32(detector, caplog):
    with caplog.at_level(logging.INFO, logger="face_recognition_ros.backends"):
        assert attach_backend(detector, "torch", device="cpu", precision="fp16") == "torch"
    assert detector.runner.precision == "fp32"
    assert "fp16 needs a CUDA device" in caplog.text


@pytest.mark.parametrize(
    "options,message",
    [({"backend": "openvino"}, "unknown backend"), ({"precision": "int8"}, "unknown precision"),
     ({"device": "gpu"}, "unsupported device"), ({"max_batch": 0}, "max_batch")],
)
def test_bad_options_are_rejected_with_one_line(options, message, detector):
    with pytest.raises(ValueError, match=message):
        attach_backend(detector, **options)


def test_component_without_a_network_is_rejected():
    with pytest.raises(TypeError, match="lacks network"):
        attach_backend(object(), "torch")


# ---- GPU (skipped on the CPU-only CI machine) --------------------------------------------------


@NEEDS_CUDA
@pytest.mark.parametrize("precision,tolerance", [("fp32", 1e-4), ("fp16", 2e-2)])
def test_torch_cuda_embeddings_match_cpu(precision, tolerance, photo, photo_detections, cache_dir):
    reference, accelerated = _encoder_or_skip("dlib_resnet"), _encoder_or_skip("dlib_resnet")
    assert attach_backend(accelerated, "torch", device="cuda", precision=precision, strict=True) == "torch"
    crops = align_faces(photo, photo_detections.landmarks, reference.template)
    assert np.max(np.abs(accelerated.embed(crops) - reference.embed(crops))) <= tolerance


@NEEDS_CUDA
@pytest.mark.skipif(not probes.tensorrt_probe().ok, reason="needs TensorRT and torch2trt on a CUDA GPU: unverified here")
def test_tensorrt_matches_torch_and_reuses_its_engine(photo, photo_detections, cache_dir):
    reference, accelerated = _encoder_or_skip("dlib_resnet"), _encoder_or_skip("dlib_resnet")
    assert attach_backend(accelerated, "tensorrt", device="cuda", precision="fp16", max_batch=4, cache_dir=cache_dir, strict=True) == "tensorrt"
    (engine,) = cache_dir.glob("dlib_resnet-*-fp16-b4.pth")
    stamp = engine.stat().st_mtime_ns
    crops = align_faces(photo, photo_detections.landmarks, reference.template)
    assert np.max(np.abs(accelerated.embed(crops) - reference.embed(crops))) <= 2e-2
    attach_backend(_encoder_or_skip("dlib_resnet"), "tensorrt", device="cuda", precision="fp16", max_batch=4, cache_dir=cache_dir, strict=True)
    assert engine.stat().st_mtime_ns == stamp


def test_a_new_backend_is_one_registration_away(detector, monkeypatch):
    from face_recognition_ros.backends import BackendSpec, backend_names, register_backend

    monkeypatch.setattr(attach, "_REGISTRY", dict(attach._REGISTRY))  # leave the real registry as it was
    built = []

    def build(info, step, precision, max_batch, *rest):
        built.append(info.name)
        return BatchedRunner(TorchRunner(info.network, "cpu"), max_batch, "torch_eager_copy", step.device, precision)

    register_backend(BackendSpec("torch_eager_copy", ((2.5, "cpu"),), lambda step: probes.Probe(True), build))
    assert "torch_eager_copy" in backend_names()
    assert [str(s) for s in fallback_chain("torch_eager_copy", "cpu")] == ["torch_eager_copy (cpu)", "torch (cpu)"]
    assert attach_backend(detector, "torch_eager_copy", strict=True) == "torch_eager_copy"
    assert built == ["retinaface"] and detector.runner.backend == "torch_eager_copy"
    attach_backend(detector, "torch")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback where torch has no CUDA")
def test_a_pipeline_asked_for_cuda_without_cuda_starts_on_the_cpu_and_says_why(tmp_path, media_dir, caplog):
    from face_recognition_ros.gallery import Gallery
    from face_recognition_ros.pipeline import PipelineConfig, RecognitionPipeline

    with caplog.at_level(logging.INFO, logger="face_recognition_ros"):
        pipeline = RecognitionPipeline(PipelineConfig(device="cuda", backend="torch"),
                                       gallery=Gallery(tmp_path / "gallery.db"))
    assert (pipeline.detector_backend, pipeline.encoder_backend) == ("onnxruntime", "onnxruntime")
    assert "torch unavailable" in caplog.text
    photo = load_image(media_dir / "obama.jpg")
    pipeline.enroll_images("obama", [photo])
    [face] = pipeline.process(photo).faces
    assert face.match.name == "obama"


def test_a_misspelt_device_is_refused_before_any_model_is_loaded(tmp_path, monkeypatch):
    from face_recognition_ros import pipeline as pipeline_module
    from face_recognition_ros.pipeline import PipelineConfig, RecognitionPipeline

    monkeypatch.setattr(pipeline_module, "create_encoder", lambda *a, **k: pytest.fail("an encoder was loaded"))
    with pytest.raises(BackendOptionError, match="unsupported device 'gpu'"):
        RecognitionPipeline(PipelineConfig(device="gpu"), gallery=None)
