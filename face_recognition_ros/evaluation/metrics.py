"""Verification and classification metrics on similarity scores, in plain numpy.

Convention throughout: a higher score means "more likely the same person", a pair is predicted
positive when ``score >= threshold``, and ``labels`` are booleans (True = same person / positive).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from face_recognition_ros.errors import EvaluationError


class ConfusionCounts(NamedTuple):
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int


def check_scores(
    scores: np.ndarray, labels: np.ndarray, need_both_classes: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels as matching 1-D float64 / bool arrays, or an EvaluationError saying why not."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.ndim != 1 or scores.shape != labels.shape:
        raise EvaluationError(
            f"scores and labels must be 1-D arrays of one length, got shapes {scores.shape} and {labels.shape}"
        )
    if scores.size == 0:
        raise EvaluationError("no scores to evaluate")
    if not np.all(np.isfinite(scores)):
        raise EvaluationError(f"{int(np.sum(~np.isfinite(scores)))} scores are NaN or infinite")
    if labels.dtype != bool:
        if not np.all(np.isin(labels, (0, 1))):
            raise EvaluationError("labels must be booleans or 0/1")
        labels = labels.astype(bool)
    if need_both_classes and (labels.all() or not labels.any()):
        raise EvaluationError("need both positive and negative labels (same and different pairs)")
    return scores, labels


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False accept rate, true accept rate and the threshold of every distinct operating point.

    Points are ordered by decreasing threshold; the first is ``(0, 0)`` at threshold +inf, the last
    ``(1, 1)`` at the lowest score. Tied scores form one point, so the curve never over-states.
    """
    scores, labels = check_scores(scores, labels, need_both_classes=True)
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    sorted_labels = labels[order]
    true_accepts = np.cumsum(sorted_labels)
    false_accepts = np.cumsum(~sorted_labels)
    # Only the last index of each run of tied scores is an operating point.
    last_of_tie = np.r_[np.diff(sorted_scores) != 0, True]
    far = np.r_[0.0, false_accepts[last_of_tie] / false_accepts[-1]]
    tar = np.r_[0.0, true_accepts[last_of_tie] / true_accepts[-1]]
    thresholds = np.r_[np.inf, sorted_scores[last_of_tie]]
    return far, tar, thresholds


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (1 = perfect separation, 0.5 = chance)."""
    far, tar, _ = roc_curve(scores, labels)
    # The trapezoid rule written out: np.trapezoid is numpy >= 2 only, np.trapz is gone in numpy 2.
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float = 1e-3) -> float:
    """The highest true accept rate of any threshold whose false accept rate is at most ``far``."""
    if not 0.0 <= far <= 1.0:
        raise EvaluationError(f"far must lie in [0, 1], got {far}")
    far_points, tar_points, _ = roc_curve(scores, labels)
    return float(tar_points[far_points <= far].max())


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold of highest accuracy among the midpoints between sorted distinct scores.

    A threshold just below the lowest and just above the highest score are candidates too, so
    "accept all" and "reject all" can win on one-class data. Ties go to the lowest threshold.
    """
    scores, labels = check_scores(scores, labels)
    distinct = np.unique(scores)
    candidates = np.r_[
        np.nextafter(distinct[0], -np.inf),
        (distinct[:-1] + distinct[1:]) / 2.0,
        np.nextafter(distinct[-1], np.inf),
    ]
    positives = np.sort(scores[labels])
    negatives = np.sort(scores[~labels])
    # Positives at or above a candidate are accepted; negatives below it are rejected.
    true_accepts = positives.size - np.searchsorted(positives, candidates, side="left")
    true_rejects = np.searchsorted(negatives, candidates, side="left")
    return float(candidates[int(np.argmax(true_accepts + true_rejects))])


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided right when ``score >= threshold`` means positive."""
    scores, labels = check_scores(scores, labels)
    return float(np.mean((scores >= threshold) == labels))


def confusion_counts(predictions: np.ndarray, labels: np.ndarray) -> ConfusionCounts:
    """True/false positives and negatives of boolean predictions against boolean labels."""
    predictions = np.asarray(predictions, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    if predictions.shape != labels.shape:
        raise EvaluationError(f"predictions {predictions.shape} and labels {labels.shape} differ in shape")
    return ConfusionCounts(
        true_positives=int(np.sum(predictions & labels)),
        false_positives=int(np.sum(predictions & ~labels)),
        false_negatives=int(np.sum(~predictions & labels)),
        true_negatives=int(np.sum(~predictions & ~labels)),
    )


def precision_from_counts(true_positives: int, false_positives: int) -> float:
    """TP / (TP + FP); 0 when nothing was predicted positive."""
    predicted = true_positives + false_positives
    return true_positives / predicted if predicted else 0.0


def recall_from_counts(true_positives: int, false_negatives: int) -> float:
    """TP / (TP + FN); 0 when there are no positives."""
    actual = true_positives + false_negatives
    return true_positives / actual if actual else 0.0


def f1_from_counts(true_positives: int, false_positives: int, false_negatives: int) -> float:
    """Harmonic mean of precision and recall, 2TP / (2TP + FP + FN); 0 when TP is 0."""
    denominator = 2 * true_positives + false_positives + false_negatives
    return 2 * true_positives / denominator if denominator else 0.0


def precision(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of positive predictions that are right."""
    counts = confusion_counts(predictions, labels)
    return precision_from_counts(counts.true_positives, counts.false_positives)


def recall(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of positives predicted positive."""
    counts = confusion_counts(predictions, labels)
    return recall_from_counts(counts.true_positives, counts.false_negatives)


def f1(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 score of boolean predictions (positive class = True)."""
    counts = confusion_counts(predictions, labels)
    return f1_from_counts(counts.true_positives, counts.false_positives, counts.false_negatives)
