"""A gallery built with one encoder follows a switch to another: automatically on load, or by command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from face_recognition_ros.cli.main import main
from face_recognition_ros.gallery import Gallery
from face_recognition_ros.imageio import load_image
from face_recognition_ros.pipeline import PipelineConfig, RecognitionPipeline


@pytest.fixture
def dlib_gallery(tmp_path: Path, media_dir: Path) -> Path:
    path = tmp_path / "gallery.db"
    pipe = RecognitionPipeline(PipelineConfig(encoder="dlib_resnet"), gallery=Gallery(path))
    pipe.enroll_images("obama", [load_image(media_dir / "obama.jpg"), load_image(media_dir / "obama2.jpg")])
    pipe.enroll_images("biden", [load_image(media_dir / "biden.jpg")])
    pipe.gallery.close()
    return path


def test_switching_encoder_re_embeds_stored_crops_on_load(dlib_gallery):
    pipe = RecognitionPipeline(PipelineConfig(encoder="efficientnet_b0"), gallery=Gallery(dlib_gallery))
    identity = pipe.encoder.identity
    assert pipe.gallery.stale_count(identity) == 0
    stored = pipe.gallery.embeddings(identity)
    assert stored.embeddings.shape == (3, pipe.encoder.embedding_size)
    assert sorted(stored.names.values()) == ["biden", "obama"]


def test_re_embedding_from_crops_reproduces_the_original_embeddings(dlib_gallery):
    # Back to the first encoder: the crops re-aligned to its template give (almost) the embeddings
    # computed from the original photos, so nobody has to be enrolled again.
    gallery = Gallery(dlib_gallery)
    before = gallery.embeddings(RecognitionPipeline(PipelineConfig(), gallery=gallery).encoder.identity)
    pipe = RecognitionPipeline(PipelineConfig(auto_reembed=False), gallery=gallery)
    recomputed = pipe.embed_storage_crops(np.concatenate([gallery.crops(name) for name in ("obama", "biden")]))
    assert recomputed.shape == before.embeddings.shape
    # each re-computed sample has a near-identical counterpart among the originals
    best = (recomputed @ before.embeddings.T).max(axis=1)
    assert best.min() > 0.98, best


def test_reembed_command_reports_how_many_samples_changed(capsys, dlib_gallery):
    code = main(["gallery", "reembed", "--encoder", "efficientnet_b0", "--gallery", str(dlib_gallery), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["samples_reembedded"] == 3 and report["encoder"].startswith("efficientnet_b0:")
    code = main(["gallery", "reembed", "--encoder", "efficientnet_b0", "--gallery", str(dlib_gallery), "--json"])
    assert json.loads(capsys.readouterr().out)["samples_reembedded"] == 0
