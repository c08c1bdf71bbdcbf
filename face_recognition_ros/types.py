"""Plain data passed between the pipeline stages (frame -> faces -> embeddings -> matches)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: a second face at least this share of the largest one's area makes "whose face is it?" a guess
AMBIGUITY_RATIO = 0.8

# RetinaFace landmark order, used everywhere in the project: the subject's right eye (left in the
# image), left eye, nose tip, right mouth corner, left mouth corner.
LANDMARK_NAMES = ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")


@dataclass(frozen=True)
class Detections:
    """All faces found in one frame, as arrays (N faces)."""

    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2 in pixels of the source frame
    landmarks: np.ndarray  # (N, 5, 2) float32 x, y in pixels, order LANDMARK_NAMES
    scores: np.ndarray  # (N,) float32 detector confidence in [0, 1]
    #: faces found but left out by the detector's ``max_faces`` limit (the smallest ones)
    dropped: int = 0

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty() -> "Detections":
        return Detections(
            boxes=np.zeros((0, 4), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32),
            scores=np.zeros((0,), np.float32),
        )

    def areas(self) -> np.ndarray:
        """(N,) box areas in square pixels."""
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])

    def largest_index(self) -> int:
        """Index of the largest face (the person closest to the camera); needs at least one face."""
        return int(np.argmax(self.areas()))

    def dominant_index(self, ambiguity_ratio: float = AMBIGUITY_RATIO) -> int | None:
        """Index of the largest face, or None when there is none or another is nearly as large
        (``ambiguity_ratio`` of its area or more): then which one is the person meant is a guess."""
        if len(self) == 0:
            return None
        areas = np.clip(self.boxes[:, 2] - self.boxes[:, 0], 0, None) * np.clip(self.boxes[:, 3] - self.boxes[:, 1], 0, None)
        order = np.argsort(-areas, kind="stable")
        if len(order) > 1 and areas[order[1]] >= ambiguity_ratio * areas[order[0]]:
            return None
        return int(order[0])

    def select(self, index: np.ndarray) -> "Detections":
        """Subset (boolean mask or integer index), keeping array types."""
        return Detections(self.boxes[index], self.landmarks[index], self.scores[index])


@dataclass(frozen=True)
class Match:
    """Open-set decision for one face: a known person, or unknown (``person_id`` None)."""

    person_id: int | None
    name: str | None
    similarity: float  # best person's score (cosine similarity, k-NN vote)
    margin: float  # best person's score minus the second-best person's score
    #: the similarity the best person needed (the operating point in force for this face); None: not known
    threshold: float | None = None
    #: tracking only: how many more frames must agree before this face's track is named; while above 0
    #: the face is unknown although this frame alone may have named the person
    frames_to_confirm: int = 0

    @property
    def is_known(self) -> bool:
        return self.person_id is not None


@dataclass
class FaceResult:
    """Everything known about one face in one frame."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    match: Match
    embedding: np.ndarray | None = None
    track_id: int = -1

    def identity_fields(self) -> dict:
        """Field values of the ``FaceIdentity`` message (msg/FaceIdentity.msg).

        One mapping for the generated rclpy class and the rosbags class alike; unknown faces carry
        an empty name and person id -1.
        """
        match = self.match
        x_min, y_min, x_max, y_max = (float(v) for v in self.box)
        return dict(
            x_min=x_min,
            y_min=y_min,
            x_max=x_max,
            y_max=y_max,
            landmarks=np.asarray(self.landmarks, np.float32).reshape(10),
            detection_score=float(self.score),
            name=(match.name or "") if match.is_known else "",
            person_id=int(match.person_id) if match.is_known else -1,
            is_known=bool(match.is_known),
            similarity=float(match.similarity),
            margin=float(match.margin),
            track_id=int(self.track_id),
        )

    def to_json(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "score": round(float(self.score), 4),
            "name": self.match.name,
            "person_id": self.match.person_id,
            "is_known": self.match.is_known,
            "similarity": round(float(self.match.similarity), 4),
            "margin": round(float(self.match.margin), 4),
            "threshold": None if self.match.threshold is None else round(float(self.match.threshold), 4),
            "frames_to_confirm": self.match.frames_to_confirm,
            "track_id": self.track_id,
        }


@dataclass
class FrameResult:
    """The recognition result of one frame, with per-stage wall-clock timings in milliseconds."""

    faces: list[FaceResult]
    timings_ms: dict[str, float] = field(default_factory=dict)
    image_size: tuple[int, int] = (0, 0)  # width, height
    #: faces found in the frame but not recognised, because of the ``max_faces`` limit
    faces_dropped: int = 0
