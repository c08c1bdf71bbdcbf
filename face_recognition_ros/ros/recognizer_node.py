"""The ``recognizer_node``: camera images in, recognised faces out, gallery services.

A thin layer over the ROS-free core: parameters come from ``node_parameters`` (table and meaning),
recognition from ``recognizer.Recognizer``, frame flow and health from ``stream``. What is left here
is ROS: declaring parameters, converting messages, publishing, and threads. The image callback only
puts the message in a one-frame slot; a worker thread takes the newest and processes it; services
run in a reentrant group on a multi-threaded executor, so they are answered while a frame is being
processed, and a live enrollment waits in its service call while the worker feeds it frames.

Only APIs present in both Humble and Jazzy are used (rclpy executors, callback groups, QoS
profiles, parameter descriptors, add_on_set_parameters_callback, throttled logging).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2DArray

from face_recognition_ros.annotate import annotate
from face_recognition_ros.errors import FaceRecognitionError, UnknownPersonError
from face_recognition_ros.image_buffers import message_to_rgb
from face_recognition_ros.msg import FaceIdentities
from face_recognition_ros.node_parameters import BY_NAME, PARAMETERS, apply_runtime_parameters, build_recognizer
from face_recognition_ros.ros.conversions import rgb_to_image_msg, to_detection_array, to_identities
from face_recognition_ros.ros.node_main import run_node
from face_recognition_ros.ros.parameters import descriptor
from face_recognition_ros.srv import EnrollPerson, ForgetPerson, ListPersons
from face_recognition_ros.stream import HealthReport, LatestFrameSlot, StreamStats

NODE_NAME = "face_recognizer"
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LOG_THROTTLE_S = 5.0
REQUEST_LOG_THROTTLE_S = 1.0
LOG_TEXT_LIMIT = 120
DIAGNOSTIC_LEVELS = (DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR)


@dataclass
class _PendingFrame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() when the callback got it


class RecognizerNode(Node):
    """Face recognition on a camera topic; see README.md, "ROS API", for the interface."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        self._recognizer = build_recognizer({spec.name: self._param(spec.name) for spec in PARAMETERS})
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._stats = StreamStats()
        self._slot: LatestFrameSlot[_PendingFrame] = LatestFrameSlot()
        self._stopping = threading.Event()

        self._identities_pub = self.create_publisher(FaceIdentities, "faces/identities", RELIABLE_QOS)
        self._detections_pub = self.create_publisher(Detection2DArray, "faces/detections", RELIABLE_QOS)
        self._debug_pub = self.create_publisher(Image, "faces/debug_image", QoSProfile(depth=2))
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)
        compressed = self._param("compressed")
        image_type, image_topic = (CompressedImage, "image/compressed") if compressed else (Image, "image")
        self._subscription = self.create_subscription(image_type, image_topic, self._on_image, qos_profile_sensor_data,
                                                      callback_group=MutuallyExclusiveCallbackGroup())
        services = ReentrantCallbackGroup()
        self.create_service(EnrollPerson, "enroll_person", self._on_enroll, callback_group=services)
        self.create_service(ForgetPerson, "forget_person", self._on_forget, callback_group=services)
        self.create_service(ListPersons, "list_persons", self._on_list, callback_group=services)
        self.create_service(Trigger, "cancel_enrollment", self._on_cancel_enrollment, callback_group=services)
        self._health = HealthReport(self._subscription.topic_name)
        self.create_timer(self._param("diagnostics_period"), self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())
        self._worker = threading.Thread(target=self._work, name="face_recognition_worker", daemon=True)
        self._worker.start()
        status = self._recognizer.status()
        self.get_logger().info(
            f"recognizing faces on {self._subscription.topic_name} with {status['encoder']} "
            f"({status['encoder_backend']} on {self._param('device')}), gallery {status['gallery']} "
            f"({len(self._recognizer.list_people())} people)")

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        # rclpy has already checked types, ranges and read-only flags. Parameters rclpy declares
        # itself (use_sim_time, which `ros2 bag play --clock` workflows set) are rclpy's business.
        values = {parameter.name: parameter.value for parameter in parameters if parameter.name in BY_NAME}
        try:
            apply_runtime_parameters(self._recognizer, values)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if values:
            self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        return SetParametersResult(successful=True)

    # -- frames ---------------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self._stats.received_frame(self._slot.put(_PendingFrame(msg, time.monotonic())))

    def _work(self) -> None:
        last_start = 0.0
        while not self._stopping.is_set():
            if not self._slot.wait(timeout=0.2):
                continue
            max_rate = self._param("max_rate_hz")
            delay = last_start + 1.0 / max_rate - time.monotonic() if max_rate > 0.0 else 0.0
            if delay > 0.0 and self._stopping.wait(delay):
                break
            frame = self._slot.take()
            if frame is None:
                continue
            last_start = time.monotonic()
            try:
                self._process(frame)
            except Exception as error:  # noqa: BLE001 - one bad frame must never stop the node
                known = isinstance(error, FaceRecognitionError)
                reason = str(error) if known else f"{type(error).__name__}: {error}"
                self.get_logger().warn(f"frame skipped: {reason}", throttle_duration_sec=LOG_THROTTLE_S)
                self._stats.rejected_frame(reason)

    def _process(self, frame: _PendingFrame) -> None:
        rgb = message_to_rgb(frame.msg)
        result = self._recognizer.process(rgb)
        header = frame.msg.header
        self._identities_pub.publish(to_identities(result, header))
        self._detections_pub.publish(to_detection_array(result, header))
        if self._param("publish_debug_image"):
            self._debug_pub.publish(rgb_to_image_msg(annotate(np.asarray(rgb), result.faces), header))
        self._stats.processed_frame(frame.received)

    # -- services -------------------------------------------------------------------------------

    def _on_enroll(self, request: EnrollPerson.Request, response: EnrollPerson.Response) -> EnrollPerson.Response:
        response.person_id = -1
        try:
            if request.images:
                images = []
                for index, msg in enumerate(request.images):
                    try:
                        images.append(message_to_rgb(msg))
                    except FaceRecognitionError as error:
                        raise type(error)(f"image {index + 1}: {error}") from None
                result = self._recognizer.enroll_images(request.name, images)
                skipped = f"; skipped {'; '.join(result.skipped)}" if result.skipped else ""
                detail = f": {result.samples_added} of {len(images)} images used{skipped}"
            else:
                result = self._recognizer.enroll_live(request.name, request.num_samples, request.timeout)
                detail = f" from {result.samples_added} live samples"
            response.success = True
            response.person_id, response.samples_added = int(result.person_id), int(result.samples_added)
            response.warnings = list(result.warnings)
            verb = "enrolled new person" if result.created else "added samples to"
            noted = f"; warning: {'; '.join(result.warnings)}" if result.warnings else ""
            response.message = f"{verb} {request.name.strip()!r} (id {result.person_id}){detail}{noted}"
        except FaceRecognitionError as error:
            response.success, response.message = False, str(error)
        except Exception as error:  # noqa: BLE001 - a failed request must not take the node down
            self.get_logger().error(f"enroll_person failed: {type(error).__name__}: {self._quote(str(error))}")
            response.success, response.message = False, f"internal error: {type(error).__name__}: {error}"
        # rclpy wants one severity per logging call site. Names stay out of the log (log_names for
        # debugging); failures are throttled, so a flood of bad requests cannot flood the log.
        if response.success:
            self.get_logger().info(f"enroll_person: {self._who(request.name, response.person_id)}, "
                                   f"{response.samples_added} samples")
        else:
            self.get_logger().warn(f"enroll_person failed: {self._quote(response.message)}",
                                   throttle_duration_sec=REQUEST_LOG_THROTTLE_S)
        return response

    def _who(self, name: str, person_id: int) -> str:
        return f"person id {person_id}" + (f" ({self._quote(name)})" if self._param("log_names") else "")

    def _quote(self, text: str) -> str:
        """Request text for the log: names only in the debug mode, and never more than a short line."""
        if not self._param("log_names"):
            text = "details in the service response"
        return text if len(text) <= LOG_TEXT_LIMIT else text[:LOG_TEXT_LIMIT] + "..."

    def _on_forget(self, request: ForgetPerson.Request, response: ForgetPerson.Response) -> ForgetPerson.Response:
        response.person_id = -1
        try:
            person, removed = self._recognizer.forget(request.name)
            response.success, response.person_id = True, int(person.id)
            response.message = f"forgot {person.name!r} (id {person.id}, {removed} samples)"
            self.get_logger().info(f"forget_person: {self._who(request.name, person.id)} forgotten")
        except UnknownPersonError as error:
            response.success, response.message = False, str(error)
            self.get_logger().info(f"forget_person: no such person ({self._quote(response.message)})",
                                   throttle_duration_sec=REQUEST_LOG_THROTTLE_S)
        except Exception as error:  # noqa: BLE001 - a failed request must not take the node down
            response.success, response.message = False, str(error)
            # Someone asked to be erased and is not: an error, also reported in /diagnostics.
            self.get_logger().error(f"forget_person failed: {type(error).__name__}: {self._quote(str(error))}",
                                    throttle_duration_sec=REQUEST_LOG_THROTTLE_S)
        return response

    def _on_cancel_enrollment(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success = self._recognizer.cancel_live_enrollment()
        response.message = "live enrollment cancelled" if response.success else "no live enrollment in progress"
        self.get_logger().info(f"cancel_enrollment: {response.message}")
        return response

    def _on_list(self, request: ListPersons.Request, response: ListPersons.Response) -> ListPersons.Response:
        try:
            people = self._recognizer.list_people()
        except Exception as error:  # noqa: BLE001 - a failed request must not take the node down
            self.get_logger().error(f"list_persons failed: {type(error).__name__}: {error}")
            people = []
        response.person_ids = [int(p.id) for p in people]
        response.names = [p.name for p in people]
        response.sample_counts = [int(p.num_samples) for p in people]
        return response

    # -- diagnostics and shutdown ----------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        status = self._recognizer.status()
        facts = {"backend": status["encoder_backend"], "detector_backend": status["detector_backend"],
                 "device": str(self._param("device")), "encoder": status["encoder"],
                 "match_threshold": status["match_threshold"], "decision": status["decision"],
                 "gallery": status["gallery"], "gallery_state": status["gallery_state"],
                 "live_enrollment": status["live_enrollment"]}
        level, message, values = self._health.make(self._stats.snapshot(), facts, problem=self._recognizer.problem,
                                                   warning=self._recognizer.warning)
        report = DiagnosticStatus(name=f"{self.get_name()}: face recognition", level=DIAGNOSTIC_LEVELS[level],
                                  message=message, hardware_id=self.get_fully_qualified_name())
        report.values = [KeyValue(key=key, value=value) for key, value in values.items()]
        array = DiagnosticArray(status=[report])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)

    def stop(self) -> None:
        """Stop the worker thread (waits for the frame in progress) and end a waiting live enrollment."""
        self._stopping.set()
        self._slot.wake()
        self._recognizer.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    return run_node(RecognizerNode, NODE_NAME, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())
