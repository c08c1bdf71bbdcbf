"""Decoding RetinaFace head outputs into boxes and landmarks, and non-maximum suppression."""

from __future__ import annotations

import cv2
import numpy as np

# Box encoding variances of the original RetinaFace training (centre offsets, log sizes).
CENTRE_VARIANCE = 0.1
SIZE_VARIANCE = 0.2


def decode_boxes(loc: np.ndarray, centres: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """(N, 4) offsets against anchors -> (N, 4) float32 x1, y1, x2, y2 in network input pixels."""
    centre = centres + loc[:, :2] * (CENTRE_VARIANCE * sides)
    size = sides * np.exp(loc[:, 2:] * SIZE_VARIANCE)
    top_left = centre - 0.5 * size
    return np.concatenate((top_left, top_left + size), axis=1).astype(np.float32, copy=False)


def decode_landmarks(offsets: np.ndarray, centres: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """(N, 10) offsets against anchors -> (N, 5, 2) float32 x, y in network input pixels."""
    points = centres[:, None, :] + offsets.reshape(-1, 5, 2) * (CENTRE_VARIANCE * sides)[:, None, :]
    return points.astype(np.float32, copy=False)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes (x1, y1, x2, y2) kept by greedy NMS, highest score first."""
    if len(boxes) == 0:
        return np.zeros(0, np.intp)
    xywh = np.concatenate((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), axis=1).astype(np.float64)
    # score_threshold 0: the caller has already thresholded; OpenCV's IoU has no +1 pixel term for floats.
    keep = cv2.dnn.NMSBoxes(xywh, scores.astype(np.float64), 0.0, float(iou_threshold))
    return np.asarray(keep, np.intp).reshape(-1)
