"""Five-point face alignment: a similarity transform from detected landmarks to an encoder's template."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where the five landmarks (order ``types.LANDMARK_NAMES``) must land in the aligned crop."""

    landmarks: np.ndarray  # (5, 2) float32, pixel coordinates in the output crop
    size: tuple[int, int]  # output (width, height)

    def digest(self) -> str:
        """Short hash of the geometry (landmarks to 0.001 px, size): changes whenever crops would."""
        text = ",".join(f"{value:.3f}" for value in np.asarray(self.landmarks, np.float64).ravel())
        return hashlib.sha256(f"{text};{self.size[0]}x{self.size[1]}".encode()).hexdigest()[:8]

    def scaled(self, width: int, height: int) -> "AlignmentTemplate":
        """The same template for another crop size."""
        scale = np.array([width / self.size[0], height / self.size[1]], np.float32)
        return AlignmentTemplate(self.landmarks * scale, (width, height))


# ArcFace / InsightFace 112x112 template, the de-facto standard for CNN face encoders.
ARCFACE_112 = AlignmentTemplate(
    landmarks=np.array(
        [
            [38.2946, 51.6963],
            [73.5318, 51.5014],
            [56.0252, 71.7366],
            [41.5493, 92.3655],
            [70.7299, 92.2041],
        ],
        np.float32,
    ),
    size=(112, 112),
)


def estimate_similarity_transforms(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity transforms (Umeyama, no reflection) mapping each source to target.

    Args:
        source: (N, K, 2) landmark sets, or (K, 2) for one.
        target: (K, 2) template points.

    Returns:
        (N, 2, 3) affine matrices (or (2, 3) for a single source) for ``cv2.warpAffine``.
    """
    single = source.ndim == 2
    src = np.asarray(source, np.float64).reshape(-1, target.shape[0], 2)
    dst = np.asarray(target, np.float64)
    src_mean = src.mean(axis=1, keepdims=True)
    dst_mean = dst.mean(axis=0)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    # With complex numbers a 2-D similarity is one multiplier a + ib (rotation and scale), and the
    # least-squares solution is closed-form: sum(conj(src) * dst) / sum(|src|^2).
    src_z = src_c[..., 0] + 1j * src_c[..., 1]
    dst_z = dst_c[:, 0] + 1j * dst_c[:, 1]
    denom = np.maximum((np.abs(src_z) ** 2).sum(axis=1), 1e-12)
    multiplier = (np.conj(src_z) * dst_z).sum(axis=1) / denom
    a, b = multiplier.real, multiplier.imag
    tx = dst_mean[0] - (a * src_mean[:, 0, 0] - b * src_mean[:, 0, 1])
    ty = dst_mean[1] - (b * src_mean[:, 0, 0] + a * src_mean[:, 0, 1])
    matrices = np.stack(
        [np.stack([a, -b, tx], axis=1), np.stack([b, a, ty], axis=1)], axis=1
    ).astype(np.float32)
    return matrices[0] if single else matrices


def align_faces(image: np.ndarray, landmarks: np.ndarray, template: AlignmentTemplate) -> np.ndarray:
    """Warp every face of ``image`` onto ``template``.

    Args:
        image: (H, W, 3) uint8 frame.
        landmarks: (N, 5, 2) detected landmarks in frame pixels.
        template: the encoder's template.

    Returns:
        (N, template height, template width, 3) uint8 crops, same channel order as ``image``.
    """
    width, height = template.size
    count = landmarks.shape[0]
    crops = np.empty((count, height, width, image.shape[2]), np.uint8)
    if count == 0:
        return crops
    matrices = estimate_similarity_transforms(landmarks.reshape(count, -1, 2), template.landmarks)
    for i in range(count):
        # One warp per face is the vectorised limit: each face has its own matrix, and the transform
        # estimate above is done for all faces at once.
        source, matrix = _antialiased_source(image, matrices[i], width, height)
        cv2.warpAffine(
            source,
            matrix,
            (width, height),
            dst=crops[i],
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return crops


def _antialiased_source(image: np.ndarray, matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Pre-shrink the face region with area averaging when the warp would shrink it more than 2x.

    Bilinear warping samples only 4 pixels per output pixel, so a large face squeezed into a small
    template aliases (dlib's chip extraction uses an image pyramid for the same reason).
    """
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale >= 0.5:
        return image, matrix
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float32)
    footprint = transform_points(corners, inverse)
    x0, y0 = np.maximum(np.floor(footprint.min(axis=0)) - 2, 0).astype(int)
    x1, y1 = np.minimum(np.ceil(footprint.max(axis=0)) + 2, [image.shape[1], image.shape[0]]).astype(int)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return image, matrix
    ratio = 2.0 * scale  # leaves a 2x shrink for the warp itself
    region = image[y0:y1, x0:x1]
    size = (max(1, round((x1 - x0) * ratio)), max(1, round((y1 - y0) * ratio)))
    shrunk = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
    ratios = np.array([size[0] / (x1 - x0), size[1] / (y1 - y0)])
    adjusted = np.empty_like(matrix)
    adjusted[:, :2] = matrix[:, :2] / ratios
    adjusted[:, 2] = matrix[:, :2] @ np.array([x0, y0], np.float64) + matrix[:, 2]
    return shrunk, adjusted.astype(np.float32)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (K, 2) points."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def _storage_template() -> AlignmentTemplate:
    # The gallery keeps every sample as a loose 256x256 crop with the ArcFace geometry scaled by 1.6
    # (about 56 px between the eyes) and centred: wide and sharp enough that any encoder's template
    # (dlib's 150x150 chip needs about 2.7 eye distances of context) can be re-aligned from it when
    # the gallery is re-embedded for another encoder.
    scale = 1.6
    offset = (256 - 112 * scale) / 2
    return AlignmentTemplate(ARCFACE_112.landmarks * scale + offset, (256, 256))


#: template of the face crops stored in the gallery (see ``Gallery``)
STORAGE_TEMPLATE = _storage_template()
