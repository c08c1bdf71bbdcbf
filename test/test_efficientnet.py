"""The EfficientNet-B0 embedding network and its deploy checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face_recognition_ros.encoders import efficientnet
from face_recognition_ros.encoders.efficientnet import EfficientNetEncoder
from face_recognition_ros.encoders.efficientnet_checkpoint import (
    DEFAULT_WEIGHTS,
    record_lfw_threshold,
    save_deploy_checkpoint,
)
from face_recognition_ros.encoders.efficientnet_network import EfficientNetEmbedder
from face_recognition_ros.errors import ModelError

# One thread: on a shared, oversubscribed CPU two torch threads can run ten times slower.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def network() -> EfficientNetEmbedder:
    torch.manual_seed(0)
    return EfficientNetEmbedder(embedding_dim=32)


def random_faces(count: int, size: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_network_outputs_one_finite_embedding_per_face(network):
    network.eval()
    with torch.no_grad():
        out = network(torch.randn(3, 3, 112, 112))
    assert out.shape == (3, 32)
    assert torch.isfinite(out).all()


def test_gradients_reach_the_first_convolution(network):
    network.train()
    network.zero_grad()
    network(torch.randn(4, 3, 64, 64)).pow(2).sum().backward()
    stem_grad = network.backbone.features[0][0].weight.grad
    assert stem_grad is not None and stem_grad.abs().sum() > 0


def test_checkpoint_round_trip_gives_same_unit_embeddings(network, tmp_path):
    path = save_deploy_checkpoint(network.eval(), tmp_path / "b0.pt", threshold=0.42)
    encoder = EfficientNetEncoder(weights=path)
    faces = random_faces(2)
    embeddings = encoder.embed(faces)
    assert embeddings.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        raw = network.eval()(torch.from_numpy(encoder.preprocess(faces))).numpy()
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
    assert encoder.default_threshold == pytest.approx(0.42)
    assert encoder.template.size == (112, 112)
    assert (tmp_path / "b0.json").is_file()


def test_half_precision_checkpoint_loads_close_to_the_original(network, tmp_path):
    full = EfficientNetEncoder(weights=save_deploy_checkpoint(network.eval(), tmp_path / "a.pt", 0.5))
    half = EfficientNetEncoder(weights=save_deploy_checkpoint(network.eval(), tmp_path / "b.pt", 0.5, half=True))
    faces = random_faces(2, seed=1)
    similarity = np.sum(full.embed(faces) * half.embed(faces), axis=1)
    assert np.all(similarity > 0.999)


def test_missing_weights_file_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        EfficientNetEncoder(weights=tmp_path / "absent.pt")


def test_missing_default_weights_raise_instead_of_running_random_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(efficientnet, "DEFAULT_WEIGHTS", tmp_path / "efficientnet_b0.pt")
    with pytest.raises(ModelError, match="no trained weights"):
        EfficientNetEncoder()


def test_shipped_weights_load_with_their_lfw_calibrated_threshold():
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"no shipped weights at {DEFAULT_WEIGHTS}")
    encoder = EfficientNetEncoder()
    assert -1.0 < encoder.default_threshold < 1.0
    assert encoder.default_threshold == pytest.approx(encoder.config["lfw_threshold"])
    width, height = encoder.template.size
    assert encoder.embed(random_faces(1, size=width)).shape == (1, encoder.embedding_size)
    assert DEFAULT_WEIGHTS.stat().st_size < 25 * 1024 * 1024


def test_foreign_checkpoint_raises_model_error(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ModelError, match="not an efficientnet_b0"):
        EfficientNetEncoder(weights=path)
    path.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="cannot read"):
        EfficientNetEncoder(weights=path)


def test_checkpoint_of_another_shape_raises_model_error(network, tmp_path):
    path = save_deploy_checkpoint(network.eval(), tmp_path / "b0.pt", 0.5)
    blob = torch.load(path, weights_only=True)
    blob["config"]["embedding_dim"] = 16
    torch.save(blob, path)
    with pytest.raises(ModelError, match="do not fit"):
        EfficientNetEncoder(weights=path)


def test_checkpoint_without_lfw_calibration_uses_its_validation_threshold(tmp_path):
    if not DEFAULT_WEIGHTS.is_file():
        pytest.skip(f"no shipped weights at {DEFAULT_WEIGHTS}")
    blob = torch.load(DEFAULT_WEIGHTS, map_location="cpu", weights_only=False)
    del blob["config"]["lfw_threshold"]
    path = tmp_path / "efficientnet_b0.pt"
    torch.save(blob, path)
    encoder = EfficientNetEncoder(weights=path)
    assert encoder.default_threshold == pytest.approx(blob["config"]["threshold"])


def test_recorded_lfw_threshold_becomes_the_default_and_keeps_the_weights(network, tmp_path):
    path = save_deploy_checkpoint(network.eval(), tmp_path / "b0.pt", threshold=0.42)
    faces = random_faces(2)
    before = EfficientNetEncoder(weights=path).embed(faces)
    record_lfw_threshold(path, 0.31234, "a test calibration")
    encoder = EfficientNetEncoder(weights=path)
    assert encoder.default_threshold == pytest.approx(0.3123)
    assert encoder.config["threshold"] == pytest.approx(0.42)  # the validation threshold stays on record
    assert encoder.config["metadata"]["lfw_calibration"] == "a test calibration"
    np.testing.assert_array_equal(encoder.embed(faces), before)


def test_recording_a_threshold_refuses_bad_values_and_foreign_files_without_touching_them(network, tmp_path):
    path = save_deploy_checkpoint(network.eval(), tmp_path / "b0.pt", threshold=0.42)
    original = path.read_bytes()
    with pytest.raises(ModelError, match=r"\[-1, 1\]"):
        record_lfw_threshold(path, 1.5, "bad")
    assert path.read_bytes() == original
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ModelError, match="not an efficientnet_b0"):
        record_lfw_threshold(foreign, 0.3, "bad")
