"""The open-set operating point: when to name a face, chosen for a target false-accept rate.

A stranger in front of the robot is compared with everyone enrolled, so the chance that *some*
enrolled person scores above a fixed threshold grows with the gallery: a threshold right for ten
people is too loose for a thousand. The operating point is therefore calibrated on the gallery
itself, for a target rate of strangers given a name (per stranger query, default 1%):

* **impostors**: faces of people who are not enrolled, scored against the whole gallery exactly as
  a query is (k-NN person scores, best person, margin over the runner-up). Two sources: a cohort
  of faces shipped with each encoder as embeddings (``weights/cohorts/``), and the gallery's own
  people, each scored against everyone else (in-domain: the robot's camera, the robot's people).
  The threshold is the score that only ``target_far`` of the impostors reach with the margin met,
  so it rises with the gallery and with look-alikes in it.
* **asnorm** (the default where a cohort exists; measured in the README): before the threshold,
  the best person's score is lowered by how much strangers in general resemble the query and that
  person: ``s - weight * (top_q + top_p) / 2``, where ``top_q`` is the mean of the query's
  ``top_n`` highest similarities to the cohort, and ``top_p`` the same for the person (an
  adaptive S-norm in the style of speaker verification). A face that looks like many people, or
  a person with look-alikes, needs a higher raw score. Half of the cohort provides these
  statistics, the other half serves as impostors, so the calibration never scores a face against
  itself.
* **global**: the raw score alone (no cohort needed; what a gallery without one gets).

The encoder's own 1:1 threshold (calibrated on LFW pairs) is a floor: the operating point is never
looser than verification would be. The best person is always the one with the highest raw score,
so normalisation changes who is accepted, never who is named.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ModelError

MODES = ("asnorm", "global")
#: adaptive-normalisation settings, chosen on three protocols (celeba-subset K=3, LFW K=1 and K=3)
#: and checked on a fourth that was not used to choose them (README, "Open-set identification")
TOP_N = 10
NORM_WEIGHT = 0.5
DEFAULT_TARGET_FAR = 0.01
COHORT_DIR = Path(__file__).resolve().parent / "weights" / "cohorts"
#: impostor queries taken from the gallery itself at most (the rest of a large gallery is subsampled)
MAX_GALLERY_IMPOSTORS = 2000
#: queries scored per block: bounds the (queries x samples) similarity matrix in memory
BLOCK = 512
#: below any score a face can have, raw or normalised (the threshold when no impostor could pass)
LOWEST_THRESHOLD = -2.0
#: a person's cohort score spread below this is taken as this (one-sample persons, identical samples)
MIN_SPREAD = 1e-3


@dataclass(frozen=True)
class Cohort:
    """Embeddings of faces of people nobody enrolls, made by one encoder identity."""

    embeddings: np.ndarray  # (C, D) float32 unit vectors
    encoder: str  # FaceEncoder.identity
    source: str  # where the faces came from

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])


def cohort_path(encoder_identity: str, folder: Path = COHORT_DIR) -> Path:
    name = encoder_identity.split(":", 1)[0]
    digest = hashlib.sha256(encoder_identity.encode()).hexdigest()[:12]
    return Path(folder) / f"{name}-{digest}.npz"


def save_cohort(cohort: Cohort, path: Path) -> Path:
    """Store as float16 (a cohort is thousands of vectors; half precision changes cosines by < 1e-3)."""
    from .atomic_file import atomic_path

    with atomic_path(path) as partial:
        with open(partial, "wb") as handle:
            np.savez_compressed(handle, embeddings=cohort.embeddings.astype(np.float16),
                                encoder=np.array(cohort.encoder), source=np.array(cohort.source))
    return path


def user_cohort_dir() -> Path:
    """Where ``face-recognition-ros cohort build`` puts cohorts for encoders the package ships none for."""
    import platformdirs

    return Path(platformdirs.user_data_dir("face_recognition_ros")) / "cohorts"


def load_cohort(encoder_identity: str, path: Path | None = None) -> Cohort | None:
    """The cohort made with this encoder identity (shipped in ``weights/cohorts``, or built into the
    user's data directory), or None when there is none: then the gallery's own people are the only
    impostors. A file of another identity is refused, never used."""
    if path is None:
        candidates = [cohort_path(encoder_identity), cohort_path(encoder_identity, user_cohort_dir())]
        path = next((candidate for candidate in candidates if candidate.is_file()), candidates[0])
    path = Path(path)
    if not path.is_file():
        return None
    try:
        stored = np.load(path, allow_pickle=False)
        embeddings = np.asarray(stored["embeddings"], np.float32)
        encoder, source = str(stored["encoder"]), str(stored["source"])
    except (OSError, ValueError, KeyError) as error:
        raise ModelError(f"cohort file {path} is unreadable: {error}") from None
    if encoder != encoder_identity:
        raise ModelError(f"cohort {path} was made with {encoder}, not {encoder_identity}")
    embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    return Cohort(embeddings, encoder, source)


def split_cohort(cohort: Cohort) -> tuple[np.ndarray, np.ndarray]:
    """(statistics half, impostor half): every other face, so both halves look alike."""
    return cohort.embeddings[0::2], cohort.embeddings[1::2]


def top_mean(similarities: np.ndarray, top_n: int = TOP_N, axis: int = 1) -> np.ndarray:
    """Mean of the ``top_n`` largest values along ``axis``."""
    top_n = min(top_n, similarities.shape[axis])
    return np.mean(-np.partition(-similarities, top_n - 1, axis=axis).take(range(top_n), axis=axis), axis=axis)


@dataclass(frozen=True)
class Scores:
    """For each query: the best person (column), its raw score, the runner-up's, and the query's
    cohort statistic (``top_q``; NaN without normalisation)."""

    best: np.ndarray  # (Q,) column index into the gallery's person order
    best_score: np.ndarray  # (Q,)
    runner_up: np.ndarray  # (Q,)
    query_top: np.ndarray  # (Q,)

    @property
    def margins(self) -> np.ndarray:
        return self.best_score - self.runner_up


def score_queries(queries: np.ndarray, grouping, k: int, exclude: np.ndarray | None = None,
                  statistics_cohort: np.ndarray | None = None) -> Scores:
    """Best / runner-up person scores of every query against a grouped gallery, in blocks.

    ``exclude``: per query, a column that must not count (the query's own person, -1 for none).
    ``statistics_cohort``: faces whose top similarities to each query give ``top_q``.
    """
    from .matching import NO_RUNNER_UP_SCORE, person_scores

    count = len(queries)
    best = np.zeros(count, np.int64)
    best_score = np.full(count, NO_RUNNER_UP_SCORE, np.float32)
    runner_up = np.full(count, NO_RUNNER_UP_SCORE, np.float32)
    query_top = np.full(count, np.nan, np.float32)
    for start in range(0, count, BLOCK):
        block = slice(start, start + BLOCK)
        scores = person_scores(queries[block] @ grouping.embeddings.T, grouping.starts, grouping.counts, k)
        if exclude is not None:
            rows = np.flatnonzero(exclude[block] >= 0)
            scores[rows, exclude[block][rows]] = -np.inf
        order = np.argsort(-scores, axis=1)[:, :2]
        rows = np.arange(len(scores))
        best[block] = order[:, 0]
        best_score[block] = scores[rows, order[:, 0]]
        if scores.shape[1] > 1:
            second = scores[rows, order[:, 1]]
            runner_up[block] = np.where(np.isfinite(second), second, NO_RUNNER_UP_SCORE)
        if statistics_cohort is not None and len(statistics_cohort):
            query_top[block] = top_mean(queries[block] @ statistics_cohort.T)
    return Scores(best, best_score, runner_up, query_top)


def person_tops(statistics_cohort: np.ndarray, grouping, k: int, top_n: int = TOP_N) -> np.ndarray:
    """(P,) per person: the mean of the ``top_n`` highest person scores any cohort face reaches."""
    from .matching import person_scores

    tops = np.full((0, len(grouping.person_ids)), -np.inf, np.float32)
    for start in range(0, len(statistics_cohort), BLOCK):
        scores = person_scores(statistics_cohort[start:start + BLOCK] @ grouping.embeddings.T, grouping.starts,
                               grouping.counts, k)
        tops = -np.partition(-np.concatenate([tops, scores]), min(top_n, len(tops) + len(scores)) - 1, axis=0)
        tops = tops[:top_n]
    return tops.mean(axis=0).astype(np.float32)


def quantile_threshold(values: np.ndarray, target_far: float) -> float:
    """The lowest threshold t with mean(values >= t) <= target_far (+inf guards an empty set).

    Ties are respected: a threshold never splits equal values, so the rate really is at most the target.
    """
    values = np.sort(np.asarray(values, np.float64))[::-1]
    if values.size == 0:
        return float("-inf")
    allowed = int(np.floor(target_far * values.size + 1e-9))  # how many may lie at or above t
    if allowed >= values.size:
        return float(values[-1])
    return float(np.nextafter(values[allowed], np.inf))


@dataclass(frozen=True)
class OperatingPoint:
    """The decision in force for one gallery (recomputed whenever the gallery changes)."""

    mode: str  # "asnorm" or "global"
    threshold: float  # on the normalised score (asnorm) or the raw score (global)
    floor: float  # the raw score every accepted face must reach at least (the encoder's 1:1 threshold)
    target_far: float
    impostors: int  # impostor queries it was calibrated on
    cohort_size: int
    person_ids: np.ndarray  # (P,) gallery person order person_top refers to
    person_top: np.ndarray | None = None  # (P,) asnorm statistics
    statistics_cohort: np.ndarray | None = None  # the cohort half queries are compared with
    weight: float = NORM_WEIGHT
    typical_query_top: float = 0.0  # the impostors' median top_q (for the typical raw threshold)

    def normalised(self, best: np.ndarray, best_score: np.ndarray, query_top: np.ndarray) -> np.ndarray:
        if self.mode == "global":
            return best_score
        return best_score - self.weight * (query_top + self.person_top[best]) / 2

    def accepts(self, best: np.ndarray, best_score: np.ndarray, query_top: np.ndarray) -> np.ndarray:
        """Which queries (best column, its raw score, their ``top_q``) pass the bar (the margin apart)."""
        return (best_score >= self.floor) & (self.normalised(best, best_score, query_top) >= self.threshold)

    def raw_thresholds(self, best: np.ndarray, query_top: np.ndarray) -> np.ndarray:
        """The raw similarity each query's best person had to reach."""
        if self.mode == "global":
            return np.full(len(best), max(self.threshold, self.floor), np.float64)
        needed = self.threshold + self.weight * (query_top.astype(np.float64) + self.person_top[best]) / 2
        return np.maximum(needed, self.floor)

    @property
    def typical_raw_threshold(self) -> float:
        """The raw threshold a typical face meets (median person, median stranger): what is in force."""
        if self.mode == "global" or self.person_top is None or not len(self.person_top):
            return float(max(self.threshold, self.floor))
        needed = self.threshold + self.weight * (self.typical_query_top + float(np.median(self.person_top))) / 2
        return float(max(needed, self.floor))

    def describe(self) -> str:
        where = f"target false accepts {self.target_far:.2%}, {self.impostors} impostors"
        if self.mode == "global":
            return f"{self.typical_raw_threshold:.3f} ({where})"
        return f"about {self.typical_raw_threshold:.3f} raw, {self.threshold:.3f} normalised ({self.mode}; {where})"


def gallery_impostors(grouping, limit: int = MAX_GALLERY_IMPOSTORS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The gallery's samples as impostor queries against everyone else: (queries, own column)."""
    columns = np.repeat(np.arange(len(grouping.person_ids)), grouping.counts)
    rows = np.arange(len(columns))
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), limit, replace=False))
    return grouping.embeddings[rows], columns[rows]


def calibrate(grouping, cohort: Cohort | None, target_far: float = DEFAULT_TARGET_FAR, k: int = 3,
              margin: float = 0.0, floor: float = -1.0, mode: str = "asnorm") -> OperatingPoint:
    """The operating point for a grouped gallery (``matching._Grouping``): see the module docstring.

    Impostors are half the cohort plus the gallery's own samples against everyone else; only those
    whose margin over their runner-up is met could be accepted, so only those can set the bar.
    Without a cohort, asnorm falls back to global.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not 0.0 < target_far < 1.0:
        raise ValueError(f"target_far must lie in (0, 1), got {target_far}")
    statistics, impostor_faces = split_cohort(cohort) if cohort is not None and len(cohort) >= 2 else (None, None)
    if statistics is None:
        mode = "global"
    cohort_for_queries = statistics if mode == "asnorm" else None
    parts = []
    if len(grouping.person_ids) > 1:
        queries, exclude = gallery_impostors(grouping)
        parts.append(score_queries(queries, grouping, k, exclude, cohort_for_queries))
    if impostor_faces is not None:
        parts.append(score_queries(impostor_faces if mode == "asnorm" else cohort.embeddings, grouping, k, None,
                                   cohort_for_queries))
    person_top = person_tops(statistics, grouping, k) if mode == "asnorm" else None
    point = OperatingPoint(mode, floor, floor, target_far, 0, len(cohort) if cohort is not None else 0,
                           grouping.person_ids, person_top, statistics)
    if not parts:  # one person and no cohort: nothing to learn from; the 1:1 threshold decides
        return point
    best = np.concatenate([p.best for p in parts])
    best_score = np.concatenate([p.best_score for p in parts])
    query_top = np.concatenate([p.query_top for p in parts])
    margins = np.concatenate([p.margins for p in parts])
    values = point.normalised(best, best_score, query_top)
    # Every impostor counts in the rate; only those meeting the margin and the floor can be accepted.
    could_pass = (margins >= margin) & (best_score >= floor)
    # Fewer impostors than the target allows could pass at all: then the floor and margin alone decide.
    threshold = max(quantile_threshold(np.where(could_pass, values, -np.inf), target_far), LOWEST_THRESHOLD)
    typical = float(np.nanmedian(query_top)) if mode == "asnorm" else 0.0
    return dataclasses.replace(point, threshold=threshold, impostors=len(values), typical_query_top=typical)
