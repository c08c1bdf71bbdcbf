"""A detector and an encoder that need no weights, for running the real RecognitionPipeline and
Recognizer on synthetic frames (gallery tests across processes, the gallery benchmark).

A frame is one flat colour; the detector finds one face covering it and the encoder maps the colour
of the face's centre to a fixed random unit vector, so "a person" is a colour: ``frame_of(7)`` is
person 7's face and ``embedding_of(7)`` its embedding.
"""

from __future__ import annotations

import numpy as np
import torch

from face_recognition_ros.alignment import STORAGE_TEMPLATE
from face_recognition_ros.gallery import CROP_SHAPE
from face_recognition_ros.pipeline import PipelineConfig, RecognitionPipeline
from face_recognition_ros.types import Detections

DIM = 32
FRAME_SIZE = 128
IDENTITY = "stub:00000000:00000000"


def embedding_of(person: int, dim: int = DIM) -> np.ndarray:
    vector = np.random.default_rng(1000 + int(person)).standard_normal(dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def frame_of(person: int) -> np.ndarray:
    return np.full((FRAME_SIZE, FRAME_SIZE, 3), int(person) % 250 + 3, np.uint8)


def crops_of(person: int, count: int) -> np.ndarray:
    return np.full((count, *CROP_SHAPE), int(person) % 250 + 3, np.uint8)


class _Component:
    def __init__(self) -> None:
        self.network = torch.nn.Identity()
        self.weights_hash = "00000000"

    def use_runner(self, runner) -> None:
        pass  # nothing runs through a network


class StubDetector(_Component):
    name = "stubdetector"
    score_threshold, min_face_size, max_faces = 0.5, 0, None

    def detect(self, image: np.ndarray) -> Detections:
        scale = image.shape[1] / STORAGE_TEMPLATE.size[0]
        landmarks = (STORAGE_TEMPLATE.landmarks * scale)[None].astype(np.float32)
        box = np.float32([[0, 0, image.shape[1], image.shape[0]]])
        return Detections(box, landmarks, np.float32([0.99]))


class StubEncoder(_Component):
    name = "stub"
    identity = IDENTITY
    template = STORAGE_TEMPLATE
    embedding_size = DIM
    default_threshold = 0.9
    default_margin = 0.0
    input_shape = (3, STORAGE_TEMPLATE.size[1], STORAGE_TEMPLATE.size[0])

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.embedding_size = dim

    @property
    def calibrated_threshold(self) -> float:
        return self.default_threshold

    def embed(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        centre = crops[:, crops.shape[1] // 2, crops.shape[2] // 2, 0].astype(int)
        return np.stack([embedding_of(value - 3, self.embedding_size) for value in centre])


def stub_pipeline(gallery, dim: int = DIM) -> RecognitionPipeline:
    return RecognitionPipeline(PipelineConfig(backend="torch", match_threshold=0.9, match_margin=0.0), gallery=gallery,
                               detector=StubDetector(), encoder=StubEncoder(dim))


def recognise_forever(setting: str, people: list[int], period_s: float) -> None:
    """A recognizer process: the real Recognizer (stub models) on frames of ``people`` in turn, one JSON
    line per frame with what it saw and what its health report (the node's /diagnostics) would say."""
    import json
    import sys
    import time

    from face_recognition_ros.gallery import open_gallery
    from face_recognition_ros.recognizer import Recognizer
    from face_recognition_ros.stream import HealthReport, StreamStats

    recognizer = Recognizer(stub_pipeline(open_gallery(setting)), track=False)
    stats, health = StreamStats(), HealthReport("stub camera")
    print(json.dumps({"ready": True}), flush=True)
    index = 0
    while True:
        person = people[index % len(people)]
        index += 1
        received = time.monotonic()
        stats.received_frame(False)
        try:
            result = recognizer.process(frame_of(person))
            names, error = [face.match.name for face in result.faces], ""
            stats.processed_frame(received)
        except Exception as failure:  # noqa: BLE001 - reported to the test, which fails on it
            names, error = [], f"{type(failure).__name__}: {failure}"
        level, message, _ = health.make(stats.snapshot(), recognizer.status(), recognizer.problem, recognizer.warning)
        print(json.dumps({"t": time.time(), "person": person, "names": names, "error": error, "level": level,
                          "message": message, "state": recognizer.status()["gallery_state"]}), flush=True)
        sys.stdout.flush()
        time.sleep(period_s)


if __name__ == "__main__":
    import sys

    recognise_forever(sys.argv[1], [int(p) for p in sys.argv[2].split(",")], float(sys.argv[3]))
