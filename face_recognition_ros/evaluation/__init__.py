"""Benchmarks that take an embedding function: LFW verification and open-set identification.

Both entry points accept ``embed_image(path) -> unit embedding | None`` (None: no face found),
so the CLI, the training code and tests can plug in any detector/encoder combination.
"""

from face_recognition_ros.evaluation.lfw import Pair, evaluate_lfw, read_pairs, ten_fold_verification
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

__all__ = [
    "Pair",
    "accuracy",
    "best_threshold",
    "evaluate_identification",
    "evaluate_lfw",
    "f1",
    "precision",
    "read_pairs",
    "recall",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "ten_fold_verification",
]


def __getattr__(name: str):
    # Imported on first use: identification pulls in the gallery module, LFW does not need it.
    if name == "evaluate_identification":
        from face_recognition_ros.evaluation.identify import evaluate_identification

        return evaluate_identification
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
