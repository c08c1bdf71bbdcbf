"""Frame benchmark: deterministic frames with the requested faces, and a report with ratios."""

from __future__ import annotations

import pytest

from face_recognition_ros.evaluation import bench


@pytest.fixture(scope="module")
def faces(lfw_dir):
    return bench.lfw_faces(lfw_dir, 10)


@pytest.mark.parametrize("count", [1, 5, 10])
def test_composed_frames_hold_exactly_the_requested_faces(count, faces):
    from face_recognition_ros.detection import RetinaFaceDetector

    frame = bench.compose_frame(faces[:count])
    assert frame.shape == (480, 640, 3)
    assert len(RetinaFaceDetector().detect(frame)) == count


def test_frames_are_deterministic(lfw_dir):
    first = bench.benchmark_frames((1, 5), lfw_dir)
    assert first == bench.benchmark_frames((1, 5), lfw_dir)
    assert first[1] != first[5]


def test_report_has_stages_fps_and_the_ratio_to_face_recognition(lfw_dir):
    pytest.importorskip("face_recognition", reason="pip install --no-deps face_recognition (with dlib, Pillow, Click)")
    report = bench.bench_frames(faces_per_frame=(1,), backends=("onnxruntime",), repeat=1, warmup=0, lfw_dir=lfw_dir)
    rows = report["frames"]["1"]
    ours, theirs = rows["onnxruntime"], rows["face_recognition"]
    assert set(ours["stages_ms"]) == set(bench.STAGES)
    assert ours["faces_found"] == theirs["faces_found"] == 1
    assert ours["fps_ratio_vs_face_recognition"] == pytest.approx(ours["fps"] / theirs["fps"], rel=0.01)
    assert "onnxruntime" in bench.format_report(report)


def test_bad_counts_are_refused():
    with pytest.raises(bench.EvaluationError):
        bench.bench_frames(faces_per_frame=(0,), repeat=1)
