"""Open-set identification on a folder-per-identity dataset: enroll some people, query everyone.

Split (reproducible from ``seed``): only identities with more than ``enroll_per_identity``
images take part, so that every known person has at least one query; the others are skipped
(``skipped_identities``). Of the participants, ``unknown_fraction`` are never enrolled and all
their images are queries; each remaining (known) person has ``enroll_per_identity`` random
images enrolled and the rest queried. Enrollment images without a face are left out (that
person enrolls fewer samples). A query without a face is reported unknown, as the live system
would: a false reject for a known person, a correct reject for an unknown one; all such images
count in ``failed_detections``. Files that cannot be read are treated the same way but counted in
``unreadable_images`` (with their errors in ``unreadable``), and files in the identity folders that
are not images at all are listed in ``skipped_files``: neither is mistaken for a missed face.

Scores (over queries):
- ``rank1``: closed-set, known queries whose best-scoring person (same k-NN scoring as the
  matcher, no threshold or margin) is right.
- ``open_set_accuracy``: known queries accepted as the right person plus unknown queries rejected.
- ``false_accept_rate``: unknown queries accepted as anyone (None when there are none).
- ``false_reject_rate`` / ``misidentification_rate``: known queries rejected / accepted as the
  wrong person.
- ``precision``, ``recall``, ``f1``: true positive = known query accepted as the right person;
  false positive = accepted as the wrong person, or an unknown query accepted; false negative =
  known query rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from face_recognition_ros.errors import EvaluationError
from face_recognition_ros.evaluation.embedding import EmbedImage, embed_images
from face_recognition_ros.evaluation.metrics import f1_from_counts, precision_from_counts, recall_from_counts
from face_recognition_ros.gallery import GalleryEmbeddings
from face_recognition_ros.image_files import find_images
from face_recognition_ros.matching import Matcher
from face_recognition_ros.openset import Cohort, calibrate, score_queries


def list_identities(data_dir: str | Path, skipped: list[str] | None = None) -> dict[str, list[Path]]:
    """Identity folder name -> its image files (sorted), for every sub-folder holding images.

    What counts as an image is its content (``image_files``), not its name; other files are added
    to ``skipped`` (as "path: reason") when a list is given.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise EvaluationError(f"identification data folder not found: {data_dir}")
    identities = {}
    for folder in sorted(path for path in data_dir.iterdir() if path.is_dir() and not path.name.startswith(".")):
        listing = find_images([folder], recursive=False)
        if skipped is not None:
            skipped += [f"{path}: {reason}" for path, reason in listing.skipped]
        if listing.images:
            identities[folder.name] = listing.images
    if not identities:
        raise EvaluationError(f"no identity folders with images in {data_dir} (expected <identity>/<image> files)")
    return identities


def _is_positive_integer(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _rate(count: int, total: int) -> float | None:
    return count / total if total else None


def _make_matcher(threshold: float | None, margin: float | None, k: int, target_far: float | None = None,
                  cohort: Cohort | None = None, floor: float | None = None) -> Matcher:
    settings = {"k": k, "cohort": cohort}
    if threshold is not None:
        settings["threshold"] = threshold
    elif target_far is not None:
        settings |= {"target_far": target_far, "threshold": floor if floor is not None else -1.0}
    if margin is not None:
        settings["margin"] = margin
    try:
        return Matcher(**settings)
    except ValueError as error:
        raise EvaluationError(str(error)) from None


@dataclass(frozen=True)
class OpenSetCurve:
    """Detection-and-identification rate against false-accept rate, sweeping one threshold."""

    thresholds: np.ndarray  # descending
    false_accept_rate: np.ndarray  # strangers accepted as anyone / strangers
    identification_rate: np.ndarray  # known people accepted as themselves / known queries

    def identification_rate_at(self, far: float) -> float:
        """The best detection-and-identification rate of any threshold with at most ``far`` false accepts."""
        allowed = self.false_accept_rate <= far + 1e-12
        return float(self.identification_rate[allowed].max()) if allowed.any() else 0.0


def open_set_curve(values: np.ndarray, could_pass: np.ndarray, correct: np.ndarray, known: np.ndarray,
                   known_total: int, unknown_total: int) -> OpenSetCurve:
    """The curve of accepting ``values >= t`` (where ``could_pass``: margin and floor met) for every t.

    ``correct``: the best person is the right one (known queries); totals include queries without
    a face, which no threshold accepts.
    """
    scored = np.where(could_pass, values, -np.inf)
    order = np.argsort(-scored, kind="stable")
    ranked = scored[order]
    live = np.isfinite(ranked)
    false_accepts = np.cumsum(~known[order] & live)
    identified = np.cumsum(known[order] & correct[order] & live)
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True] & live
    return OpenSetCurve(ranked[last_of_tie], false_accepts[last_of_tie] / max(1, unknown_total),
                        identified[last_of_tie] / max(1, known_total))


def _operating_figures(accepted: np.ndarray, correct: np.ndarray, known: np.ndarray, known_total: int,
                       unknown_total: int) -> dict:
    return {"false_accept_rate": float(np.sum(accepted & ~known)) / max(1, unknown_total),
            "identification_rate": float(np.sum(accepted & correct & known)) / max(1, known_total)}


def open_set_figures(gallery: GalleryEmbeddings, queries: np.ndarray, truth: np.ndarray, faceless_known: np.ndarray,
                     unknown_total: int, k: int, margin: float, floor: float, cohort: Cohort | None,
                     target_far: float, growth: Sequence[int] = (10, 100, 1000), seed: int = 0) -> dict:
    """The trade-off of open-set identification on embedded queries (``truth`` -1 for strangers;
    ``faceless_known``: the people of known queries without a face, a miss at any threshold):

    * ``identification_rate_at_far``: detection-and-identification rate at false-accept rates of
      0.1%, 1% and 10%, along the plain threshold (raw score) and, with a cohort, the normalised score;
    * ``operating_point``: the calibrated decision for ``target_far`` and what it really gave here;
    * ``gallery_growth``: the same operating point on random subsets of 10, 100, 1,000 enrolled
      identities (the strangers stay the same), where the data has that many;
    * ``curves``: the points, for plots.
    """
    from ..matching import _group_by_person

    known_total = int(np.sum(truth >= 0) + len(faceless_known))
    grouping = _group_by_person(gallery)
    point = calibrate(grouping, cohort, target_far, k, margin, floor, "asnorm")
    scored = score_queries(queries, grouping, k, None, point.statistics_cohort)
    correct = grouping.person_ids[scored.best] == truth
    known = truth >= 0
    could_pass = (scored.margins >= margin) & (scored.best_score >= floor)
    curves = {"raw": open_set_curve(scored.best_score, could_pass, correct, known, known_total, unknown_total)}
    if point.mode == "asnorm":
        normalised = point.normalised(scored.best, scored.best_score, scored.query_top)
        curves["normalised"] = open_set_curve(normalised, could_pass, correct, known, known_total, unknown_total)
    accepted = (scored.margins >= margin) & point.accepts(scored.best, scored.best_score, scored.query_top)
    figures = {
        "identification_rate_at_far": {name: {str(far): round(curve.identification_rate_at(far), 4)
                                              for far in (0.001, 0.01, 0.1)} for name, curve in curves.items()},
        "operating_point": {"target_false_accept_rate": target_far, "mode": point.mode,
                            "threshold": round(point.typical_raw_threshold, 4), "description": point.describe(),
                            **_operating_figures(accepted, correct, known, known_total, unknown_total)},
        "gallery_growth": [],
        "curves": {name: _thinned(curve) for name, curve in curves.items()},
    }
    people = grouping.person_ids
    rng = np.random.default_rng(seed)
    for size in growth:
        if size > len(people):
            continue
        chosen = np.sort(rng.choice(people, size, replace=False))
        in_gallery = np.isin(gallery.person_ids, chosen)
        subset = GalleryEmbeddings(gallery.embeddings[in_gallery], gallery.person_ids[in_gallery], gallery.names)
        asked = ~known | np.isin(truth, chosen)
        sub_known_total = int(np.sum(np.isin(truth, chosen)) + np.sum(np.isin(faceless_known, chosen)))
        sub_grouping = _group_by_person(subset)
        sub_point = calibrate(sub_grouping, cohort, target_far, k, margin, floor, "asnorm")
        sub = score_queries(queries[asked], sub_grouping, k, None, sub_point.statistics_cohort)
        sub_accepted = (sub.margins >= margin) & sub_point.accepts(sub.best, sub.best_score, sub.query_top)
        sub_correct = sub_grouping.person_ids[sub.best] == truth[asked]
        figures["gallery_growth"].append({
            "identities": int(size), "threshold": round(sub_point.typical_raw_threshold, 4),
            **_operating_figures(sub_accepted, sub_correct, known[asked], sub_known_total, unknown_total)})
    return figures


def _thinned(curve: OpenSetCurve, points: int = 300) -> dict:
    step = max(1, len(curve.thresholds) // points)
    return {"false_accept_rate": curve.false_accept_rate[::step].round(5).tolist(),
            "identification_rate": curve.identification_rate[::step].round(5).tolist()}


def _stack(vectors: Sequence[np.ndarray], dimension: int) -> np.ndarray:
    return np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dimension), np.float32)


def evaluate_identification(
    embed_image: EmbedImage,
    data_dir: str | Path,
    enroll_per_identity: int = 5,
    unknown_fraction: float = 0.2,
    seed: int = 0,
    threshold: float | None = None,
    margin: float | None = None,
    k: int = 3,
    progress: bool = True,
    target_far: float | None = None,
    cohort: Cohort | None = None,
    floor: float | None = None,
) -> dict:
    """Enroll, query and score as described in the module docstring.

    ``embed_image`` returns a unit embedding or None when it found no face. The decision is a fixed
    ``threshold``, or with ``target_far`` (and no threshold) the open-set operating point calibrated
    on the enrolled gallery and ``cohort``, never below ``floor``; with neither, the Matcher's own
    defaults. With ``target_far``, the result also holds the trade-off figures of
    ``open_set_figures`` (under ``open_set``). The values used are in the result.
    """
    if not _is_positive_integer(enroll_per_identity):
        raise EvaluationError(f"enroll_per_identity must be a positive integer, got {enroll_per_identity!r}")
    if not 0.0 <= unknown_fraction < 1.0:
        raise EvaluationError(f"unknown_fraction must lie in [0, 1), got {unknown_fraction}")
    matcher = _make_matcher(threshold, margin, k, target_far, cohort, floor)
    closed_set = _make_matcher(-1.0, 0.0, k)  # accepts every query's best person

    skipped_files: list[str] = []
    identities = list_identities(data_dir, skipped_files)
    eligible = [name for name, images in identities.items() if len(images) > enroll_per_identity]
    unknown_count = int(round(unknown_fraction * len(eligible)))
    if len(eligible) - unknown_count < 1:
        raise EvaluationError(
            f"no identity in {data_dir} can be enrolled: need more than {enroll_per_identity} images "
            f"({len(eligible)} identities have that, {unknown_count} of them are held out as unknown)"
        )
    rng = np.random.default_rng(seed)
    shuffled = [eligible[index] for index in rng.permutation(len(eligible))]
    unknown_names = sorted(shuffled[:unknown_count])
    known_names = sorted(shuffled[unknown_count:])

    enroll_paths: list[Path] = []
    enroll_ids: list[int] = []
    query_paths: list[Path] = []
    query_ids: list[int | None] = []  # None: an identity that was never enrolled
    for person_id, name in enumerate(known_names):
        images = [identities[name][index] for index in rng.permutation(len(identities[name]))]
        enroll_paths += images[:enroll_per_identity]
        enroll_ids += [person_id] * enroll_per_identity
        query_paths += images[enroll_per_identity:]
        query_ids += [person_id] * (len(images) - enroll_per_identity)
    for name in unknown_names:
        query_paths += identities[name]
        query_ids += [None] * len(identities[name])

    unreadable: list[str] = []
    vectors, seconds_per_image = embed_images(
        embed_image, enroll_paths + query_paths, progress, description="identification images", unreadable=unreadable
    )
    failed_detections = sum(vector is None for vector in vectors) - len(unreadable)
    dimension = next((vector.size for vector in vectors if vector is not None), None)
    if dimension is None:
        raise EvaluationError(f"embed_image found no face in any of the {len(vectors)} images of {data_dir}")
    enroll_vectors, query_vectors = vectors[: len(enroll_paths)], vectors[len(enroll_paths):]

    enrolled = [index for index, vector in enumerate(enroll_vectors) if vector is not None]
    gallery = GalleryEmbeddings(
        _stack([enroll_vectors[index] for index in enrolled], dimension),
        np.asarray([enroll_ids[index] for index in enrolled], np.int64),
        dict(enumerate(known_names)),
    )
    embedded = [index for index, vector in enumerate(query_vectors) if vector is not None]
    query_matrix = _stack([query_vectors[index] for index in embedded], dimension)
    # Queries without a face keep None: reported unknown, and a closed-set miss.
    decided: list[int | None] = [None] * len(query_paths)
    nearest: list[int | None] = [None] * len(query_paths)
    for index, open_match, closed_match in zip(
        embedded, matcher.match(query_matrix, gallery), closed_set.match(query_matrix, gallery)
    ):
        decided[index] = open_match.person_id
        nearest[index] = closed_match.person_id

    known = [(truth, decided[i], nearest[i]) for i, truth in enumerate(query_ids) if truth is not None]
    unknown_decisions = [decided[i] for i, truth in enumerate(query_ids) if truth is None]
    correct = sum(decision == truth for truth, decision, _ in known)
    rejected = sum(decision is None for _, decision, _ in known)
    wrong = len(known) - correct - rejected
    false_accepts = sum(decision is not None for decision in unknown_decisions)
    true_rejects = len(unknown_decisions) - false_accepts
    false_positives = wrong + false_accepts
    extra = {}
    if target_far is not None and len(query_matrix):
        truth = np.array([query_ids[i] if query_ids[i] is not None else -1 for i in embedded], np.int64)
        faceless = set(range(len(query_ids))) - set(embedded)
        faceless_known = np.array([query_ids[i] for i in faceless if query_ids[i] is not None], np.int64)
        extra["open_set"] = open_set_figures(gallery, query_matrix, truth, faceless_known, len(unknown_decisions), k,
                                             matcher.margin, floor if floor is not None else -1.0, cohort,
                                             target_far, seed=seed)
        extra["decision"] = {"threshold_in_force": round(matcher.threshold_in_force(gallery), 4),
                             "target_false_accept_rate": matcher.target_far}
    return {
        "rank1": _rate(sum(best == truth for truth, _, best in known), len(known)),
        "open_set_accuracy": (correct + true_rejects) / len(query_paths),
        "false_accept_rate": _rate(false_accepts, len(unknown_decisions)),
        "false_reject_rate": _rate(rejected, len(known)),
        "misidentification_rate": _rate(wrong, len(known)),
        "precision": precision_from_counts(correct, false_positives),
        "recall": recall_from_counts(correct, rejected),
        "f1": f1_from_counts(correct, false_positives, rejected),
        "identities": len(identities),
        "known_identities": len(known_names),
        "unknown_identities": len(unknown_names),
        "skipped_identities": len(identities) - len(eligible),
        "queries": len(query_paths),
        "known_queries": len(known),
        "unknown_queries": len(unknown_decisions),
        "enrolled_images": len(enrolled),
        "failed_detections": failed_detections,
        "unreadable_images": len(unreadable),
        "unreadable": unreadable,
        "skipped_files": skipped_files,
        "seconds_per_image": seconds_per_image,
        "threshold": matcher.threshold,
        "margin": matcher.margin,
        "k": matcher.k,
        "enroll_per_identity": int(enroll_per_identity),
        "unknown_fraction": float(unknown_fraction),
        "seed": seed,
    } | extra
