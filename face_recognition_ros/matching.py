"""Open-set matching of face embeddings against the gallery: a known person, or unknown.

Each query is compared with every gallery sample by cosine similarity (one matrix product of unit
vectors). A person's score is the mean of their ``k`` most similar samples (all of them when they
have fewer than ``k``), so a single odd sample cannot outvote a consistent set. The best person is
accepted only when their score reaches ``threshold`` *and* beats the runner-up by at least
``margin``; otherwise the face is unknown.

The threshold is either given (a fixed cosine similarity) or, with ``target_far``, the open-set
operating point of ``openset``: calibrated on the gallery itself (and a cohort of strangers) for a
target rate of strangers given a name, recomputed whenever the gallery changes.

Margin definition: best person's score minus the second-best person's score. With a single person
in the gallery there is no runner-up, and the runner-up score is taken as -1 (the lowest possible
cosine similarity), so the margin is ``score + 1`` and only the threshold decides. With an empty
gallery every face is unknown with similarity -1 and margin 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .openset import Cohort, OperatingPoint, calibrate, score_queries, top_mean
from .types import Match

if TYPE_CHECKING:  # the matcher needs no sqlite or OpenCV
    from .gallery import GalleryEmbeddings

#: score of the missing runner-up when the gallery holds one person
NO_RUNNER_UP_SCORE = -1.0
# Subtracted from a credited similarity: any value above 2 puts it below every live one.
_KNOCKED_OUT = np.float32(4.0)


@dataclass(frozen=True)
class _Grouping:
    """A gallery's samples ordered so that each person's samples are contiguous."""

    embeddings: np.ndarray  # (M, D) float32, grouped by person
    person_ids: np.ndarray  # (P,) int64, one per group
    starts: np.ndarray  # (P,) index of each group's first sample
    counts: np.ndarray  # (P,) samples per group


def _group_by_person(gallery: GalleryEmbeddings) -> _Grouping:
    ids = np.asarray(gallery.person_ids, np.int64)
    embeddings = np.asarray(gallery.embeddings, np.float32)
    if ids.size > 1 and np.any(ids[1:] < ids[:-1]):
        order = np.argsort(ids, kind="stable")
        ids, embeddings = ids[order], embeddings[order]
    embeddings = np.ascontiguousarray(embeddings)
    person_ids, starts, counts = np.unique(ids, return_index=True, return_counts=True)
    return _Grouping(embeddings, person_ids, starts, counts)


class Matcher:
    """k-NN vote with a similarity threshold and a margin over the runner-up.

    ``threshold``, ``margin`` and ``k`` may be changed at any time (e.g. from a ROS parameter
    callback); the next ``match`` call uses the new values.
    """

    def __init__(self, threshold: float = 0.5, margin: float = 0.05, k: int = 3, target_far: float | None = None,
                 cohort: Cohort | None = None, mode: str = "asnorm") -> None:
        self._cache = None
        self.threshold = threshold
        self.margin = margin
        self.k = k
        self.cohort = cohort
        self.mode = mode
        self.target_far = target_far
        # (gallery, its grouping, its operating point), swapped as one tuple so concurrent callers
        # never mix them up
        self._cache: tuple[GalleryEmbeddings, _Grouping, OperatingPoint | None] | None = None

    @property
    def target_far(self) -> float | None:
        """The target false-accept rate per stranger query, or None for the fixed ``threshold``."""
        return self._target_far

    @target_far.setter
    def target_far(self, value: float | None) -> None:
        if value is not None and not 0.0 < float(value) < 1.0:
            raise ValueError(f"target_far must lie in (0, 1), got {value}")
        self._target_far = None if value is None else float(value)
        self._cache = None  # the operating point is recalibrated at the next match

    def operating_point(self, gallery: GalleryEmbeddings) -> OperatingPoint | None:
        """The calibrated decision for ``gallery`` (None with a fixed threshold or an empty gallery)."""
        if self._target_far is None or len(gallery.person_ids) == 0:
            return None
        return self._grouped(gallery)[1]

    def threshold_in_force(self, gallery: GalleryEmbeddings | None) -> float:
        """The raw similarity a typical face must reach now: the fixed threshold, or the operating point's."""
        point = self.operating_point(gallery) if gallery is not None else None
        return self._threshold if point is None else point.typical_raw_threshold

    @property
    def threshold(self) -> float:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        value = float(value)
        if not -1.0 <= value <= 1.0:
            raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {value}")
        self._threshold = value
        self._cache = None  # it is the calibration's floor too

    @property
    def margin(self) -> float:
        return self._margin

    @margin.setter
    def margin(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 2.0:
            raise ValueError(f"margin must be in [0, 2], got {value}")
        self._margin = value
        self._cache = None

    @property
    def k(self) -> int:
        return self._k

    @k.setter
    def k(self, value: int) -> None:
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"k must be a positive integer, got {value!r}")
        self._k = int(value)
        self._cache = None

    def match(self, queries: np.ndarray, gallery: GalleryEmbeddings) -> list[Match]:
        """One ``Match`` per query row; queries are (N, D) unit-norm embeddings."""
        queries = _check_queries(queries)
        if len(queries) == 0:
            return []
        if len(gallery.person_ids) == 0:
            return [Match(None, None, NO_RUNNER_UP_SCORE, 0.0) for _ in range(len(queries))]
        grouping, point = self._grouped(gallery)
        if grouping.embeddings.shape[1] != queries.shape[1]:
            raise ValueError(
                f"query embeddings have {queries.shape[1]} dimensions but the gallery's have "
                f"{grouping.embeddings.shape[1]}: were they made by the same encoder?"
            )
        if point is None:
            similarities = queries @ grouping.embeddings.T
            best, best_score, runner_up = _top_two(person_scores(similarities, grouping.starts, grouping.counts, self.k))
            needed = np.full(len(best), self._threshold, np.float64)
        else:
            scored = score_queries(queries, grouping, self.k, None, point.statistics_cohort)
            best, best_score, runner_up = scored.best, scored.best_score, scored.runner_up
            needed = point.raw_thresholds(best, scored.query_top)
        return self._decide(best, best_score, runner_up, needed, grouping.person_ids, gallery.names)

    def _grouped(self, gallery: GalleryEmbeddings) -> tuple[_Grouping, OperatingPoint | None]:
        # The same GalleryEmbeddings object is matched frame after frame: group (and calibrate) once.
        cache = self._cache
        if cache is None or cache[0] is not gallery:
            grouping = _group_by_person(gallery)
            point = None
            if self._target_far is not None:
                point = calibrate(grouping, self.cohort, self._target_far, self._k, self._margin, self._threshold,
                                  self.mode)
            cache = (gallery, grouping, point)
            self._cache = cache
        return cache[1], cache[2]

    def _grouping(self, gallery: GalleryEmbeddings) -> _Grouping:
        return self._grouped(gallery)[0]

    def _decide(
        self,
        best: np.ndarray,
        best_score: np.ndarray,
        runner_up: np.ndarray,
        needed: np.ndarray,
        person_ids: np.ndarray,
        names: dict[int, str],
    ) -> list[Match]:
        margins = best_score - runner_up
        accepted = (best_score >= needed) & (margins >= self._margin)
        matches = []
        for index in range(len(best)):
            similarity, margin, threshold = float(best_score[index]), float(margins[index]), float(needed[index])
            if accepted[index]:
                person_id = int(person_ids[best[index]])
                matches.append(Match(person_id, names.get(person_id), similarity, margin, threshold))
            else:
                matches.append(Match(None, None, similarity, margin, threshold))
        return matches

    def closest_people(self, queries: np.ndarray, gallery: GalleryEmbeddings) -> list[tuple[int, float, float]]:
        """For each enrolled person: (person id, the best score any of ``queries`` reaches against them,
        the score a face needs to be named as them now), highest first. What enrollment warns about."""
        queries = _check_queries(queries)
        if len(queries) == 0 or len(gallery.person_ids) == 0:
            return []
        grouping, point = self._grouped(gallery)
        scores = person_scores(queries @ grouping.embeddings.T, grouping.starts, grouping.counts, self.k)
        best_query = np.argmax(scores, axis=0)
        reached = scores[best_query, np.arange(scores.shape[1])]
        if point is None:
            needed = np.full(len(reached), self._threshold, np.float64)
        else:
            query_top = top_mean(queries @ point.statistics_cohort.T) if point.mode == "asnorm" else \
                np.zeros(len(queries), np.float32)
            needed = point.raw_thresholds(np.arange(len(reached)), query_top[best_query])
        order = np.argsort(-reached)
        return [(int(grouping.person_ids[i]), float(reached[i]), float(needed[i])) for i in order]


def _top_two(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best column, its score and the second-best score of each row (runner-up -1 if none)."""
    rows = np.arange(len(scores))
    best = np.argmax(scores, axis=1)
    if scores.shape[1] > 1:
        runner_up = np.partition(scores, -2, axis=1)[:, -2]
    else:
        runner_up = np.full(len(scores), NO_RUNNER_UP_SCORE, np.float32)
    return best, scores[rows, best], runner_up


def person_scores(similarities: np.ndarray, starts: np.ndarray, counts: np.ndarray, k: int) -> np.ndarray:
    """Mean of each group's top-k similarities, per row: (N, M) -> (N, P).

    Groups are contiguous column ranges (``starts``, ``counts``); similarities lie in [-1, 1].
    Works in ``k`` whole-matrix rounds: take every group's maximum, credit it (as many times as it
    occurs, up to the group's remaining quota, so tied samples count correctly), then push the
    credited cells below -1 so the next round finds the next-best ones. ``similarities`` is
    overwritten.
    """
    sims = similarities
    num_groups = len(starts)
    quota = np.minimum(counts, k).astype(np.float32)
    remaining = np.repeat(quota[np.newaxis], sims.shape[0], axis=0)
    total = np.zeros_like(remaining)
    for round_index in range(k):
        group_max = np.maximum.reduceat(sims, starts, axis=1)
        live = remaining > 0
        last_round = round_index == k - 1
        if last_round:
            # Every earlier round took at least one sample from each live group: one is left.
            taken = live.astype(np.float32)
        else:
            hits = sims == np.repeat(group_max, counts, axis=1)
            if np.all(hits.sum(axis=1) == num_groups):  # one hit per group: no ties anywhere
                taken = live.astype(np.float32)
            else:
                taken = np.minimum(np.add.reduceat(hits, starts, axis=1, dtype=np.float32), remaining)
        total += taken * group_max  # exhausted groups have taken == 0
        remaining -= taken
        if last_round or not remaining.any():
            break
        sims -= np.multiply(hits, _KNOCKED_OUT, dtype=np.float32)
    return total / quota


def _check_queries(queries: np.ndarray) -> np.ndarray:
    queries = np.asarray(queries)
    if queries.ndim != 2 or not np.issubdtype(queries.dtype, np.floating):
        raise ValueError(f"queries must be an (N, D) float array, got {queries.dtype} {queries.shape}")
    if not np.all(np.isfinite(queries)):
        raise ValueError("queries contain NaN or infinite values")
    return queries.astype(np.float32, copy=False)
