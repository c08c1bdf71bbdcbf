"""The overlap of training data with LFW's people: per-count calibration and the per-count search,
on synthetic embeddings (the real lists are config/train/lfw_overlap_*.txt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import face_recognition_ros.training.lfw_tools as lfw_tools
from face_recognition_ros.encoders.base import l2_normalize
from face_recognition_ros.training.face_cache import CachedFace, FaceCache
from face_recognition_ros.training.lfw_tools import (
    SimilaritySpace,
    calibrate_overlap,
    find_overlap_by_count,
    threshold_for,
    write_count_overlap_file,
)
from face_recognition_ros.training.teacher import TeacherSpec


def manifest(name: str, images: dict[str, int]) -> FaceCache:
    cache = FaceCache(Path(f"/nonexistent/{name}"), f"/data/{name}")
    for identity, count in images.items():
        cache.faces += [CachedFace(identity, f"{identity}/{n}.jpg", f"crops/{identity}/{n}.jpg", ((0.0, 0.0),) * 5, 1.0)
                        for n in range(count)]
    return cache


def people_vectors(centres: np.ndarray, cache: FaceCache, names: list[str], spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    index = {name: i for i, name in enumerate(names)}
    rows = np.array([index[face.identity] for face in cache.faces])
    return l2_normalize(centres[rows] + spread * rng.normal(size=(rows.size, centres.shape[1])))


def lfw_like(people: int = 60, dims: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    names = [f"Person_{i}" for i in range(people)]
    counts = {name: int(c) for name, c in zip(names, rng.integers(1, 9, people))}
    cache = manifest("lfw", counts)
    centres = rng.normal(size=(people, dims))
    return cache, names, centres


@pytest.mark.parametrize("spread, lookalikes", [(0.15, "few"), (2.0, "many")])
def test_calibration_catches_the_asked_share_of_same_person_queries(spread, lookalikes):
    lfw, names, centres = lfw_like()
    space = SimilaritySpace(people_vectors(centres, lfw, names, spread, seed=1))
    rows = calibrate_overlap(lfw, space, counts=(1, 2, 3), quantile=0.1)
    assert [row["k"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert row["recall"] >= 0.88 and row["people"] > 10
    if lookalikes == "few":
        assert all(row["lookalike_rate"] <= 0.1 for row in rows)
    else:  # noise far above the identity signal: other people reach the threshold as often as the right one
        assert rows[0]["lookalike_rate"] > 0.5
    assert threshold_for(rows, 1) == rows[0]["threshold"]
    assert threshold_for(rows, 9) == rows[-1]["threshold"]  # beyond the largest k calibrated: its threshold


@pytest.mark.parametrize("teachers", [["fake"], ["fake", "other"]], ids=["one teacher", "rescaled ensemble"])
def test_per_count_search_finds_the_lfw_people_in_a_dataset_and_in_single_images(teachers, monkeypatch, tmp_path):
    lfw, names, centres = lfw_like(seed=2)
    rng = np.random.default_rng(3)
    strangers = rng.normal(size=(28, centres.shape[1]))
    celeb = manifest("celeba10k", {**{f"s{i}": 2 for i in range(20)}, "77": 3, "78": 1})
    celeb_names = [f"s{i}" for i in range(20)] + ["77", "78"]
    # identity 77 is LFW's Person_5, and 78 (one image) is Person_9; the rest are new people
    celeb_centres = np.concatenate([strangers[:20], centres[[5, 9]]])
    utk = manifest("utkface", {"unlabeled": 30})
    utk_vectors = l2_normalize(np.concatenate([strangers[:28] + 0.15 * rng.normal(size=(28, centres.shape[1])),
                                               centres[[12, 30]] + 0.15 * rng.normal(size=(2, centres.shape[1]))]))
    vectors = {
        "lfw": people_vectors(centres, lfw, names, 0.15, seed=4),
        "celeba10k": people_vectors(celeb_centres, celeb, celeb_names, 0.15, seed=5),
        "utkface": utk_vectors,
    }
    def embeddings(cache, faces, name, encoder=None, progress=True):
        # a common component, as dlib_resnet has; the second teacher sees a rotated copy
        base = vectors[cache.root.name] + 2.0
        return base if name == "fake" else base[:, ::-1].copy()

    monkeypatch.setattr(lfw_tools, "teacher_embeddings", embeddings)
    spec = TeacherSpec(teachers)
    monkeypatch.setattr(TeacherSpec, "create", lambda self, name: None)
    matches, calibration, below = find_overlap_by_count(celeb, lfw, spec, labelled=True, quantile=0.1)
    assert {(m[0], m[1], m[3]) for m in matches} == {("77", "Person_5", 3), ("78", "Person_9", 1)}
    assert below and all(b[0].startswith("s") for b in below)
    found, _, _ = find_overlap_by_count(utk, lfw, spec, labelled=False, quantile=0.1)
    assert {m[0] for m in found} == {"unlabeled/28.jpg", "unlabeled/29.jpg"}
    out = tmp_path / "list.txt"
    write_count_overlap_file(out, matches, calibration, celeb, 60, True, "fake", below, "python -m test")
    listed = {line.split("#")[0].strip() for line in out.read_text().splitlines()} - {""}
    assert listed == {"77", "78"}
    from face_recognition_ros.training.data import read_identity_list

    assert read_identity_list(out) == {"77", "78"}
