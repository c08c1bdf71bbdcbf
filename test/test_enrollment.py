"""LiveEnrollment: which frames give samples, why the others do not, timeout messages."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from face_recognition_ros.enrollment import (
    ACCEPTED,
    AMBIGUOUS,
    BLURRY,
    DEFAULT_MIN_SHARPNESS,
    DONE,
    DUPLICATE,
    NO_FACE,
    TIMED_OUT,
    TOO_SMALL,
    LiveEnrollment,
    sharpness,
)
from face_recognition_ros.types import Detections

RNG = np.random.default_rng(3)
DIM = 16


@dataclass
class Batch:
    detections: Detections
    storage_crops: np.ndarray | None
    embeddings: np.ndarray


def textured_crop() -> np.ndarray:
    """A crop with plenty of fine detail (sharp by any measure)."""
    return RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def batch(
    sides: list[float], crops: list[np.ndarray] | None = None, embeddings: list[np.ndarray] | None = None
) -> Batch:
    """A frame with square faces of the given sides, side by side."""
    n = len(sides)
    boxes = np.array([[300.0 * i, 50.0, 300.0 * i + s, 50.0 + s] for i, s in enumerate(sides)], np.float32)
    boxes = boxes.reshape(-1, 4)
    detections = Detections(boxes, np.zeros((n, 5, 2), np.float32), np.full(n, 0.99, np.float32))
    crops = crops if crops is not None else [textured_crop() for _ in range(n)]
    embeddings = embeddings if embeddings is not None else [unit(RNG.normal(size=DIM)) for _ in range(n)]
    return Batch(detections, np.stack(crops) if n else np.zeros((0, 256, 256, 3), np.uint8),
                 np.stack(embeddings) if n else np.zeros((0, DIM), np.float32))


def test_distinct_sharp_large_faces_are_accepted_until_done():
    enrollment = LiveEnrollment(num_samples=3)
    statuses = [enrollment.offer(batch([120]), now=float(t)) for t in range(4)]
    assert statuses == [ACCEPTED, ACCEPTED, ACCEPTED, DONE]
    assert enrollment.done
    crops, embeddings = enrollment.samples
    assert crops.shape == (3, 256, 256, 3) and crops.dtype == np.uint8 and embeddings.shape == (3, DIM)
    assert enrollment.failure(now=100.0) is None


def test_no_face_is_reported():
    enrollment = LiveEnrollment()
    assert enrollment.offer(batch([]), now=0.0) == NO_FACE
    assert enrollment.num_accepted == 0


def test_the_largest_face_is_taken_when_it_clearly_dominates():
    small_embedding, large_embedding = unit(RNG.normal(size=DIM)), unit(RNG.normal(size=DIM))
    frame = batch([80, 150], embeddings=[small_embedding, large_embedding])
    enrollment = LiveEnrollment(num_samples=1)
    assert enrollment.offer(frame, now=0.0) == ACCEPTED
    np.testing.assert_array_equal(enrollment.samples[1][0], large_embedding)
    np.testing.assert_array_equal(enrollment.samples[0][0], frame.storage_crops[1])


def test_several_equally_large_faces_are_ambiguous():
    enrollment = LiveEnrollment(ambiguity_ratio=0.8)
    assert enrollment.offer(batch([150, 140]), now=0.0) == AMBIGUOUS  # areas 0.87
    assert enrollment.offer(batch([150, 120]), now=0.1) == ACCEPTED  # areas 0.64


def test_a_face_below_the_minimum_size_is_too_small():
    enrollment = LiveEnrollment(min_face_size=60)
    assert enrollment.offer(batch([59]), now=0.0) == TOO_SMALL
    assert enrollment.offer(batch([61]), now=0.1) == ACCEPTED


def test_a_blurred_crop_is_refused_as_blurry():
    blurred = cv2.GaussianBlur(textured_crop(), (0, 0), 6)
    enrollment = LiveEnrollment()
    assert enrollment.offer(batch([120], crops=[blurred]), now=0.0) == BLURRY
    assert enrollment.offer(batch([120], crops=[np.full((256, 256, 3), 128, np.uint8)]), now=0.1) == BLURRY


def test_a_near_copy_of_an_accepted_sample_is_a_duplicate():
    first = unit(RNG.normal(size=DIM))
    near_copy = unit(first + 0.01 * RNG.normal(size=DIM))
    different = unit(first + 0.8 * RNG.normal(size=DIM))
    enrollment = LiveEnrollment(duplicate_similarity=0.97)
    assert enrollment.offer(batch([120], embeddings=[first]), now=0.0) == ACCEPTED
    assert enrollment.offer(batch([120], embeddings=[2.0 * near_copy]), now=0.1) == DUPLICATE  # scale-free
    assert enrollment.offer(batch([120], embeddings=[different]), now=0.2) == ACCEPTED


def test_timeout_message_says_how_far_it_got_and_why():
    enrollment = LiveEnrollment(num_samples=5, timeout_s=10.0)
    enrollment.offer(batch([120]), now=100.0)
    enrollment.offer(batch([120]), now=101.0)
    enrollment.offer(batch([120], crops=[np.zeros((256, 256, 3), np.uint8)]), now=102.0)
    enrollment.offer(batch([]), now=103.0)
    enrollment.offer(batch([120], crops=[np.zeros((256, 256, 3), np.uint8)]), now=104.0)
    assert enrollment.failure(now=109.9) is None
    message = enrollment.failure(now=110.0)
    assert message.startswith("timed out after 10.0 s with 2/5 samples; last: blurry")
    assert "blurry 2" in message and "no face 1" in message
    assert enrollment.offer(batch([120]), now=110.5) == TIMED_OUT
    assert enrollment.num_accepted == 2


def test_timeout_without_any_frame_says_no_frame_arrived():
    enrollment = LiveEnrollment(timeout_s=2.0, started_at=50.0)
    assert enrollment.failure(now=51.0) is None
    assert enrollment.failure(now=52.0) == "timed out after 2.0 s with 0/5 samples; last: no frame received"


def test_frames_of_only_ambiguous_faces_fail_with_that_reason():
    enrollment = LiveEnrollment(timeout_s=1.0)
    for t in (0.0, 0.5, 0.9):
        enrollment.offer(batch([100, 100]), now=t)
    assert "last: ambiguous: several equally large faces" in enrollment.failure(now=1.0)


def test_empty_samples_have_the_right_shapes():
    crops, embeddings = LiveEnrollment().samples
    assert crops.shape == (0, 256, 256, 3) and len(embeddings) == 0


def test_a_batch_without_storage_crops_is_a_usage_error():
    frame = batch([120])
    frame.storage_crops = None
    with pytest.raises(ValueError, match="storage_crops=True"):
        LiveEnrollment().offer(frame, now=0.0)


@pytest.mark.parametrize("kwargs", [{"num_samples": 0}, {"timeout_s": 0}, {"ambiguity_ratio": 0.0}])
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        LiveEnrollment(**kwargs)


def test_real_face_crop_is_sharp_and_its_blurred_copy_is_not(media_dir):
    from face_recognition_ros.alignment import STORAGE_TEMPLATE, align_faces
    from face_recognition_ros.detection import RetinaFaceDetector
    from face_recognition_ros.image_files import load_image

    detector = RetinaFaceDetector(max_size=320)
    for name in ("obama-480p.jpg", "biden.jpg"):
        image = load_image(media_dir / name)
        detections = detector.detect(image)
        assert len(detections) >= 1, name
        crop = align_faces(image, detections.landmarks[:1], STORAGE_TEMPLATE)[0]
        assert sharpness(crop) >= DEFAULT_MIN_SHARPNESS, name
        assert sharpness(cv2.GaussianBlur(crop, (0, 0), 3)) < DEFAULT_MIN_SHARPNESS, name
