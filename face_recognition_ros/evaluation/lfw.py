"""LFW View 2 face verification: the pairs file, the 10-fold protocol, and an end-to-end run.

Folds are numbered from 1, as in the LFW protocol and ``pairs.txt`` order ("fold 1" is the first
600 pairs). Similarities are cosine similarities of unit embeddings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face_recognition_ros.errors import EvaluationError, NoFaceError
from face_recognition_ros.evaluation.embedding import EmbedImage, embed_images
from face_recognition_ros.evaluation.metrics import (
    accuracy,
    best_threshold,
    check_scores,
    f1,
    roc_auc,
    tar_at_far,
)

MISSING_FACE_POLICIES = ("fallback", "exclude", "error")
# Similarity given to a pair whose image has no embedding under the "fallback" policy: the lowest
# cosine similarity, so the pair is judged "different" at any threshold a real pair could set.
MISSING_FACE_SIMILARITY = -1.0
SUBFOLDS = 10


@dataclass(frozen=True)
class Pair:
    path_a: Path
    path_b: Path
    same: bool
    fold: int  # 1-based


def image_path(lfw_dir: Path, name: str, number: int) -> Path:
    return lfw_dir / name / f"{name}_{number:04d}.jpg"


def _parse_number(text: str, where: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise EvaluationError(f"{where}: {text!r} is not an image number") from None
    if number < 1:
        raise EvaluationError(f"{where}: image numbers start at 1, got {number}")
    return number


def read_pairs(pairs_file: str | Path, lfw_dir: str | Path | None = None, check_images: bool = True) -> list[Pair]:
    """The pairs of an LFW View 2 ``pairs.txt`` (images under ``lfw_dir``, default its folder).

    The file starts with ``<folds> <pairs per class>``; each fold then lists that many
    same-person lines ``name n1 n2`` followed by as many different-person lines
    ``name1 n1 name2 n2``. Raises EvaluationError naming the line of any malformed entry, and
    (with ``check_images``) when an image it names is missing.
    """
    pairs_file = Path(pairs_file)
    lfw_dir = Path(lfw_dir) if lfw_dir is not None else pairs_file.parent
    try:
        lines = pairs_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise EvaluationError(f"cannot read LFW pairs file {pairs_file}: {error}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    header = lines[0].split() if lines else []
    if len(header) != 2 or not all(field.isdigit() and int(field) > 0 for field in header):
        raise EvaluationError(
            f"{pairs_file}:1: expected the View 2 header '<folds> <pairs per class>' (e.g. '10 300'), "
            f"got {lines[0] if lines else ''!r}"
        )
    fold_count, per_class = int(header[0]), int(header[1])
    expected_lines = 1 + fold_count * 2 * per_class
    if len(lines) != expected_lines:
        raise EvaluationError(
            f"{pairs_file}: header promises {fold_count} folds x {2 * per_class} pairs = {expected_lines - 1} pair "
            f"lines, the file has {len(lines) - 1}"
        )
    pairs: list[Pair] = []
    for index, line in enumerate(lines[1:]):
        line_number = index + 2
        where = f"{pairs_file}:{line_number}"
        fold = index // (2 * per_class) + 1
        same = index % (2 * per_class) < per_class
        fields = line.split()
        if same:
            if len(fields) != 3:
                raise EvaluationError(f"{where}: expected a same-person pair 'name n1 n2', got {line!r}")
            name, first, second = fields
            path_a = image_path(lfw_dir, name, _parse_number(first, where))
            path_b = image_path(lfw_dir, name, _parse_number(second, where))
        else:
            if len(fields) != 4:
                raise EvaluationError(f"{where}: expected a different-person pair 'name1 n1 name2 n2', got {line!r}")
            name_a, first, name_b, second = fields
            path_a = image_path(lfw_dir, name_a, _parse_number(first, where))
            path_b = image_path(lfw_dir, name_b, _parse_number(second, where))
        pairs.append(Pair(path_a, path_b, same, fold))
    if check_images:
        missing = sorted({path for pair in pairs for path in (pair.path_a, pair.path_b) if not path.is_file()})
        if missing:
            raise EvaluationError(
                f"{len(missing)} images named in {pairs_file} are missing under {lfw_dir}, e.g. {missing[0]}"
            )
    return pairs


def ten_fold_verification(similarities: np.ndarray, same: np.ndarray, folds: np.ndarray) -> dict:
    """The LFW protocol: each fold is scored at the threshold of best accuracy on all other folds.

    ``folds`` gives each pair's fold label (any integers; at least two distinct). Accuracy is
    the mean over folds, ``accuracy_std`` the population standard deviation over folds and
    ``accuracy_standard_error`` the sample std / sqrt(folds) that the LFW results page quotes.
    ROC AUC and TAR at FAR use all pairs; F1 uses each pair's fold threshold.
    """
    scores, labels = check_scores(similarities, same, need_both_classes=True)
    folds = np.asarray(folds)
    if folds.shape != scores.shape:
        raise EvaluationError(f"folds has shape {folds.shape}, similarities {scores.shape}")
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise EvaluationError("the fold protocol needs pairs from at least two folds")
    thresholds: list[float] = []
    fold_accuracies: list[float] = []
    predictions = np.zeros(scores.shape, dtype=bool)
    for fold in fold_ids:
        held_out = folds == fold
        threshold = best_threshold(scores[~held_out], labels[~held_out])
        thresholds.append(threshold)
        fold_accuracies.append(accuracy(scores[held_out], labels[held_out], threshold))
        predictions[held_out] = scores[held_out] >= threshold
    accuracies = np.asarray(fold_accuracies)
    return {
        "accuracy": float(accuracies.mean()),
        "accuracy_std": float(accuracies.std()),
        "accuracy_standard_error": float(accuracies.std(ddof=1) / np.sqrt(accuracies.size)),
        "threshold": float(np.mean(thresholds)),
        "thresholds": [float(t) for t in thresholds],
        "fold_accuracies": [float(a) for a in fold_accuracies],
        "roc_auc": roc_auc(scores, labels),
        "tar_at_far_1e-3": tar_at_far(scores, labels, 1e-3),
        "tar_at_far_1e-2": tar_at_far(scores, labels, 1e-2),
        "f1": f1(predictions, labels),
        "pairs": int(scores.size),
        "same_pairs": int(labels.sum()),
    }


def stratified_subfolds(same: np.ndarray, count: int = SUBFOLDS) -> np.ndarray:
    """Sub-fold labels 1..count that split the same and the different pairs each into even runs."""
    same = np.asarray(same, dtype=bool)
    labels = np.zeros(same.shape, dtype=np.int64)
    for members in (np.flatnonzero(same), np.flatnonzero(~same)):
        for subfold, chunk in enumerate(np.array_split(members, count), start=1):
            labels[chunk] = subfold
    return labels


def _select_folds(pairs: list[Pair], folds: Iterable[int] | None) -> tuple[list[Pair], list[int]]:
    available = sorted({pair.fold for pair in pairs})
    if folds is None:
        return pairs, available
    selected = sorted(set(int(fold) for fold in folds))
    unknown = [fold for fold in selected if fold not in available]
    if not selected or unknown:
        raise EvaluationError(
            f"folds must be a non-empty subset of {available[0]}..{available[-1]} (numbered from 1 as in "
            f"the LFW protocol), got {list(folds)}"
        )
    return [pair for pair in pairs if pair.fold in selected], selected


def _protocol_description(selected: Sequence[int], fold_count: int) -> str:
    if len(selected) == fold_count:
        return (f"LFW View 2 {fold_count}-fold: each fold scored at the threshold of best accuracy on the "
                f"other {fold_count - 1} folds")
    if len(selected) > 1:
        return (f"folds {list(selected)} only: each scored at the threshold of best accuracy on the other "
                f"selected folds (not comparable with published {fold_count}-fold results)")
    return (f"fold {selected[0]} only: split into {SUBFOLDS} stratified sub-folds, each scored at the threshold "
            f"of best accuracy on the other {SUBFOLDS - 1} (not comparable with published results)")


def evaluate_lfw(
    embed_image: EmbedImage,
    lfw_dir: str | Path,
    pairs_file: str | Path | None = None,
    folds: Iterable[int] | None = None,
    progress: bool = True,
    missing_face: str = "fallback",
) -> dict:
    """Embed each distinct image of the chosen folds once and run the verification protocol.

    ``embed_image`` returns a unit embedding, or None when it found no face; those images count
    as ``failed_detections``. ``missing_face`` decides what happens to a pair with such an
    image: "fallback" gives it similarity -1, so it counts as "different" (a same pair is an
    error, a different pair a success; results stay comparable with published ones that use
    all 6000 pairs); "exclude" drops the pair (reported as ``excluded_pairs``); "error" raises
    NoFaceError. With a single fold the threshold comes from 10 stratified sub-folds of it (see
    the ``protocol`` field).
    """
    if missing_face not in MISSING_FACE_POLICIES:
        raise EvaluationError(f"missing_face must be one of {MISSING_FACE_POLICIES}, got {missing_face!r}")
    lfw_dir = Path(lfw_dir)
    if not lfw_dir.is_dir():
        raise EvaluationError(f"LFW folder not found: {lfw_dir}")
    all_pairs = read_pairs(pairs_file if pairs_file is not None else lfw_dir / "pairs.txt", lfw_dir)
    fold_count = max(pair.fold for pair in all_pairs)
    pairs, selected = _select_folds(all_pairs, folds)

    images = list(dict.fromkeys(path for pair in pairs for path in (pair.path_a, pair.path_b)))
    vectors, seconds_per_image = embed_images(embed_image, images, progress, description="LFW images")
    embedding_of = dict(zip(images, vectors))
    failed = [path for path, vector in embedding_of.items() if vector is None]
    if failed and missing_face == "error":
        raise NoFaceError(f"no face found in {len(failed)} LFW images, e.g. {failed[0]}")

    similarities, same, pair_folds = [], [], []
    excluded = 0
    for pair in pairs:
        a, b = embedding_of[pair.path_a], embedding_of[pair.path_b]
        if a is None or b is None:
            if missing_face == "exclude":
                excluded += 1
                continue
            similarity = MISSING_FACE_SIMILARITY
        else:
            similarity = float(np.clip(np.dot(a, b), -1.0, 1.0))
        similarities.append(similarity)
        same.append(pair.same)
        pair_folds.append(pair.fold)
    same_array = np.asarray(same, dtype=bool)
    fold_labels = np.asarray(pair_folds) if len(selected) > 1 else stratified_subfolds(same_array)

    result = ten_fold_verification(np.asarray(similarities), same_array, fold_labels)
    result.update(
        protocol=_protocol_description(selected, fold_count),
        folds=selected,
        images=len(images),
        failed_detections=len(failed),
        missing_face=missing_face,
        excluded_pairs=excluded,
        seconds_per_image=seconds_per_image,
    )
    return result
