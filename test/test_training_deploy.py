"""ONNX export parity of efficientnet_b0 deploy checkpoints: the shipped one on real LFW faces, and
one exported from a channels_last training run (the CPU default), through the repo's onnxruntime
backend (``backends.attach_backend``), the path ``--backend onnxruntime`` takes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from face_recognition_ros.alignment import align_faces
from face_recognition_ros.backends import attach_backend
from face_recognition_ros.detection import RetinaFaceDetector
from face_recognition_ros.encoders.efficientnet import EfficientNetEncoder
from face_recognition_ros.encoders.efficientnet_checkpoint import DEFAULT_WEIGHTS
from face_recognition_ros.evaluation.lfw import read_pairs
from face_recognition_ros.image_files import load_image
from face_recognition_ros.training.config import config_from_dict
from face_recognition_ros.training.data import FaceDataModule
from face_recognition_ros.training.deploy import MAX_DEPLOY_BYTES, export_encoder
from face_recognition_ros.training.runner import train

from test_training import synthetic_faces, tiny_config

torch.set_num_threads(1)
TOLERANCE = 1e-4  # max abs difference of unit embeddings, fp32 ONNX Runtime vs torch (as test_backends)


@pytest.fixture(scope="module")
def lfw_crops(lfw_dir):
    """Aligned 112x112 crops of the first 12 pairs' images (6 same, 6 different pairs)."""
    pairs = read_pairs(lfw_dir / "pairs.txt", lfw_dir)
    chosen = pairs[:6] + [p for p in pairs if not p.same][:6]
    detector = RetinaFaceDetector()  # plain torch
    images = []
    for pair in chosen:
        for path in (pair.path_a, pair.path_b):
            image = load_image(path)
            found = detector.detect(image)
            images.append((image, found.landmarks[found.largest_index()]))
    return images, np.array([p.same for p in chosen])


def crops_for(encoder, images):
    return np.concatenate([align_faces(image, landmarks[None], encoder.template) for image, landmarks in images])


def test_shipped_checkpoint_onnx_embeddings_match_torch_on_lfw_faces(lfw_crops, tmp_path):
    images, same = lfw_crops
    reference = EfficientNetEncoder()
    accelerated = EfficientNetEncoder()
    assert attach_backend(accelerated, "onnxruntime", cache_dir=tmp_path, strict=True) == "onnxruntime"
    crops = crops_for(reference, images)
    expected, actual = reference.embed(crops), accelerated.embed(crops)
    assert np.max(np.abs(actual - expected)) <= TOLERANCE
    # Same verdicts at the encoder's own threshold under both backends.
    scores = lambda e: np.sum(e[0::2] * e[1::2], axis=1)  # noqa: E731
    threshold = reference.default_threshold
    assert np.array_equal(scores(expected) >= threshold, scores(actual) >= threshold)
    assert DEFAULT_WEIGHTS.stat().st_size < MAX_DEPLOY_BYTES
    card = json.loads(DEFAULT_WEIGHTS.with_suffix(".json").read_text())
    assert card["input_size"] == reference.template.size[0] and card["embedding_dim"] == reference.embedding_size


def test_checkpoint_of_a_channels_last_run_exports_to_onnx_with_the_same_embeddings(tmp_path):
    config = config_from_dict(tiny_config(tmp_path, "triplet", mining="all"))
    config.trainer.limit_train_batches = 2
    assert config.trainer.channels_last is None  # the CPU default: on
    datamodule = FaceDataModule.from_arrays(config.data, synthetic_faces(4, 4, 0), synthetic_faces(4, 3, 2))
    result = train(config, datamodule=datamodule, progress=False, export=False)
    out = tmp_path / "deploy.pt"
    export_encoder(result.best_checkpoint, out, datamodule.val, datamodule.val_pairs)
    blob = torch.load(out, weights_only=True)
    assert all(t.is_contiguous() for t in blob["state_dict"].values())
    reference, accelerated = EfficientNetEncoder(weights=out), EfficientNetEncoder(weights=out)
    assert attach_backend(accelerated, "onnxruntime", cache_dir=tmp_path / "engines", strict=True) == "onnxruntime"
    crops = synthetic_faces(4, 3, seed=7).crops
    np.testing.assert_allclose(accelerated.embed(crops), reference.embed(crops), atol=TOLERANCE)
