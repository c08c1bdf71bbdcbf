"""The plain data passed between stages."""

from __future__ import annotations

import numpy as np

from face_recognition_ros.types import Detections


def test_largest_index_picks_the_biggest_box_not_the_best_score():
    detections = Detections(
        boxes=np.array([[0, 0, 10, 10], [5, 5, 45, 35], [0, 0, 20, 20]], np.float32),
        landmarks=np.zeros((3, 5, 2), np.float32),
        scores=np.array([0.99, 0.81, 0.95], np.float32),
    )
    np.testing.assert_allclose(detections.areas(), [100, 1200, 400])
    assert detections.largest_index() == 1


def boxes_of_area(*areas: float) -> Detections:
    sides = np.sqrt(np.asarray(areas, np.float32))
    boxes = np.stack([np.zeros_like(sides), np.zeros_like(sides), sides, sides], axis=1)
    return Detections(boxes=boxes, landmarks=np.zeros((len(areas), 5, 2), np.float32),
                      scores=np.full(len(areas), 0.9, np.float32))


def test_dominant_index_is_the_largest_face_unless_another_is_nearly_as_large():
    assert boxes_of_area(100, 2500, 400).dominant_index() == 1  # the others are small: a bystander
    assert boxes_of_area(2500).dominant_index() == 0
    assert boxes_of_area(2000, 2500).dominant_index() is None  # 80% of its area: a guess who is meant
    assert boxes_of_area(1900, 2500).dominant_index() == 1
    assert boxes_of_area(1900, 2500).dominant_index(ambiguity_ratio=0.5) is None
    assert Detections.empty().dominant_index() is None
