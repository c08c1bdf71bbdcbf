"""The ``recognizer_node``: camera images in, recognised faces out, gallery services.

Threads: the image subscription callback only drops the message into a one-slot buffer (a newer
frame replaces an unprocessed one, which counts as dropped), and a dedicated worker thread always
takes the newest frame, so there is never a backlog whatever the camera rate. Services run in a
reentrant callback group on a multi-threaded executor, so they are answered while a frame is
being processed; the pipeline itself is used under one lock because the models and the gallery
cache are not thread-safe. A live enrollment request waits on an Event while the worker feeds it
frames.

Only APIs present in both Humble and Jazzy are used (rclpy executors, callback groups, QoS
profiles, parameter descriptors, add_on_set_parameters_callback, throttled logging).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from face_recognition_ros.annotate import annotate
from face_recognition_ros.enrollment import LiveEnrollment
from face_recognition_ros.errors import FaceRecognitionError
from face_recognition_ros.msg import FaceIdentities
from face_recognition_ros.pipeline import FaceBatch, PipelineConfig, RecognitionPipeline
from face_recognition_ros.ros.conversions import image_msg_to_rgb, rgb_to_image_msg, to_detection_array, to_identities
from face_recognition_ros.node_parameters import BY_NAME, PARAMETERS
from face_recognition_ros.ros.parameters import descriptor
from face_recognition_ros.ros.shutdown import ignore_further_interrupts
from face_recognition_ros.srv import EnrollPerson, ForgetPerson, ListPersons
from face_recognition_ros.tracking import FaceTracker
from face_recognition_ros.types import FrameResult

NODE_NAME = "face_recognizer"
RELIABLE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LOG_THROTTLE_S = 5.0
LATENCY_WINDOW = 200  # frames kept for the latency figures in /diagnostics
ENROLL_GRACE_S = 1.0  # the wait's slack beyond the enrollment timeout


@dataclass
class _PendingFrame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() when the callback got it


def _report_enrollment(response: EnrollPerson.Response, result, name: str, detail: str) -> None:
    """Fill a successful EnrollPerson response; ``detail`` says where the samples came from."""
    response.success = True
    response.person_id = int(result.person_id)
    response.samples_added = int(result.samples_added)
    verb = "enrolled new person" if result.created else "added samples to"
    response.message = f"{verb} {name!r} (id {result.person_id}){detail}"


class _Stats:
    """Counters shared by the callback, the worker and the diagnostics timer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.rejected = 0
        self.latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.processed_times: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.last_error = ""


class RecognizerNode(Node):
    """Face recognition on a camera topic; see README.md, "ROS API", for the interface."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, descriptor(spec))
        self._pipe = RecognitionPipeline(self._pipeline_config())
        self._default_threshold = float(self._pipe.encoder.default_threshold)
        self._votes_stale = False
        self._votes_revision = self._pipe.gallery_revision
        self._apply_dynamic({name: self.get_parameter(name).value for name in BY_NAME if BY_NAME[name].dynamic})
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._pipe_lock = threading.Lock()
        self._tracker = FaceTracker(
            iou_threshold=self._param("track_iou_threshold"),
            max_missed=self._param("track_max_missed"),
            vote_window=self._param("track_vote_window"),
        )
        self._stats = _Stats()
        self._slot: _PendingFrame | None = None
        self._slot_lock = threading.Lock()
        self._frame_ready = threading.Event()
        self._stopping = threading.Event()
        self._enrollment: LiveEnrollment | None = None
        self._enrollment_finished = threading.Event()
        self._enrollment_lock = threading.Lock()  # one live enrollment at a time

        self._identities_pub = self.create_publisher(FaceIdentities, "faces/identities", RELIABLE_QOS)
        self._detections_pub = self.create_publisher(Detection2DArray, "faces/detections", RELIABLE_QOS)
        self._debug_pub = self.create_publisher(Image, "faces/debug_image", QoSProfile(depth=2))
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE_QOS)

        image_group = MutuallyExclusiveCallbackGroup()
        if self._param("compressed"):
            self._subscription = self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, qos_profile_sensor_data,
                callback_group=image_group)
        else:
            self._subscription = self.create_subscription(
                Image, "image", self._on_image, qos_profile_sensor_data, callback_group=image_group)

        services = ReentrantCallbackGroup()
        self.create_service(EnrollPerson, "enroll_person", self._on_enroll, callback_group=services)
        self.create_service(ForgetPerson, "forget_person", self._on_forget, callback_group=services)
        self.create_service(ListPersons, "list_persons", self._on_list, callback_group=services)
        self._diagnostics_timer = self.create_timer(
            self._param("diagnostics_period"), self._publish_diagnostics,
            callback_group=MutuallyExclusiveCallbackGroup())
        self._rejected_at_last_diagnostics = 0

        self._worker = threading.Thread(target=self._work, name="face_recognition_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"recognizing faces on {self._subscription.topic_name} with {self._pipe.encoder.identity} "
            f"({self._pipe.backend} on {self._param('device')}), gallery {self._pipe.gallery.path} "
            f"({len(self._pipe.gallery.list_people())} people)")

    # -- parameters -----------------------------------------------------------------------------

    def _param(self, name: str):
        return self.get_parameter(name).value

    def _pipeline_config(self) -> PipelineConfig:
        threshold = self._param("match_threshold")
        margin = self._param("match_margin")
        return PipelineConfig(
            encoder=self._param("encoder"),
            encoder_weights=self._param("encoder_weights") or None,
            backend=self._param("backend"),
            device=self._param("device"),
            precision=self._param("precision"),
            engine_cache_dir=self._param("engine_cache_dir") or None,
            force_engine_update=self._param("force_engine_update"),
            detector_score_threshold=self._param("detector_score_threshold"),
            min_face_size=self._param("min_face_size"),
            detector_max_size=self._param("detector_max_size"),
            max_faces=self._param("max_faces"),
            match_threshold=threshold if threshold > 0.0 else None,
            match_margin=margin if margin >= 0.0 else None,
            gallery_path=self._param("gallery_path") or None,
        )

    def _apply_dynamic(self, values: dict) -> None:
        """Push run-time parameters into the pipeline (the rest are read where they are used)."""
        if "match_threshold" in values or "match_margin" in values:
            self._votes_stale = True
        if "match_threshold" in values:
            threshold = float(values["match_threshold"])
            self._pipe.matcher.threshold = threshold if threshold > 0.0 else self._default_threshold
        if "match_margin" in values:
            margin = float(values["match_margin"])
            self._pipe.matcher.margin = margin if margin >= 0.0 else self._pipe.encoder.default_margin
        if "detector_score_threshold" in values:
            self._pipe.detector.score_threshold = float(values["detector_score_threshold"])
        if "min_face_size" in values:
            self._pipe.detector.min_face_size = float(values["min_face_size"])
        if "max_faces" in values:
            self._pipe.detector.max_faces = int(values["max_faces"])

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        # rclpy has already checked types, ranges and read-only flags; what is left is to apply the
        # values, all or none.
        # Parameters rclpy declares itself (use_sim_time, which `ros2 bag play --clock` workflows set
        # at run time) are rclpy's business: accept them untouched.
        values = {parameter.name: parameter.value for parameter in parameters if parameter.name in BY_NAME}
        try:
            self._apply_dynamic(values)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if values:
            self.get_logger().info("parameters changed: " + ", ".join(f"{k}={v}" for k, v in values.items()))
        return SetParametersResult(successful=True)

    # -- frames ---------------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage) -> None:
        frame = _PendingFrame(msg, time.monotonic())
        with self._slot_lock:
            replaced = self._slot is not None
            self._slot = frame
        with self._stats.lock:
            self._stats.received += 1
            self._stats.dropped += int(replaced)
        self._frame_ready.set()

    def _take_frame(self) -> _PendingFrame | None:
        with self._slot_lock:
            frame, self._slot = self._slot, None
            self._frame_ready.clear()
        return frame

    def _work(self) -> None:
        last_start = 0.0
        while not self._stopping.is_set():
            if not self._frame_ready.wait(timeout=0.2):
                continue
            max_rate = self._param("max_rate_hz")
            if max_rate > 0.0:
                delay = last_start + 1.0 / max_rate - time.monotonic()
                if delay > 0.0 and self._stopping.wait(delay):
                    break
            frame = self._take_frame()
            if frame is None:
                continue
            last_start = time.monotonic()
            try:
                self._process(frame)
            except Exception as error:  # noqa: BLE001 - one bad frame must never stop the node
                self.get_logger().error(f"frame skipped: {type(error).__name__}: {error}",
                                        throttle_duration_sec=LOG_THROTTLE_S)
                with self._stats.lock:
                    self._stats.rejected += 1
                    self._stats.last_error = f"{type(error).__name__}: {error}"

    def _process(self, frame: _PendingFrame) -> None:
        try:
            rgb = image_msg_to_rgb(frame.msg)
        except FaceRecognitionError as error:
            self.get_logger().warn(f"skipping a bad image: {error}", throttle_duration_sec=LOG_THROTTLE_S)
            with self._stats.lock:
                self._stats.rejected += 1
                self._stats.last_error = str(error)
            return
        enrollment = self._enrollment
        with self._pipe_lock:
            batch = self._pipe.analyze(rgb, storage_crops=enrollment is not None)
            matches = self._pipe.match(batch.embeddings)
            if self._pipe.gallery_revision != self._votes_revision or self._votes_stale:
                # New answers (gallery edited here or elsewhere, threshold changed): votes cast
                # under the old ones must not outvote them.
                self._votes_revision = self._pipe.gallery_revision
                self._votes_stale = False
                self._tracker.clear_votes()
        faces = batch.results(matches)
        self._tracker.apply(faces)
        result = FrameResult(
            faces=faces,
            timings_ms=batch.timings_ms,
            image_size=(rgb.shape[1], rgb.shape[0]),
        )
        header = frame.msg.header
        self._identities_pub.publish(to_identities(result, header))
        self._detections_pub.publish(to_detection_array(result, header))
        if self._param("publish_debug_image"):
            self._debug_pub.publish(rgb_to_image_msg(annotate(np.asarray(rgb), result.faces), header))
        done = time.monotonic()
        with self._stats.lock:
            self._stats.processed += 1
            self._stats.latencies_ms.append((done - frame.received) * 1000.0)
            self._stats.processed_times.append(done)
        if enrollment is not None:
            self._feed_enrollment(enrollment, batch, done)

    def _feed_enrollment(self, enrollment: LiveEnrollment, batch: FaceBatch, now: float) -> None:
        status = enrollment.offer(batch, now)
        self.get_logger().info(
            f"live enrollment: {status} ({enrollment.num_accepted}/{enrollment.num_samples} samples)",
            throttle_duration_sec=1.0)
        if enrollment.done or enrollment.failure(now) is not None:
            self._enrollment_finished.set()

    # -- services -------------------------------------------------------------------------------

    def _on_enroll(self, request: EnrollPerson.Request, response: EnrollPerson.Response) -> EnrollPerson.Response:
        response.person_id = -1
        try:
            if request.images:
                self._enroll_from_images(request, response)
            else:
                self._enroll_live(request, response)
        except FaceRecognitionError as error:
            response.success, response.message = False, str(error)
        except Exception as error:  # noqa: BLE001 - a failed request must not take the node down
            self.get_logger().error(f"enroll_person failed: {type(error).__name__}: {error}")
            response.success, response.message = False, f"internal error: {type(error).__name__}: {error}"
        # rclpy wants one severity per logging call site
        if response.success:
            self.get_logger().info(f"enroll_person {request.name!r}: {response.message}")
        else:
            self.get_logger().warn(f"enroll_person {request.name!r} failed: {response.message}")
        return response

    def _enroll_from_images(self, request: EnrollPerson.Request, response: EnrollPerson.Response) -> None:
        images = []
        for index, msg in enumerate(request.images):
            try:
                images.append(image_msg_to_rgb(msg))
            except FaceRecognitionError as error:
                raise type(error)(f"image {index + 1}: {error}") from None
        with self._pipe_lock:
            result = self._pipe.enroll_images(request.name, images)
        skipped = f"; skipped {'; '.join(result.skipped)}" if result.skipped else ""
        _report_enrollment(response, result, request.name.strip(),
                           f": {result.samples_added} of {len(images)} images used{skipped}")

    def _enroll_live(self, request: EnrollPerson.Request, response: EnrollPerson.Response) -> None:
        from face_recognition_ros.gallery import validate_name

        name = validate_name(request.name)
        num_samples = int(request.num_samples) or self._param("enroll_num_samples")
        timeout = float(request.timeout) if request.timeout > 0.0 else self._param("enroll_timeout")
        if not self._enrollment_lock.acquire(blocking=False):
            response.success, response.message = False, "another live enrollment is in progress"
            return
        try:
            enrollment = LiveEnrollment(
                num_samples=num_samples,
                timeout_s=timeout,
                min_face_size=self._param("enroll_min_face_size"),
                min_sharpness=self._param("enroll_min_sharpness"),
                duplicate_similarity=self._param("enroll_duplicate_similarity"),
                started_at=time.monotonic(),
            )
            frames_before = self._stats.processed
            self._enrollment_finished.clear()
            self._enrollment = enrollment
            try:
                # Only this executor thread waits; the frame worker feeds the enrollment.
                self._enrollment_finished.wait(timeout + ENROLL_GRACE_S)
            finally:
                self._enrollment = None
            if not enrollment.done:
                failure = enrollment.failure(time.monotonic()) or f"timed out after {timeout:g} s"
                if self._stats.processed == frames_before:
                    failure += f"; no camera frames arrived on {self._subscription.topic_name}"
                response.success, response.message = False, f"live enrollment failed: {failure}"
                return
            crops, embeddings = enrollment.samples
            with self._pipe_lock:
                result = self._pipe.enroll_batch(name, crops, embeddings)
        finally:
            self._enrollment_lock.release()
        _report_enrollment(response, result, name, f" from {result.samples_added} live samples")

    def _on_forget(self, request: ForgetPerson.Request, response: ForgetPerson.Response) -> ForgetPerson.Response:
        response.person_id = -1
        try:
            with self._pipe_lock:
                person = self._pipe.gallery.get_person(request.name.strip())
                removed = self._pipe.gallery.forget(person.id)
                self._pipe.refresh_gallery()
            response.success, response.person_id = True, int(person.id)
            response.message = f"forgot {person.name!r} (id {person.id}, {removed} samples)"
        except FaceRecognitionError as error:
            response.success, response.message = False, str(error)
        except Exception as error:  # noqa: BLE001 - a failed request must not take the node down
            response.success, response.message = False, f"internal error: {type(error).__name__}: {error}"
        self.get_logger().info(f"forget_person {request.name!r}: {response.message}")
        return response

    def _on_list(self, request: ListPersons.Request, response: ListPersons.Response) -> ListPersons.Response:
        try:
            people = self._pipe.gallery.list_people()  # the gallery is safe to read from any thread
        except Exception as error:  # noqa: BLE001 - a failed request must not take the node down
            self.get_logger().error(f"list_persons failed: {type(error).__name__}: {error}")
            people = []
        response.person_ids = [int(p.id) for p in people]
        response.names = [p.name for p in people]
        response.sample_counts = [int(p.num_samples) for p in people]
        return response

    # -- diagnostics ----------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self._stats.lock:
            stats = self._stats
            recent = [t for t in stats.processed_times if t > now - 5.0]
            latencies = np.asarray(stats.latencies_ms, np.float64)
            received, processed, dropped, rejected = stats.received, stats.processed, stats.dropped, stats.rejected
            last_error = stats.last_error
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        status = DiagnosticStatus(name=f"{self.get_name()}: face recognition", hardware_id=self.get_fully_qualified_name())
        if received == 0:
            status.level, status.message = DiagnosticStatus.WARN, f"no images yet on {self._subscription.topic_name}"
        elif rejected > self._rejected_at_last_diagnostics:
            status.level, status.message = DiagnosticStatus.WARN, f"images rejected: {last_error}"
        else:
            status.level, status.message = DiagnosticStatus.OK, f"processing {rate:.1f} frames/s"
        values = {
            "processing_rate_hz": f"{rate:.2f}",
            "latency_ms_p50": f"{np.percentile(latencies, 50):.1f}" if latencies.size else "",
            "latency_ms_p95": f"{np.percentile(latencies, 95):.1f}" if latencies.size else "",
            "frames_received": str(received),
            "frames_processed": str(processed),
            "frames_dropped": str(dropped),
            "frames_rejected": str(rejected),
            "backend": str(self._pipe.backend),
            "detector_backend": str(getattr(self._pipe, "detector_backend", self._pipe.backend)),
            "device": str(self._param("device")),
            "encoder": str(self._pipe.encoder.identity),
            "match_threshold": f"{self._pipe.matcher.threshold:.3f}",
            "gallery": str(self._pipe.gallery.path),
            "live_enrollment": "active" if self._enrollment is not None else "idle",
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        self._rejected_at_last_diagnostics = rejected
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(array)

    # -- shutdown -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the worker thread (waits for the frame in progress)."""
        self._stopping.set()
        self._frame_ready.set()
        self._enrollment_finished.set()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    executor = None
    try:
        node = RecognizerNode()
        executor = MultiThreadedExecutor(num_threads=4)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except FaceRecognitionError as error:
        # Bad configuration (no weights, unknown encoder, unusable gallery): one clear line.
        rclpy.logging.get_logger(NODE_NAME).fatal(str(error))
        return 1
    finally:
        ignore_further_interrupts()
        if node is not None:
            node.stop()
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
