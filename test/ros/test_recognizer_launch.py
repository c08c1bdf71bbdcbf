"""The real recognizer.launch.py on the real ROS 2, fed real photos with best-effort sensor-data QoS.

One launch for the whole module (loading the models dominates), so the test methods run in
order (unittest sorts them by name) and each builds on the gallery state the previous left.
"""

from __future__ import annotations

import tempfile
import threading
import time
import unittest
from pathlib import Path

import pytest

from ros_env import require_ros

require_ros()

import dlib  # noqa: E402
import launch_testing  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from face_recognition_ros.data_paths import data_root  # noqa: E402
from ros_helpers import RecognizerClient, load_frame  # noqa: E402

KNN = data_root() / "media" / "knn_examples"
STARTUP_TIMEOUT_S = 180.0  # model loading on a busy 2-core CI machine
FRAME_TIMEOUT_S = 60.0
# dlib_resnet cosine similarities on these photos: same person 0.95-0.97, different people
# 0.76-0.87. Set explicitly so that the checks here test the ROS layer, not the encoder's calibration.
MATCH_THRESHOLD = 0.92

if not KNN.is_dir():
    pytest.skip(f"knn_examples not found under {data_root()}", allow_module_level=True)


def _frame(relative: str) -> np.ndarray:
    return load_frame(KNN / relative)


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _reference_boxes(rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Faces found by an independent detector (dlib's HOG), to check the published boxes against."""
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in dlib.get_frontal_face_detector()(rgb, 1)]


def _names(identities) -> list[str]:
    return sorted(face.name for face in identities.faces)


def _describe(identities) -> str:
    return "; ".join(f"{face.name or 'unknown'} sim {face.similarity:.3f} margin {face.margin:.3f} "
                     f"track {face.track_id}" for face in identities.faces) or "no face"


@pytest.mark.launch_test
def generate_test_description():
    gallery = Path(tempfile.mkdtemp(prefix="face_recognition_ros_test_")) / "gallery.db"
    launch_file = Path(get_package_share_directory("face_recognition_ros")) / "launch" / "recognizer.launch.py"
    recognizer = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(launch_file)),
        launch_arguments={"gallery_path": str(gallery)}.items(),
    )
    return LaunchDescription([recognizer, launch_testing.actions.ReadyToTest()]), {"gallery": gallery}


class TestRecognizer(unittest.TestCase):
    client: RecognizerClient

    @classmethod
    def setUpClass(cls) -> None:
        cls.client = RecognizerClient()
        cls.client.wait_for_services(STARTUP_TIMEOUT_S)
        assert cls.client.set_parameter("match_threshold", MATCH_THRESHOLD).successful
        # The two photos of the live-enrolled person embed at 0.97: not duplicates for this test.
        assert cls.client.set_parameter("enroll_duplicate_similarity", 0.99).successful

    @classmethod
    def tearDownClass(cls) -> None:
        cls.client.close()

    def test_01_enroll_with_images(self, gallery):
        for name, files in (("Barack Obama", ["obama.jpg", "obama2.jpg"]), ("Joe Biden", ["biden.jpg", "biden2.jpg"])):
            folder = name.split()[-1].lower()
            response = self.client.enroll(name, [_frame(f"train/{folder}/{f}") for f in files])
            self.assertTrue(response.success, response.message)
            self.assertEqual(response.samples_added, 2, response.message)
            self.assertGreaterEqual(response.person_id, 0)
        self.assertTrue(gallery.exists(), "the gallery file given by the launch argument was not created")

        listed = self.client.list_persons()
        self.assertEqual(sorted(listed.names), ["Barack Obama", "Joe Biden"])
        self.assertEqual(list(listed.sample_counts), [2, 2])

    def test_02_enroll_rejects_bad_requests(self):
        blank = np.full((240, 320, 3), 127, np.uint8)
        no_face = self.client.enroll("Nobody", [blank])
        self.assertFalse(no_face.success)
        self.assertIn("no face", no_face.message.lower())
        bad_name = self.client.enroll("   ", [_frame("train/obama/obama.jpg")])
        self.assertFalse(bad_name.success)
        self.assertIn("name", bad_name.message.lower())
        for _ in range(20):  # a flood of over-long names: refused, and not written out in the log
            long_name = self.client.enroll("Q" * 10_000, [_frame("train/obama/obama.jpg")])
            self.assertFalse(long_name.success)
        self.assertIn("at most 64 characters", long_name.message)
        self.assertEqual(sorted(self.client.list_persons().names), ["Barack Obama", "Joe Biden"])

    def test_03_identities_carry_names_boxes_and_header(self):
        # Cropped to the two adults: the girl at the right edge is not in the gallery.
        rgb = np.ascontiguousarray(_frame("test/obama_and_biden.jpg")[:, :500])
        # A track is named once track_min_votes (2) of its frames agree: the first frame primes it.
        self.client.recognize(rgb, FRAME_TIMEOUT_S, frame_id="front_camera")
        identities, detections = self.client.recognize(rgb, FRAME_TIMEOUT_S, frame_id="front_camera")
        self.assertEqual(identities.header.frame_id, "front_camera")
        self.assertEqual(detections.header, identities.header)
        self.assertEqual(_names(identities), ["Barack Obama", "Joe Biden"], _describe(identities))
        self.assertTrue(all(face.is_known and face.person_id >= 0 for face in identities.faces))
        self.assertEqual(sorted(d.results[0].hypothesis.class_id for d in detections.detections),
                         ["Barack Obama", "Joe Biden"])

        reference = _reference_boxes(rgb)
        self.assertEqual(len(reference), 2, "the reference detector should see both faces")
        for face in identities.faces:
            box = (face.x_min, face.y_min, face.x_max, face.y_max)
            self.assertGreater(max(_iou(box, ref) for ref in reference), 0.3, f"box {box} is not on a face")
            landmarks = np.asarray(face.landmarks).reshape(5, 2)
            self.assertTrue(np.all((landmarks >= [box[0], box[1]]) & (landmarks <= [box[2], box[3]])))
        for detection, face in zip(detections.detections, identities.faces):
            self.assertAlmostEqual(detection.bbox.center.position.x, (face.x_min + face.x_max) / 2, places=3)
            self.assertAlmostEqual(detection.bbox.size_y, face.y_max - face.y_min, places=3)
            self.assertAlmostEqual(detection.results[0].hypothesis.score, face.similarity, places=5)

    def test_04_never_enrolled_person_is_unknown(self):
        identities, detections = self.client.recognize(_frame("test/johnsnow_test1.jpg"), FRAME_TIMEOUT_S)
        self.assertEqual(len(identities.faces), 1)
        face = identities.faces[0]
        self.assertFalse(face.is_known)
        self.assertEqual((face.name, face.person_id), ("", -1))
        self.assertEqual(detections.detections[0].results[0].hypothesis.class_id, "unknown")

    def test_05_frame_without_faces_is_published_empty(self):
        identities, detections = self.client.recognize(np.full((240, 320, 3), 90, np.uint8), FRAME_TIMEOUT_S)
        self.assertEqual(len(identities.faces), 0)
        self.assertEqual(len(detections.detections), 0)

    def test_06_live_enrollment_from_streamed_frames(self):
        # Two different photos, each also mirrored: mirror images embed as near-duplicates, which
        # live enrollment must skip, so exactly the two photos become samples.
        photos = [_frame("test/alex_lacamoire1.jpg"), _frame("train/alex_lacamoire/img1.jpg")]
        variants = [photos[0], np.ascontiguousarray(photos[0][:, ::-1]), photos[1], np.ascontiguousarray(photos[1][:, ::-1])]
        stop = threading.Event()

        def stream() -> None:
            index = 0
            while not stop.is_set():
                self.client.camera.publish(_image(variants[index % len(variants)], self.client))
                index += 1
                stop.wait(0.25)

        streamer = threading.Thread(target=stream, daemon=True)
        result: dict = {}
        enroller = threading.Thread(
            target=lambda: result.update(response=self.client.enroll(
                "Alex Lacamoire", num_samples=2, timeout=90.0, call_timeout=150.0)),
            daemon=True)
        enroller.start()
        try:
            # No frames yet, so the enrollment is still waiting; the node must answer other
            # services meanwhile (the waiting request blocks one executor thread, not the node).
            time.sleep(1.0)
            listed = self.client.list_persons(timeout=30.0)
            self.assertNotIn("Alex Lacamoire", listed.names)
            self.assertTrue(enroller.is_alive(), f"enrollment ended without frames: {result}")
            streamer.start()
            enroller.join(150.0)
        finally:
            stop.set()
            if streamer.is_alive():
                streamer.join(5.0)
        response = result["response"]
        self.assertTrue(response.success, response.message)
        self.assertEqual(response.samples_added, 2)

        self._assert_becomes_names(photos[0], ["Alex Lacamoire"])

    def test_07_live_enrollment_fails_cleanly_without_a_face(self):
        stop = threading.Event()
        blank = np.full((240, 320, 3), 60, np.uint8)

        def stream() -> None:
            while not stop.is_set():
                self.client.camera.publish(_image(blank, self.client))
                stop.wait(0.3)

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        try:
            started = time.monotonic()
            response = self.client.enroll("Ghost", num_samples=2, timeout=4.0, call_timeout=60.0)
        finally:
            stop.set()
            streamer.join(5.0)
        self.assertFalse(response.success)
        self.assertIn("face", response.message.lower())
        self.assertLess(time.monotonic() - started, 40.0)
        self.assertNotIn("Ghost", self.client.list_persons().names)

    def test_07b_live_enrollment_is_bounded_and_can_be_cancelled(self):
        for timeout in (float("inf"), 1e9):
            started = time.monotonic()
            response = self.client.enroll("Patient Person", num_samples=1, timeout=timeout, call_timeout=30.0)
            self.assertFalse(response.success)
            self.assertIn("timeout", response.message)
            self.assertLess(time.monotonic() - started, 10.0, "an unbounded timeout must be refused at once")
        self.assertFalse(self.client.cancel_enrollment().success, "nothing to cancel yet")
        result: dict = {}
        enroller = threading.Thread(target=lambda: result.update(response=self.client.enroll(
            "Cancelled Person", num_samples=2, timeout=60.0, call_timeout=90.0)), daemon=True)
        enroller.start()
        time.sleep(1.0)
        self.assertTrue(self.client.cancel_enrollment().success)
        enroller.join(30.0)
        self.assertFalse(enroller.is_alive(), "the cancelled enrollment did not end")
        self.assertFalse(result["response"].success)
        self.assertIn("cancelled", result["response"].message)
        self.assertNotIn("Cancelled Person", self.client.list_persons().names)

    def test_08_threshold_parameter_takes_effect(self):
        obama = _frame("test/obama1.jpg")
        self._assert_becomes_names(obama, ["Barack Obama"])
        self.assertTrue(self.client.set_parameter("match_threshold", 0.99).successful)
        self.assertTrue(self._becomes(obama, lambda ids: ids.faces and not ids.faces[0].is_known),
                        "a 0.99 threshold should make the face unknown")
        rejected = self.client.set_parameter("match_threshold", 1.5)
        self.assertFalse(rejected.successful, "out-of-range threshold accepted")
        self.assertTrue(self.client.set_parameter("match_threshold", 0.0).successful)
        reset = _diagnostic_values(self.client.next_diagnostics())
        self.assertIn("target false accepts 1.00%", reset["decision"], "0.0 should restore the open-set decision")
        self.assertLess(float(reset["match_threshold"]), 0.99)
        self.assertTrue(self.client.set_parameter("match_threshold", MATCH_THRESHOLD).successful)
        self._assert_becomes_names(obama, ["Barack Obama"])

    def test_08b_use_sim_time_can_be_set_at_run_time(self):
        # `ros2 bag play --clock` workflows switch it on a running node; rclpy owns this parameter.
        result = self.client.set_parameter("use_sim_time", True)
        self.assertTrue(result.successful, f"use_sim_time refused: {result.reason}")
        self.assertTrue(self.client.set_parameter("use_sim_time", False).successful)
        obama = _frame("test/obama1.jpg")
        self._assert_becomes_names(obama, ["Barack Obama"])

    def _becomes(self, rgb: np.ndarray, condition, frames: int = 10) -> bool:
        """Whether ``condition`` holds within ``frames`` frames of ``rgb``.

        A track's published identity is a vote over its recent frames, so after a gallery or
        threshold change the new answer appears after a few frames, not necessarily the first.
        """
        return any(condition(self.client.recognize(rgb, FRAME_TIMEOUT_S)[0]) for _ in range(frames))

    def _assert_becomes_names(self, rgb: np.ndarray, names: list[str], frames: int = 10) -> None:
        seen = []
        for _ in range(frames):
            identities = self.client.recognize(rgb, FRAME_TIMEOUT_S)[0]
            if _names(identities) == names:
                return
            seen.append(_describe(identities))
        self.fail(f"expected {names} within {frames} frames, got: {' | '.join(seen)}")

    def test_09_forget_and_list(self):
        forgotten = self.client.forget("Joe Biden")
        self.assertTrue(forgotten.success, forgotten.message)
        self.assertGreaterEqual(forgotten.person_id, 0)
        self.assertFalse(self.client.forget("Nobody Known").success)
        self.assertEqual(sorted(self.client.list_persons().names), ["Alex Lacamoire", "Barack Obama"])
        identities, _ = self.client.recognize(_frame("train/biden/biden2.jpg"), FRAME_TIMEOUT_S)
        self.assertEqual(len(identities.faces), 1)
        self.assertFalse(identities.faces[0].is_known, f"a forgotten person was recognised: {_describe(identities)}")

    def test_10_garbage_frames_do_not_stop_the_node(self):
        before = _diagnostic_values(self.client.next_diagnostics())
        wrong_encoding = Image(height=4, width=4, encoding="no_such_encoding", step=12)
        wrong_encoding.data = bytes(48)
        truncated = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
        truncated.data = bytes(1000)
        padded_lie = Image(height=10, width=10, encoding="rgb8", step=10)  # step shorter than a row
        padded_lie.data = bytes(100)
        for msg in (wrong_encoding, truncated, padded_lie):
            for _ in range(3):
                self.client.camera.publish(msg)
                time.sleep(0.3)
        self._assert_becomes_names(_frame("test/obama1.jpg"), ["Barack Obama"])
        after = _diagnostic_values(self.client.next_diagnostics())
        self.assertGreater(int(after["frames_rejected"]), int(before["frames_rejected"]))

    def test_11_diagnostics_report_rate_latency_drops_and_backend(self):
        # A back-to-back burst of large frames, faster than any CPU can run detection on them: the
        # newest frame wins and the rest are dropped. No sleeps, so a fast CI machine cannot keep up.
        rgb = _frame("test/kit_with_rose.jpg")
        large = np.ascontiguousarray(rgb.repeat(2, axis=0).repeat(2, axis=1))
        burst = [_image(large, self.client) for _ in range(30)]
        for _ in range(3):  # best-effort transport may lose part of one burst; three cannot all fit
            for msg in burst:
                self.client.camera.publish(msg)
            self.client.recognize(rgb, FRAME_TIMEOUT_S)
            values = _diagnostic_values(self.client.next_diagnostics())
            if int(values["frames_dropped"]) > 0:
                break
        self.assertIn(values["backend"], ("onnxruntime", "torch"))  # auto on a CPU
        self.assertGreater(float(values["processing_rate_hz"]), 0.0)
        self.assertGreater(float(values["latency_ms_p50"]), 0.0)
        self.assertGreater(int(values["frames_processed"]), 10)
        self.assertGreater(int(values["frames_dropped"]), 0)
        self.assertLessEqual(int(values["frames_processed"]) + int(values["frames_dropped"]),
                             int(values["frames_received"]))

    def test_12_debug_image_is_published_when_enabled(self):
        rgb = _frame("test/obama1.jpg")
        identities, _ = self.client.recognize(rgb, FRAME_TIMEOUT_S)
        self.assertIsNone(self.client.find_debug_image(identities.header), "debug image is off by default")
        self.assertTrue(self.client.set_parameter("publish_debug_image", True).successful)
        identities, _ = self.client.recognize(rgb, FRAME_TIMEOUT_S)
        deadline = time.monotonic() + 10.0
        while self.client.find_debug_image(identities.header) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        debug = self.client.find_debug_image(identities.header)
        self.assertIsNotNone(debug, "no debug image with the frame's header")
        self.assertEqual((debug.width, debug.height, debug.encoding), (rgb.shape[1], rgb.shape[0], "rgb8"))
        drawn = np.frombuffer(bytes(debug.data), np.uint8).reshape(rgb.shape)
        self.assertGreater(np.count_nonzero(np.any(drawn != rgb, axis=2)), 100, "nothing was drawn on the frame")


def _image(rgb: np.ndarray, client: RecognizerClient) -> Image:
    from ros_helpers import image_msg

    return image_msg(rgb, *client.new_stamp())


def _diagnostic_values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):
    def test_sigint_shuts_down_cleanly(self, proc_info, proc_output):
        # launch stops the node with SIGINT; it must exit 0 without a traceback.
        launch_testing.asserts.assertExitCodes(proc_info)
        text = "".join(output.text.decode(errors="replace") for output in proc_output)
        self.assertNotIn("Traceback", text)
        self.assertIn("recognizing faces on /camera/image_raw", text)
        self.assertNotIn("Q" * 100, text)
        self.assertLess(max(len(line) for line in text.splitlines()), 600, "log lines must stay short")
        # Names are personal data: the log speaks of person ids (log_names is off by default).
        for name in ("Barack Obama", "Joe Biden", "Alex Lacamoire", "Cancelled Person", "Ghost"):
            self.assertNotIn(name, text)
        self.assertIn("forget_person: person id", text)
