#!/usr/bin/env python3
"""Publish -> /faces/identities latency of the recognizer node on a real ROS 2, and its processed rate.

Publishes 640x480 frames with two faces at 30 Hz (best-effort sensor-data QoS, like a camera) for
60 s into the recognizer and matches every FaceIdentities to its frame by header stamp. Because
the node always processes the newest frame and drops the rest, latency must stay flat however far
the camera rate exceeds the processing rate: the script compares p50 of the first and the last
10 s. Run with ROS 2 and this package's workspace sourced (scripts/ros_tests.sh builds one in
build/ros_ws):

    source build/ros_ws/install/setup.bash
    python3 scripts/ros_latency_bench.py                 # starts the recognizer itself
    python3 scripts/ros_latency_bench.py --duration 20 --json
    python3 scripts/ros_latency_bench.py --no-launch     # measure a recognizer already running
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    # Like face_recognition_ros.data_paths, but from this checkout: the package imported here is
    # the workspace's installed copy, which lives elsewhere.
    return Path(os.environ.get("FACE_RECOGNITION_DATA") or REPO_ROOT.parent / "shared" / "data")


def two_face_frame(path: Path, width: int = 640, height: int = 480) -> np.ndarray:
    """The photo scaled to fit ``width`` x ``height`` and padded (BGR)."""
    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"cannot read {path}")
    scale = min(width / image.shape[1], height / image.shape[0])
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
    canvas[top:top + resized.shape[0], left:left + resized.shape[1]] = resized
    return canvas


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def start_recognizer(gallery: Path, backend: str) -> subprocess.Popen:
    command = ["ros2", "launch", "face_recognition_ros", "recognizer.launch.py", f"gallery_path:={gallery}"]
    if backend:
        command.append(f"backend:={backend}")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured publishing (default 60)")
    parser.add_argument("--rate", type=float, default=30.0, help="camera frames per second (default 30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first (default 5)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds compared at start and end (default 10)")
    parser.add_argument("--image", type=Path, default=None, help="photo with two faces (default media/two_people.jpg)")
    parser.add_argument("--camera-topic", default="/camera/image_raw")
    parser.add_argument("--backend", default="", help="recognizer backend (default: the config file's)")
    parser.add_argument("--no-launch", action="store_true", help="use a recognizer that is already running")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if args.duration <= 0 or args.rate <= 0 or args.window <= 0:
        parser.error("--duration, --rate and --window must be positive")

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from face_recognition_ros.msg import FaceIdentities
    from face_recognition_ros.srv import ListPersons

    frame = two_face_frame(args.image or data_root() / "media" / "two_people.jpg")
    recognizer = None
    gallery_dir = tempfile.TemporaryDirectory(prefix="face_bench_")
    if not args.no_launch:
        recognizer = start_recognizer(Path(gallery_dir.name) / "gallery.db", args.backend)

    rclpy.init()
    node = Node("face_recognition_latency_bench")
    published: dict[tuple[int, int], float] = {}
    received: list[tuple[float, float, int]] = []  # (publish time, latency s, faces)
    diagnostics: dict[str, str] = {}
    lock = threading.Lock()

    def on_identities(msg: FaceIdentities) -> None:
        now = time.monotonic()
        with lock:
            sent = published.get((msg.header.stamp.sec, msg.header.stamp.nanosec))
            if sent is not None:
                received.append((sent, now - sent, len(msg.faces)))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if "face_recognizer" in status.name:
                diagnostics.clear()
                diagnostics.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(FaceIdentities, "/faces/identities", on_identities,
                             QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    camera = node.create_publisher(Image, args.camera_topic, qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        ready = node.create_client(ListPersons, "/list_persons")
        if not ready.wait_for_service(timeout_sec=180.0):
            raise SystemExit("the recognizer did not come up within 180 s")

        template = Image(height=frame.shape[0], width=frame.shape[1], encoding="bgr8", step=frame.shape[1] * 3)
        template.header.frame_id = "bench_camera"
        template.data = frame.tobytes()
        period = 1.0 / args.rate
        start = time.monotonic()
        measured_from = start + args.warmup
        end = measured_from + args.duration
        index = 0
        while True:
            tick = start + index * period
            if tick >= end:
                break
            time.sleep(max(0.0, tick - time.monotonic()))
            stamp = node.get_clock().now().to_msg()
            template.header.stamp = stamp
            with lock:
                published[(stamp.sec, stamp.nanosec)] = time.monotonic()
            camera.publish(template)
            index += 1
        time.sleep(3.0)  # results of the last frames
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        if recognizer is not None:
            os.killpg(recognizer.pid, signal.SIGINT)
            try:
                recognizer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(recognizer.pid, signal.SIGKILL)
        gallery_dir.cleanup()

    with lock:
        sent_times = [t for t in published.values() if measured_from <= t < end]
        results = [(t, latency, faces) for t, latency, faces in received if measured_from <= t < end]
    latencies_ms = [latency * 1000 for _, latency, _ in results]
    first = [latency * 1000 for t, latency, _ in results if t < measured_from + args.window]
    last = [latency * 1000 for t, latency, _ in results if t >= end - args.window]
    figures = {
        "duration_s": args.duration,
        "camera_rate_hz": args.rate,
        "frame": f"{frame.shape[1]}x{frame.shape[0]}",
        "frames_published": len(sent_times),
        "frames_processed": len(results),
        "processed_rate_hz": round(len(results) / args.duration, 2),
        "faces_per_frame_mean": round(float(np.mean([f for _, _, f in results])), 2) if results else None,
        "latency_ms_p50": percentile(latencies_ms, 50),
        "latency_ms_p95": percentile(latencies_ms, 95),
        "latency_ms_p50_first_window": percentile(first, 50),
        "latency_ms_p50_last_window": percentile(last, 50),
        "window_s": args.window,
        "node_backend": diagnostics.get("backend"),
        "node_frames_dropped": int(diagnostics["frames_dropped"]) if diagnostics.get("frames_dropped") else None,
    }
    for key, value in figures.items():
        if isinstance(value, float):
            figures[key] = round(value, 1)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{figures['frames_published']} frames of {figures['frame']} (two faces) at "
              f"{args.rate:g} Hz for {args.duration:g} s; backend {figures['node_backend']}")
        print(f"processed: {figures['frames_processed']} frames = {figures['processed_rate_hz']} Hz, "
              f"{figures['faces_per_frame_mean']} faces per frame; the rest were dropped as stale")
        print(f"publish -> /faces/identities latency: p50 {figures['latency_ms_p50']} ms, "
              f"p95 {figures['latency_ms_p95']} ms")
        print(f"p50 in the first {args.window:g} s: {figures['latency_ms_p50_first_window']} ms, "
              f"in the last {args.window:g} s: {figures['latency_ms_p50_last_window']} ms (no backlog if equal)")
    return 0 if results else 1


if __name__ == "__main__":
    raise SystemExit(main())
