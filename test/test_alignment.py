"""Five-point similarity alignment on synthetic landmarks and images."""

from __future__ import annotations

import numpy as np
import pytest

from face_recognition_ros.alignment import (
    ARCFACE_112,
    STORAGE_TEMPLATE,
    AlignmentTemplate,
    align_faces,
    estimate_similarity_transforms,
    transform_points,
)


def similarity(points: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    return points @ rotation.T + np.asarray(shift)


def test_exact_similarity_is_recovered_for_a_batch():
    template = ARCFACE_112.landmarks
    sources = np.stack([similarity(template, a, s, t) for a, s, t in
                        [(0.0, 1.0, (0, 0)), (0.4, 2.5, (300, 40)), (-1.2, 0.3, (5, 900))]])
    matrices = estimate_similarity_transforms(sources, template)
    assert matrices.shape == (3, 2, 3)
    for source, matrix in zip(sources, matrices):
        np.testing.assert_allclose(transform_points(source, matrix), template, atol=1e-3)


def test_single_landmark_set_gives_a_single_matrix():
    assert estimate_similarity_transforms(ARCFACE_112.landmarks, ARCFACE_112.landmarks).shape == (2, 3)


def test_mirrored_landmarks_are_not_fitted_by_a_reflection():
    mirrored = ARCFACE_112.landmarks * np.array([-1, 1], np.float32)
    matrix = estimate_similarity_transforms(mirrored, ARCFACE_112.landmarks)
    assert np.linalg.det(matrix[:, :2]) > 0  # rotation and scale only


def test_noisy_landmarks_give_the_least_squares_fit():
    rng = np.random.default_rng(0)
    target = ARCFACE_112.landmarks
    source = similarity(target, 0.2, 1.7, (50, 60)) + rng.normal(0, 1.0, target.shape)
    matrix = estimate_similarity_transforms(source, target)
    residual = np.linalg.norm(transform_points(source, matrix) - target, axis=1).mean()
    # perturbing the fitted matrix can only make the residual worse
    for delta in (np.eye(2, 3) * 0.01, np.array([[0, 0, 0.5], [0, 0, 0]])):
        worse = np.linalg.norm(transform_points(source, matrix + delta) - target, axis=1).mean()
        assert worse > residual


@pytest.mark.parametrize("scale", [1.0, 0.2], ids=["plain warp", "large face pre-shrunk"])
def test_landmark_dots_land_on_the_template_in_the_crop(scale):
    # Draw bright dots at known landmarks, align, and find the dots where the template says.
    template = AlignmentTemplate(ARCFACE_112.landmarks, (112, 112))
    landmarks = similarity(template.landmarks, 0.3, 1 / scale, (100, 80)).astype(np.float32)
    image = np.zeros((1200, 1200, 3), np.uint8)
    radius = max(2, int(3 / scale))
    yy, xx = np.mgrid[0:1200, 0:1200]
    for x, y in landmarks:
        image[(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = 255
    crop = align_faces(image, landmarks[None], template)[0, :, :, 0].astype(float)
    for x, y in template.landmarks:
        ys, xs = np.mgrid[int(y) - 6:int(y) + 7, int(x) - 6:int(x) + 7]
        window = crop[ys, xs]
        centre = np.array([(window * xs).sum(), (window * ys).sum()]) / window.sum()
        assert np.linalg.norm(centre - [x, y]) < 1.0


def test_crops_have_template_size_and_keep_channel_order():
    image = np.zeros((300, 300, 3), np.uint8)
    image[..., 0] = 200  # red only
    crops = align_faces(image, np.stack([ARCFACE_112.landmarks + 50] * 2), STORAGE_TEMPLATE)
    assert crops.shape == (2, 256, 256, 3) and crops.dtype == np.uint8
    assert crops[..., 0].min() == 200 and crops[..., 1:].max() == 0


def test_no_faces_give_an_empty_batch():
    crops = align_faces(np.zeros((50, 50, 3), np.uint8), np.zeros((0, 5, 2), np.float32), ARCFACE_112)
    assert crops.shape == (0, 112, 112, 3)
