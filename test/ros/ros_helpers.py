"""A test-side ROS client of the recognizer: publishes frames, collects outputs, calls services."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray

from face_recognition_ros.msg import FaceIdentities
from face_recognition_ros.srv import EnrollPerson, ForgetPerson, ListPersons

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # test/frames.py, shared with the ROS-free tests
from frames import load_frame  # noqa: E402,F401 - the launch tests take their frames from here

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
NODE = "/face_recognizer"


def image_msg(rgb: np.ndarray, sec: int = 0, nanosec: int = 0, frame_id: str = "test_camera") -> Image:
    """A bgr8 Image, as most camera drivers publish."""
    bgr = np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    msg = Image(height=bgr.shape[0], width=bgr.shape[1], encoding="bgr8", is_bigendian=0, step=bgr.shape[1] * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id = sec, nanosec, frame_id
    msg.data = bgr.tobytes()
    return msg


class RecognizerClient:
    """Runs its own rclpy context and executor thread, so it can be used from plain test code."""

    def __init__(self, camera_topic: str = "/camera/image_raw") -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("face_recognition_test_client", context=self.context)
        self._lock = threading.Lock()
        self.identities: list[FaceIdentities] = []
        self.detections: list[Detection2DArray] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.debug_images: list[Image] = []
        self._next_stamp = 1000
        self.camera = self.node.create_publisher(Image, camera_topic, qos_profile_sensor_data)
        self.node.create_subscription(FaceIdentities, "/faces/identities", self._keep(self.identities), RELIABLE)
        self.node.create_subscription(Detection2DArray, "/faces/detections", self._keep(self.detections), RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._keep(self.diagnostics), RELIABLE)
        self.node.create_subscription(Image, "/faces/debug_image", self._keep(self.debug_images), RELIABLE)
        self.enroll_client = self.node.create_client(EnrollPerson, "/enroll_person")
        self.forget_client = self.node.create_client(ForgetPerson, "/forget_person")
        self.list_client = self.node.create_client(ListPersons, "/list_persons")
        self.cancel_client = self.node.create_client(Trigger, "/cancel_enrollment")
        self.param_client = self.node.create_client(SetParameters, f"{NODE}/set_parameters")
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def _keep(self, store: list):
        def callback(msg) -> None:
            with self._lock:
                store.append(msg)

        return callback

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    # -- waiting ------------------------------------------------------------------------------

    def wait_for_services(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for client in (self.enroll_client, self.forget_client, self.list_client, self.param_client):
            while not client.wait_for_service(timeout_sec=1.0):
                assert time.monotonic() < deadline, f"service {client.srv_name} did not come up in {timeout} s"

    def call(self, client, request, timeout: float = 60.0):
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            assert time.monotonic() < deadline, f"{client.srv_name} did not answer in {timeout} s"
            time.sleep(0.02)
        return future.result()

    def new_stamp(self) -> tuple[int, int]:
        self._next_stamp += 1
        return self._next_stamp, 424242

    def recognize(self, rgb: np.ndarray, timeout: float = 60.0, frame_id: str = "test_camera"):
        """Publish a frame (again every 2 s: best effort may lose it) until its result arrives.

        Returns the FaceIdentities and Detection2DArray carrying that frame's stamp.
        """
        sec, nanosec = self.new_stamp()
        msg = image_msg(rgb, sec, nanosec, frame_id)
        deadline = time.monotonic() + timeout
        next_publish = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_publish:
                self.camera.publish(msg)
                next_publish = time.monotonic() + 2.0
            identities = self._find(self.identities, sec, nanosec)
            detections = self._find(self.detections, sec, nanosec)
            if identities is not None and detections is not None:
                return identities, detections
            time.sleep(0.02)
        raise AssertionError(f"no result for the frame stamped {sec}.{nanosec} within {timeout} s")

    def wait_for_identities(self, sec: int, nanosec: int, timeout: float) -> FaceIdentities:
        """The FaceIdentities stamped ``sec.nanosec``, once it has arrived."""
        deadline = time.monotonic() + timeout
        while (identities := self._find(self.identities, sec, nanosec)) is None:
            assert time.monotonic() < deadline, f"no FaceIdentities stamped {sec}.{nanosec} within {timeout} s"
            time.sleep(0.01)
        return identities

    def find_debug_image(self, header) -> Image | None:
        return self._find(self.debug_images, header.stamp.sec, header.stamp.nanosec)

    def _find(self, store: list, sec: int, nanosec: int):
        with self._lock:
            for msg in reversed(store):
                if msg.header.stamp.sec == sec and msg.header.stamp.nanosec == nanosec:
                    return msg
        return None

    def next_diagnostics(self, timeout: float = 15.0):
        """The recognizer's DiagnosticStatus from the next /diagnostics message."""
        with self._lock:
            seen = len(self.diagnostics)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                fresh = self.diagnostics[seen:]
            for array in fresh:
                for status in array.status:
                    if "face_recognizer" in status.name:
                        return status
            time.sleep(0.1)
        raise AssertionError(f"no /diagnostics from the recognizer within {timeout} s")

    # -- services -----------------------------------------------------------------------------

    def enroll(self, name: str, images: list[np.ndarray] = (), num_samples: int = 0, timeout: float = 0.0,
               call_timeout: float = 120.0) -> EnrollPerson.Response:
        request = EnrollPerson.Request(name=name, num_samples=num_samples, timeout=timeout)
        request.images = [image_msg(rgb) for rgb in images]
        return self.call(self.enroll_client, request, call_timeout)

    def forget(self, name: str) -> ForgetPerson.Response:
        return self.call(self.forget_client, ForgetPerson.Request(name=name))

    def cancel_enrollment(self) -> Trigger.Response:
        return self.call(self.cancel_client, Trigger.Request())

    def list_persons(self, timeout: float = 60.0) -> ListPersons.Response:
        return self.call(self.list_client, ListPersons.Request(), timeout)

    def set_parameter(self, name: str, value):
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        return self.call(self.param_client, request).results[0]
