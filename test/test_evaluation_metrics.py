"""Verification metrics on hand-built scores whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from face_recognition_ros.errors import EvaluationError
from face_recognition_ros.evaluation.metrics import (
    accuracy,
    best_threshold,
    f1,
    precision,
    recall,
    roc_auc,
    roc_curve,
    tar_at_far,
)

# Worked example, by score: P P N P N N. Positives beat negatives in 8 of 9 (P, N) pairs.
WORKED_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
WORKED_LABELS = np.array([True, True, False, True, False, False])


def random_scores(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random(count), rng.random(count) < 0.5


def test_roc_curve_of_worked_example_visits_each_distinct_score():
    far, tar, thresholds = roc_curve(WORKED_SCORES, WORKED_LABELS)
    np.testing.assert_allclose(far, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tar, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_allclose(thresholds, [np.inf, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])


def test_roc_auc_of_worked_example_is_fraction_of_correctly_ordered_pairs():
    assert roc_auc(WORKED_SCORES, WORKED_LABELS) == pytest.approx(8 / 9)


def test_tar_at_far_of_worked_example():
    assert tar_at_far(WORKED_SCORES, WORKED_LABELS, far=0.0) == pytest.approx(2 / 3)
    assert tar_at_far(WORKED_SCORES, WORKED_LABELS, far=0.2) == pytest.approx(2 / 3)
    assert tar_at_far(WORKED_SCORES, WORKED_LABELS, far=1 / 3) == pytest.approx(1.0)


def test_best_threshold_breaks_accuracy_ties_towards_lowest_threshold():
    # 0.65 and 0.55 both make one mistake out of six.
    threshold = best_threshold(WORKED_SCORES, WORKED_LABELS)
    assert threshold == pytest.approx(0.55)
    assert accuracy(WORKED_SCORES, WORKED_LABELS, threshold) == pytest.approx(5 / 6)


def test_perfectly_separated_scores_give_perfect_metrics():
    scores = np.array([0.9, 0.8, 0.3, 0.1])
    labels = np.array([True, True, False, False])
    assert roc_auc(scores, labels) == 1.0
    assert tar_at_far(scores, labels, far=0.0) == 1.0
    assert best_threshold(scores, labels) == pytest.approx(0.55)
    assert accuracy(scores, labels, 0.55) == 1.0


def test_reversed_scores_give_zero_auc():
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    labels = np.array([True, True, False, False])
    assert roc_auc(scores, labels) == 0.0
    assert tar_at_far(scores, labels, far=0.4) == 0.0


def test_fully_tied_scores_give_chance_auc():
    assert roc_auc(np.full(6, 0.5), WORKED_LABELS) == pytest.approx(0.5)


def test_random_scores_give_chance_auc_and_accuracy():
    scores, labels = random_scores(20000, seed=1)
    assert roc_auc(scores, labels) == pytest.approx(0.5, abs=0.02)
    threshold = best_threshold(scores[:10000], labels[:10000])
    assert accuracy(scores[10000:], labels[10000:], threshold) == pytest.approx(0.5, abs=0.03)


def test_best_threshold_on_one_class_accepts_or_rejects_everything():
    scores = np.array([0.2, 0.5, 0.7])
    accept_all = best_threshold(scores, np.ones(3, bool))
    reject_all = best_threshold(scores, np.zeros(3, bool))
    assert accuracy(scores, np.ones(3, bool), accept_all) == 1.0
    assert accuracy(scores, np.zeros(3, bool), reject_all) == 1.0


def test_best_threshold_maximises_accuracy_among_all_cut_points():
    scores, labels = random_scores(300, seed=2)
    labels = labels ^ (scores > 0.6)  # some structure so the optimum is not trivial
    best = accuracy(scores, labels, best_threshold(scores, labels))
    brute_force = max(accuracy(scores, labels, t) for t in np.r_[scores, -1.0, 2.0])
    assert best == pytest.approx(brute_force)


def test_precision_recall_f1_of_worked_example():
    predictions = np.array([1, 1, 1, 0, 0], bool)
    labels = np.array([1, 0, 0, 1, 0], bool)  # TP 1, FP 2, FN 1
    assert precision(predictions, labels) == pytest.approx(1 / 3)
    assert recall(predictions, labels) == pytest.approx(1 / 2)
    assert f1(predictions, labels) == pytest.approx(2 * 1 / (2 * 1 + 2 + 1))


def test_no_positive_predictions_score_zero_not_nan():
    predictions = np.zeros(4, bool)
    labels = np.array([1, 0, 1, 0], bool)
    assert precision(predictions, labels) == 0.0
    assert recall(predictions, labels) == 0.0
    assert f1(predictions, labels) == 0.0


@pytest.mark.parametrize(
    "scores, labels, message",
    [
        (np.array([0.1, 0.2]), np.array([True]), "one length"),
        (np.array([0.1, np.nan]), np.array([True, False]), "NaN"),
        (np.array([0.1, 0.2]), np.array([True, True]), "both positive and negative"),
        (np.array([]), np.array([], bool), "no scores"),
        (np.array([0.1, 0.2]), np.array([2, 0]), "booleans"),
    ],
)
def test_unusable_scores_raise_clear_error(scores, labels, message):
    with pytest.raises(EvaluationError, match=message):
        roc_auc(scores, labels)


def test_roc_matches_scikit_learn_where_available():
    metrics = pytest.importorskip("sklearn.metrics")
    scores, labels = random_scores(500, seed=3)
    scores = np.round(scores, 2)  # ties
    far, tar, thresholds = roc_curve(scores, labels)
    expected_far, expected_tar, expected_thresholds = metrics.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(far, expected_far)
    np.testing.assert_allclose(tar, expected_tar)
    np.testing.assert_allclose(thresholds[1:], expected_thresholds[1:])
    assert roc_auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))
