"""Labels drawn on annotated frames: sized to their face, and never off the image."""

from __future__ import annotations

import numpy as np
import pytest

from face_recognition_ros.annotate import annotate, place_label
from face_recognition_ros.types import FaceResult, Match

LABEL = "#12 Lin-Manuel Miranda 0.97"


def face(box) -> FaceResult:
    box = np.asarray(box, np.float32)
    landmarks = np.tile(((box[:2] + box[2:]) / 2)[None], (5, 1))
    return FaceResult(box, landmarks, 0.99, Match(1, "Lin-Manuel Miranda", 0.97, 0.2), track_id=12)


def inside(place, width: int, height: int) -> bool:
    return place.x >= 0 and place.y >= 0 and place.x + place.width <= width and place.y + place.height <= height


def test_labels_of_small_faces_are_smaller_than_those_of_large_faces():
    small = place_label(LABEL, np.array([100, 100, 130, 130]), 1920, 1080)
    large = place_label(LABEL, np.array([100, 100, 500, 500]), 1920, 1080)
    assert small.height < large.height and small.width < large.width
    # A label on a crowd photo's 30-pixel face stays about the size of that face, not of the photo.
    assert small.height <= 30


@pytest.mark.parametrize("box", [[1880, 500, 1918, 540], [0, 0, 40, 40], [1800, 1040, 1919, 1079], [-20, -5, 60, 70]])
def test_labels_stay_inside_the_image_at_its_edges(box):
    place = place_label(LABEL, np.array(box, np.float32), 1920, 1080)
    assert inside(place, 1920, 1080), place


def test_annotate_draws_every_face_and_keeps_the_image_size():
    image = np.zeros((240, 320, 3), np.uint8)
    drawn = annotate(image, [face([10, 10, 60, 60]), face([280, 200, 318, 238])])
    assert drawn.shape == image.shape and drawn.any() and not image.any()
