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
