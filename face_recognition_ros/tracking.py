"""Faces followed across frames: stable track ids and an identity voted over each track's recent frames."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from .types import FaceResult, Match


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    history: deque[Match]
    missed: int = 0
    names: dict[int, str] = field(default_factory=dict)  # newest name seen per person


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), x1 y1 x2 y2."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# Frames that must agree before a track is named: one frame alone can be a stranger who passes the bar.
DEFAULT_MIN_VOTES = 2


class FaceTracker:
    """Associates each frame's faces with the previous frames' faces by box overlap.

    A face keeps its ``track_id`` while its box overlaps its previous box by at least
    ``iou_threshold`` (greedy, best overlap first) and it is not unseen for more than
    ``max_missed`` frames in a row. Its published identity is the majority of its last
    ``vote_window`` matches (unknown is a vote too), ties going to the higher total similarity,
    so one wrong frame does not flip a name. A person is named only once at least ``min_votes`` of
    the window's frames agree on them: a stranger who passes the bar in a single frame stays unknown.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 5, vote_window: int = 5,
                 min_votes: int = DEFAULT_MIN_VOTES):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0 or vote_window < 1:
            raise ValueError(f"max_missed must be >= 0 and vote_window >= 1, got {max_missed}, {vote_window}")
        if not 1 <= min_votes <= vote_window:
            raise ValueError(f"min_votes must lie in [1, vote_window={vote_window}], got {min_votes}")
        self.min_votes = min_votes
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.vote_window = vote_window
        self._tracks: list[_Track] = []
        self._next_id = 0

    def clear_votes(self) -> None:
        """Drop every track's match history but keep the tracks and their ids.

        Called when the answers themselves change (gallery edited, threshold changed): old votes
        would otherwise hold the previous name for up to ``vote_window`` frames.
        """
        for track in self._tracks:
            track.history.clear()

    def reset(self) -> None:
        """Forget every track (ids start again from 0), e.g. after a camera switch or gallery change."""
        self._tracks.clear()
        self._next_id = 0

    @property
    def num_tracks(self) -> int:
        return len(self._tracks)

    def apply(self, faces: list[FaceResult]) -> None:
        """Track one frame's results in place: each face gets its track id and its track's voted match."""
        boxes = np.array([face.box for face in faces], np.float32).reshape(-1, 4)
        track_ids, voted = self.update(boxes, [face.match for face in faces])
        for face, track_id, match in zip(faces, track_ids, voted):
            face.track_id, face.match = track_id, match

    def update(self, boxes: np.ndarray, matches: list[Match]) -> tuple[list[int], list[Match]]:
        """Feed one frame's faces; returns each face's track id and voted match, in input order."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if len(boxes) != len(matches):
            raise ValueError(f"got {len(boxes)} boxes but {len(matches)} matches")
        assigned = self._associate(boxes)
        seen: set[int] = set()
        tracks: list[_Track] = []
        for index, (box, match) in enumerate(zip(boxes, matches)):
            track = assigned.get(index) or self._new_track(box)
            track.box, track.missed = box.copy(), 0
            track.history.append(match)
            if match.person_id is not None and match.name is not None:
                track.names[match.person_id] = match.name
            seen.add(track.track_id)
            tracks.append(track)
        for track in self._tracks:
            if track.track_id not in seen:
                track.missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_missed]
        return [t.track_id for t in tracks], [self._vote(t, self.min_votes) for t in tracks]

    def _associate(self, boxes: np.ndarray) -> dict[int, _Track]:
        """Detection index -> existing track, greedily by descending IoU above the threshold."""
        if not self._tracks or not len(boxes):
            return {}
        iou = box_iou(boxes, np.stack([t.box for t in self._tracks]))
        pairs = np.argwhere(iou >= self.iou_threshold)
        order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
        assigned: dict[int, _Track] = {}
        taken: set[int] = set()
        for detection, track_index in pairs[order]:
            if detection in assigned or track_index in taken:
                continue
            assigned[int(detection)] = self._tracks[track_index]
            taken.add(int(track_index))
        return assigned

    def _new_track(self, box: np.ndarray) -> _Track:
        track = _Track(self._next_id, box, deque(maxlen=self.vote_window))
        self._next_id += 1
        self._tracks.append(track)
        return track

    @staticmethod
    def _vote(track: _Track, min_votes: int = 1) -> Match:
        counts = Counter(m.person_id for m in track.history)
        similarity_sums: dict[int | None, float] = {}
        for m in track.history:
            similarity_sums[m.person_id] = similarity_sums.get(m.person_id, 0.0) + float(m.similarity)
        winner = max(counts, key=lambda person: (counts[person], similarity_sums[person]))
        votes = [m for m in track.history if m.person_id == winner]
        similarity = float(np.mean([m.similarity for m in votes]))
        margin = float(np.mean([m.margin for m in votes]))
        if winner is not None and counts[winner] < min_votes:
            # Not yet agreed on often enough: unknown, with the frames' own figures.
            return Match(None, None, similarity, margin, votes[-1].threshold,
                         frames_to_confirm=min_votes - counts[winner])
        return Match(
            person_id=winner,
            name=None if winner is None else track.names.get(winner, votes[-1].name),
            similarity=similarity,
            margin=margin,
            threshold=votes[-1].threshold,
        )
