"""Test-time flip: each face embedded with its mirror image, its own identity and its own threshold."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from face_recognition_ros.alignment import align_faces
from face_recognition_ros.encoders.base import l2_normalize
from face_recognition_ros.encoders.dlib_resnet import DlibResNetEncoder, default_weights_path
from face_recognition_ros.encoders.efficientnet import EfficientNetEncoder
from face_recognition_ros.encoders.efficientnet_checkpoint import DEFAULT_WEIGHTS, record_lfw_threshold
from face_recognition_ros.errors import ModelError
from face_recognition_ros.gallery import Gallery
from face_recognition_ros.image_files import load_image
from face_recognition_ros.node_parameters import PARAMETERS, pipeline_config
from face_recognition_ros.openset import load_cohort
from face_recognition_ros.pipeline import PipelineConfig, RecognitionPipeline
from face_recognition_ros.recognizer import Recognizer
from stub_models import StubDetector


@pytest.fixture(scope="module")
def encoder() -> DlibResNetEncoder:
    if not default_weights_path().is_file():
        pytest.skip(f"dlib weights not installed at {default_weights_path()} (pip install face_recognition_models)")
    return DlibResNetEncoder()


@pytest.fixture(scope="module")
def crops(encoder: DlibResNetEncoder, lfw_dir: Path) -> np.ndarray:
    """Two aligned LFW faces, found by the real detector."""
    from face_recognition_ros.detection import RetinaFaceDetector

    detector = RetinaFaceDetector()
    faces = []
    for path in (lfw_dir / "Aaron_Peirsol/Aaron_Peirsol_0001.jpg", lfw_dir / "Abdullah_Gul/Abdullah_Gul_0001.jpg"):
        image = load_image(path)
        detections = detector.detect(image)
        assert len(detections), f"no face found in {path}"
        faces.append(align_faces(image, detections.landmarks[:1], encoder.template)[0])
    return np.stack(faces)


@pytest.fixture
def flipping(encoder: DlibResNetEncoder):
    encoder.test_time_flip = True
    yield encoder
    encoder.test_time_flip = False


def test_flip_embedding_is_the_normalised_sum_of_the_face_and_its_mirror(flipping, crops):
    raw = np.asarray(flipping.run_network(flipping.preprocess(crops)), np.float32)
    raw_mirrored = np.asarray(flipping.run_network(flipping.preprocess(crops[:, :, ::-1].copy())), np.float32)
    np.testing.assert_allclose(flipping.embed(crops), l2_normalize(raw + raw_mirrored), atol=1e-5)


def test_flip_embedding_is_the_same_for_a_face_and_its_mirror_image(encoder, crops):
    mirrored = crops[:, :, ::-1].copy()
    plain_gap = np.abs(encoder.embed(crops) - encoder.embed(mirrored)).max()
    encoder.test_time_flip = True
    try:
        flip_gap = np.abs(encoder.embed(crops) - encoder.embed(mirrored)).max()
    finally:
        encoder.test_time_flip = False
    assert plain_gap > 1e-3  # the network alone is not mirror-symmetric ...
    assert flip_gap < 1e-5  # ... the flipped embedding is


def test_flip_gives_another_encoder_identity_and_switching_back_restores_it(encoder):
    plain = encoder.identity
    encoder.test_time_flip = True
    try:
        flipped = encoder.identity
    finally:
        encoder.test_time_flip = False
    assert flipped != plain
    assert flipped.split(":")[:2] == plain.split(":")[:2]  # same name and weights, other embeddings
    assert encoder.identity == plain


def test_flip_uses_its_own_calibrated_threshold(flipping):
    assert flipping.calibrated_threshold == flipping.flip_threshold
    assert flipping.flip_threshold > flipping.default_threshold  # flipped pairs score higher
    flipping.test_time_flip = False
    assert flipping.calibrated_threshold == flipping.default_threshold


def test_flip_without_a_calibrated_threshold_is_refused_unless_a_threshold_is_fixed(tmp_path):
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"no shipped efficientnet_b0 checkpoint at {DEFAULT_WEIGHTS}")
    encoder = EfficientNetEncoder()
    if encoder.flip_threshold is not None:
        encoder.flip_threshold = None  # as for any checkpoint not yet calibrated with the flip
    config = PipelineConfig(backend="torch", test_time_flip=True)
    with pytest.raises(ModelError, match="test_time_flip"):
        RecognitionPipeline(config, gallery=Gallery(tmp_path / "a.db"), detector=StubDetector(), encoder=encoder)
    fixed = PipelineConfig(backend="torch", test_time_flip=True, match_threshold=0.6)
    pipeline = RecognitionPipeline(fixed, gallery=Gallery(tmp_path / "b.db"), detector=StubDetector(), encoder=encoder)
    assert pipeline.encoder.test_time_flip and pipeline.matcher.threshold == pytest.approx(0.6)


def test_recorded_flip_threshold_is_kept_apart_from_the_plain_one(tmp_path):
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"no shipped efficientnet_b0 checkpoint at {DEFAULT_WEIGHTS}")
    weights = tmp_path / "efficientnet_b0.pt"
    shutil.copy(DEFAULT_WEIGHTS, weights)
    plain = EfficientNetEncoder(weights).default_threshold
    config = record_lfw_threshold(weights, 0.5123, "a test calibration", flip=True)
    assert config["lfw_threshold_flip"] == pytest.approx(0.5123)
    assert "lfw_calibration_flip" in config["metadata"]
    encoder = EfficientNetEncoder(weights)
    assert encoder.default_threshold == pytest.approx(plain)
    encoder.test_time_flip = True
    assert encoder.calibrated_threshold == pytest.approx(0.5123)
    assert '"lfw_threshold_flip": 0.5123' in weights.with_suffix(".json").read_text()


def test_node_parameter_carries_the_flip_to_the_encoder_and_the_status(tmp_path, encoder):
    defaults = {spec.name: spec.default for spec in PARAMETERS}
    assert pipeline_config(defaults).test_time_flip is False
    config = pipeline_config(defaults | {"test_time_flip": True})
    pipeline = RecognitionPipeline(config, gallery=Gallery(tmp_path / "g.db"), detector=StubDetector(), encoder=encoder)
    try:
        assert pipeline.encoder.test_time_flip
        assert pipeline.matcher.threshold == pytest.approx(encoder.flip_threshold)
        assert Recognizer(pipeline, track=False).status()["test_time_flip"] == "true"  # shown in /diagnostics
    finally:
        encoder.test_time_flip = False


def test_the_shipped_cohort_of_the_flip_is_found_for_its_identity(flipping):
    cohort = load_cohort(flipping.identity)
    assert cohort is not None and cohort.encoder == flipping.identity
    assert cohort.embeddings.shape == (4069, flipping.embedding_size)


def test_switching_the_flip_on_re_embeds_a_plain_gallery_and_recognises_its_people(tmp_path, encoder, lfw_dir):
    from face_recognition_ros.detection import RetinaFaceDetector

    detector = RetinaFaceDetector()
    gallery_path = tmp_path / "gallery.db"
    enrolled, probe = lfw_dir / "Aaron_Peirsol/Aaron_Peirsol_0001.jpg", lfw_dir / "Aaron_Peirsol/Aaron_Peirsol_0002.jpg"
    config = PipelineConfig(backend="torch", match_threshold=0.9)
    with Gallery(gallery_path) as gallery:
        RecognitionPipeline(config, gallery=gallery, detector=detector, encoder=encoder).enroll_images(
            "Aaron", [load_image(enrolled)])
        plain = encoder.identity
    flip_config = PipelineConfig(backend="torch", match_threshold=0.9, test_time_flip=True)
    try:
        with Gallery(gallery_path) as gallery:
            pipeline = RecognitionPipeline(flip_config, gallery=gallery, detector=detector, encoder=encoder)
            assert gallery.stale_count(encoder.identity) == 0 and gallery.stale_count(plain) == 1
            faces = pipeline.process(load_image(probe)).faces
    finally:
        encoder.test_time_flip = False
    assert [face.match.name for face in faces] == ["Aaron"]


def test_identify_floors_an_uncalibrated_flip_at_the_fixed_threshold_and_a_calibrated_one_at_its_own(flipping):
    from types import SimpleNamespace

    from face_recognition_ros.cli.eval_commands import _open_set_floor

    fixed = SimpleNamespace(encoder=flipping, matcher=SimpleNamespace(target_far=None, threshold=0.95))
    operating_point = SimpleNamespace(encoder=flipping, matcher=SimpleNamespace(target_far=0.01, threshold=0.914))
    assert _open_set_floor(fixed) == flipping.flip_threshold
    assert _open_set_floor(operating_point) == flipping.flip_threshold
    calibrated, flipping.flip_threshold = flipping.flip_threshold, None
    try:
        assert _open_set_floor(fixed) == 0.95
        with pytest.raises(ModelError, match="test_time_flip"):
            _open_set_floor(operating_point)
    finally:
        flipping.flip_threshold = calibrated
