"""The open-set operating point: calibrated on impostors of a known distribution, growing with the
gallery, stricter for a person with look-alikes, and the cohort file's identity check."""

from __future__ import annotations

import numpy as np
import pytest

from face_recognition_ros.errors import ModelError
from face_recognition_ros.gallery import GalleryEmbeddings
from face_recognition_ros.matching import Matcher, _group_by_person
from face_recognition_ros.openset import (
    Cohort,
    calibrate,
    cohort_path,
    load_cohort,
    quantile_threshold,
    save_cohort,
    score_queries,
)

DIM = 64


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def orthonormal(count: int, seed: int = 0) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((DIM, DIM)))
    return q[:count].astype(np.float32)


def gallery_of(embeddings: np.ndarray, samples_per_person: int = 1) -> GalleryEmbeddings:
    ids = np.repeat(np.arange(len(embeddings) // samples_per_person), samples_per_person)
    return GalleryEmbeddings(unit(embeddings), ids.astype(np.int64), {i: f"p{i}" for i in set(ids.tolist())})


def test_quantile_threshold_leaves_at_most_the_target_share_at_or_above_it_and_respects_ties():
    values = np.array([0.9, 0.8, 0.8, 0.8, 0.5] + [0.1] * 95)
    assert 0.8 < quantile_threshold(values, 0.01) <= 0.9  # one value of 100 may pass: the 0.9
    threshold = quantile_threshold(values, 0.03)
    assert np.mean(values >= threshold) == pytest.approx(0.01)  # 0.8 appears three times: never split
    assert np.mean(values >= quantile_threshold(values, 0.05)) == pytest.approx(0.05)


def test_calibration_on_impostors_of_a_known_distribution_gives_the_expected_threshold():
    """Each stranger resembles exactly one of 8 orthogonal people, with a similarity drawn uniformly
    from [0, 0.8]; the people are orthogonal to each other. The threshold that lets 1% of all
    impostor queries through is then the 99th percentile of those similarities (plus the people's own
    zero scores against each other), and the calibration must find it."""
    rng = np.random.default_rng(1)
    people = orthonormal(8)
    spare = orthonormal(DIM, seed=0)[8:]  # directions orthogonal to every person
    similarity = rng.uniform(0.0, 0.8, 3000)
    owner = rng.integers(0, 8, 3000)
    noise = spare[rng.integers(0, len(spare), 3000)]
    strangers = similarity[:, None] * people[owner] + np.sqrt(1 - similarity[:, None] ** 2) * noise
    cohort = Cohort(unit(strangers), "synthetic", "test")
    point = calibrate(_group_by_person(gallery_of(people)), cohort, 0.01, k=1, margin=0.0, floor=-1.0, mode="global")
    expected = quantile_threshold(np.r_[similarity, np.zeros(8)], 0.01)
    assert point.mode == "global" and point.impostors == 3008
    assert point.threshold == pytest.approx(expected, abs=1e-5)
    assert point.threshold == pytest.approx(0.8 * 0.99, abs=0.01)


def test_a_threshold_right_for_ten_people_is_too_loose_for_a_thousand():
    rng = np.random.default_rng(2)
    cohort = Cohort(unit(rng.standard_normal((4000, DIM))), "synthetic", "test")
    fresh_strangers = unit(rng.standard_normal((20000, DIM)))
    rates = {}
    for size in (10, 1000):
        grouping = _group_by_person(gallery_of(rng.standard_normal((size, DIM))))
        point = calibrate(grouping, cohort, 0.01, k=1, margin=0.0, floor=-1.0, mode="global")
        best = score_queries(fresh_strangers, grouping, 1).best_score
        rates[size] = (point.threshold, float(np.mean(best >= point.threshold)))
    assert rates[1000][0] > rates[10][0] + 0.05
    for threshold, false_accepts in rates.values():
        assert 0.003 <= false_accepts <= 0.02, rates  # the target 1% holds on strangers never seen


def test_a_person_whom_strangers_often_resemble_needs_a_higher_raw_score():
    rng = np.random.default_rng(3)
    people = orthonormal(2)
    spare = orthonormal(DIM, seed=0)[2:]
    # Many strangers lean towards person 0 (similarity 0.6), none towards person 1.
    lean = 0.6 * people[0] + 0.8 * spare[rng.integers(0, len(spare), 2000)]
    cohort = Cohort(unit(np.r_[lean, rng.standard_normal((2000, DIM))]), "synthetic", "test")
    point = calibrate(_group_by_person(gallery_of(people)), cohort, 0.01, k=1, margin=0.0, floor=-1.0, mode="asnorm")
    assert point.mode == "asnorm"
    needed = point.raw_thresholds(np.array([0, 1]), np.zeros(2, np.float32))
    assert needed[0] > needed[1] + 0.03


def test_the_matcher_reports_the_threshold_each_face_needed_and_the_one_in_force():
    rng = np.random.default_rng(4)
    people = orthonormal(5)
    cohort = Cohort(unit(rng.standard_normal((2000, DIM))), "synthetic", "test")
    matcher = Matcher(threshold=0.2, margin=0.0, k=1, target_far=0.01, cohort=cohort)
    gallery = gallery_of(people)
    matches = matcher.match(unit(people + 0.05 * rng.standard_normal(people.shape)), gallery)
    assert [m.person_id for m in matches] == [0, 1, 2, 3, 4]
    assert all(m.threshold is not None and 0.2 <= m.threshold < m.similarity for m in matches)
    assert matcher.threshold_in_force(gallery) >= 0.2  # the floor (the encoder's 1:1 threshold) holds
    stranger = matcher.match(unit(rng.standard_normal((1, DIM))), gallery)[0]
    assert not stranger.is_known and stranger.threshold > stranger.similarity
    fixed = Matcher(threshold=0.5, margin=0.0, k=1)
    assert fixed.threshold_in_force(gallery) == 0.5 and fixed.match(people[:1], gallery)[0].threshold == 0.5


def test_a_cohort_is_stored_compactly_and_never_used_for_another_encoder(tmp_path):
    rng = np.random.default_rng(5)
    cohort = Cohort(unit(rng.standard_normal((100, DIM))), "dlib_resnet:abc:def", "test faces")
    path = save_cohort(cohort, cohort_path(cohort.encoder, tmp_path))
    loaded = load_cohort(cohort.encoder, path)
    assert loaded.source == "test faces" and len(loaded) == 100
    assert np.max(np.abs(loaded.embeddings - cohort.embeddings)) < 2e-3  # float16 on disk
    with pytest.raises(ModelError, match="was made with"):
        load_cohort("dlib_resnet:other:def", path)
    assert load_cohort("dlib_resnet:abc:def", tmp_path / "missing.npz") is None


def test_the_shipped_default_encoder_has_its_cohort():
    from face_recognition_ros.encoders import create_encoder

    encoder = create_encoder("dlib_resnet")
    cohort = load_cohort(encoder.identity)
    assert cohort is not None and len(cohort) > 1000, "regenerate it with face-recognition-ros cohort build"
