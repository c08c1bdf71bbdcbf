"""A gallery built with one encoder follows a switch to another: automatically on load, or by command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from face_recognition_ros.alignment import AlignmentTemplate
from face_recognition_ros.cli.main import main
from face_recognition_ros.gallery import Gallery
from face_recognition_ros.image_files import load_image
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


def test_same_weights_with_a_moved_template_make_the_gallery_stale_and_are_re_embedded(dlib_gallery):
    # A release that moves dlib_resnet's template (or changes its pre-processing) keeps the weights
    # file: embeddings stored under the old geometry must not be trusted, so they are recomputed.
    from face_recognition_ros.encoders import create_encoder

    original = create_encoder("dlib_resnet")
    moved = create_encoder("dlib_resnet")
    shifted = moved.template.landmarks + np.float32([0.0, 3.0])
    # template is a read-only property: give this one instance a subclass that moves it
    moved.__class__ = type("ShiftedDlib", (type(moved),), {"template": AlignmentTemplate(shifted, original.template.size)})
    assert moved.weights_hash == original.weights_hash and moved.identity != original.identity

    gallery = Gallery(dlib_gallery)
    assert gallery.stale_count(moved.identity) == 3
    pipe = RecognitionPipeline(PipelineConfig(), gallery=gallery, encoder=moved)
    assert gallery.stale_count(pipe.encoder.identity) == 0
    assert pipe.gallery.embeddings(moved.identity).embeddings.shape == (3, 128)


def test_bumping_an_encoders_revision_changes_its_identity():
    from face_recognition_ros.encoders import create_encoder

    encoder = create_encoder("efficientnet_b0")
    before = encoder.identity
    assert create_encoder("efficientnet_b0").identity == before  # stable across instances
    encoder.revision = encoder.revision + 1
    assert encoder.identity != before and encoder.identity.startswith(f"efficientnet_b0:{encoder.weights_hash}:")
