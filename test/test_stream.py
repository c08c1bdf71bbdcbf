"""The node's frame flow and health report, without ROS: newest frame wins, drops counted, levels."""

from __future__ import annotations

import threading

import pytest

from face_recognition_ros.stream import ERROR, OK, WARN, HealthReport, LatestFrameSlot, StreamStats


def test_a_newer_frame_replaces_one_not_yet_taken_and_counts_as_dropped():
    slot: LatestFrameSlot[int] = LatestFrameSlot()
    stats = StreamStats()
    for frame in (1, 2, 3):
        stats.received_frame(slot.put(frame))
    assert slot.take() == 3 and slot.take() is None
    snapshot = stats.snapshot()
    assert (snapshot.received, snapshot.dropped) == (3, 2)


def test_a_waiting_worker_wakes_for_a_frame_and_for_shutdown():
    slot: LatestFrameSlot[str] = LatestFrameSlot()
    assert not slot.wait(0.01)
    threading.Timer(0.05, slot.put, args=("frame",)).start()
    assert slot.wait(2.0) and slot.take() == "frame"
    slot.wake()
    assert slot.wait(0.01) and slot.take() is None


def test_rate_and_latency_come_from_the_recent_frames():
    stats = StreamStats()
    for index in range(11):
        stats.processed_frame(received_at=100.0 + index * 0.1, finished_at=100.05 + index * 0.1)
    snapshot = stats.snapshot(now=101.1)
    assert snapshot.rate_hz == pytest.approx(10.0)
    assert snapshot.latency_p50_ms == pytest.approx(50.0) and snapshot.latency_p95_ms == pytest.approx(50.0)
    assert stats.snapshot(now=200.0).rate_hz == 0.0  # nothing in the last seconds


def test_health_warns_before_frames_and_after_rejections_and_errors_on_a_problem():
    stats, report = StreamStats(), HealthReport("/camera/image_raw")
    level, message, values = report.make(stats.snapshot(), {"backend": "onnxruntime"})
    assert level == WARN and "/camera/image_raw" in message and values["backend"] == "onnxruntime"
    stats.received_frame(False)
    stats.processed_frame(1.0, 1.02)
    assert report.make(stats.snapshot(), {})[0] == OK
    stats.rejected_frame("truncated image")
    level, message, _ = report.make(stats.snapshot(), {})
    assert level == WARN and "truncated image" in message
    assert report.make(stats.snapshot(), {})[0] == OK  # only new rejections warn
    assert report.make(stats.snapshot(), {}, problem="gallery forget failed")[:2] == (ERROR, "gallery forget failed")
