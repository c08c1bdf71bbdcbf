"""The recognizer node's parameters: one table of names, defaults, ranges and descriptions.

The table is the single source for the node's ``declare_parameter`` calls (``ros/parameters.py``
turns each entry into a ``ParameterDescriptor``), for validation of run-time changes, for
``config/recognizer.yaml`` and for the parameter table in the README; it is free of ROS, so tests on
every machine keep those in step. Ranges are enforced by rclpy itself (both Humble and Jazzy reject
out-of-range values before the node's own callback runs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .enrollment import DEFAULT_MIN_SHARPNESS
from .pipeline import PipelineConfig, RecognitionPipeline
from .recognizer import LiveEnrollmentSettings, Recognizer
from .tracking import DEFAULT_MIN_VOTES, FaceTracker


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    description: str
    minimum: float | int | None = None
    maximum: float | int | None = None
    dynamic: bool = False  # may change while the node runs (`ros2 param set`)

    @property
    def type_name(self) -> str:
        """The ROS parameter type: bool, int, double or string."""
        return {bool: "bool", int: "int", float: "double", str: "string"}[type(self.default)]


PARAMETERS: tuple[ParamSpec, ...] = (
    # -- models (fixed at start-up) ------------------------------------------------------------
    ParamSpec("encoder", "dlib_resnet", "Face encoder: dlib_resnet, or another registered encoder name"),
    ParamSpec("encoder_weights", "", "Checkpoint for the encoder's architecture ('' = its bundled weights)"),
    ParamSpec("backend", "auto", "Inference backend: auto (the fastest available: tensorrt, torch on CUDA, "
              "onnxruntime, torch on CPU), torch, onnxruntime or tensorrt"),
    ParamSpec("device", "cpu", "Inference device: cpu, cuda or cuda:N"),
    ParamSpec("precision", "fp32", "Inference precision: fp32, or fp16 on GPU backends"),
    ParamSpec("engine_cache_dir", "", "Where exported ONNX models / TensorRT engines are cached "
              "('' = ~/.cache/face_recognition_ros/engines)"),
    ParamSpec("force_engine_update", False, "Rebuild the cached ONNX models / TensorRT engines at start-up "
              "instead of loading them"),
    ParamSpec("test_time_flip", False, "Embed each face and its mirror image and add the two embeddings: a "
              "little more accurate, twice the encoder's time; changes the gallery's encoder identity, so stored "
              "samples are re-embedded once"),
    ParamSpec("detector_max_size", 640, "Longer image side is downscaled to this before detection (pixels)",
              64, 4096),
    ParamSpec("gallery_path", "", "Gallery: a file path (SQLite), or a postgresql:// URL (PostgreSQL, one gallery "
              "for several robots; no password in it: libpq reads ~/.pgpass, $PGPASSFILE or a service file) "
              "('' = $FACE_RECOGNITION_GALLERY, else gallery.db in the user's data directory)"),
    ParamSpec("compressed", False, "Subscribe to sensor_msgs/CompressedImage on 'image/compressed' "
              "instead of sensor_msgs/Image on 'image'"),
    # -- recognition (changeable at run time) --------------------------------------------------
    ParamSpec("match_threshold", 0.0, "A fixed minimum cosine similarity to accept a gallery match "
              "(0.0 = the open-set operating point for target_false_accept_rate)", 0.0, 1.0, dynamic=True),
    ParamSpec("target_false_accept_rate", 0.01, "Share of strangers that may be given a name, per face "
              "seen; the threshold is calibrated for it on the gallery (used while match_threshold is 0.0)",
              0.0001, 0.5, dynamic=True),
    ParamSpec("match_margin", -1.0, "Minimum lead of the best person's similarity over the runner-up "
              "(-1.0 = the encoder's calibrated margin)", -1.0, 1.0, dynamic=True),
    ParamSpec("detector_score_threshold", 0.8, "Minimum face detector confidence", 0.05, 1.0, dynamic=True),
    ParamSpec("min_face_size", 20, "Smallest face to detect: shorter box side in pixels", 0, 4096, dynamic=True),
    ParamSpec("max_faces", 10, "Most faces recognised per frame, the largest ones (0 = no limit)", 0, 1000,
              dynamic=True),
    ParamSpec("max_rate_hz", 0.0, "Cap on processed frames per second (0.0 = as fast as possible)",
              0.0, 120.0, dynamic=True),
    ParamSpec("publish_debug_image", False, "Publish the annotated frame on faces/debug_image", dynamic=True),
    # -- tracking --------------------------------------------------------------------------------
    ParamSpec("track_iou_threshold", 0.3, "Minimum box overlap (IoU) to continue a track in the next frame",
              0.05, 0.95),
    ParamSpec("track_max_missed", 5, "Frames a track survives without its face before it ends", 0, 1000),
    ParamSpec("track_vote_window", 5, "Recent matches a track's published identity is voted over", 1, 100),
    ParamSpec("track_min_votes", DEFAULT_MIN_VOTES, "Frames of the vote window that must agree on a person before the track is "
              "named (1 = a single frame is enough; at most track_vote_window)", 1, 100),
    # -- live enrollment -------------------------------------------------------------------------
    ParamSpec("enroll_num_samples", 5, "Default samples for live enrollment (EnrollPerson.num_samples = 0)",
              1, 100, dynamic=True),
    ParamSpec("enroll_timeout", 15.0, "Default live enrollment timeout in seconds (EnrollPerson.timeout = 0)",
              1.0, 300.0, dynamic=True),
    ParamSpec("enroll_max_timeout", 120.0, "Longest timeout a live enrollment request may ask for (seconds); "
              "longer or non-finite ones are refused", 1.0, 600.0, dynamic=True),
    ParamSpec("enroll_min_face_size", 60, "Smallest face accepted as an enrollment sample (pixels)",
              0, 4096, dynamic=True),
    ParamSpec("enroll_min_sharpness", DEFAULT_MIN_SHARPNESS, "Least sharpness of an enrollment sample "
              "(variance of the Laplacian of its 256x256 crop; blurred faces score lower)", 0.0, 10000.0,
              dynamic=True),
    ParamSpec("enroll_duplicate_similarity", 0.97, "Samples more similar than this to an earlier one are "
              "skipped as duplicates", 0.0, 1.0, dynamic=True),
    # -- diagnostics and logs ----------------------------------------------------------------------
    ParamSpec("diagnostics_period", 1.0, "Seconds between /diagnostics messages", 0.1, 60.0),
    ParamSpec("log_names", False, "Put people's names in the log (debugging only: by default the log names "
              "people by id, since names are personal data)", dynamic=True),
)

BY_NAME = {spec.name: spec for spec in PARAMETERS}


# -- from parameter values to the core -----------------------------------------------------------
# The node reads its parameters and hands the values here; the meaning of every value ("0.0 = the
# encoder's calibrated threshold", "0 = no limit") is decided below, once, and tested without ROS.


def _optional_threshold(value: float) -> float | None:
    return float(value) if value > 0.0 else None


def _optional_margin(value: float) -> float | None:
    return float(value) if value >= 0.0 else None


def pipeline_config(values: Mapping[str, Any]) -> PipelineConfig:
    """The pipeline settings the start-up parameters describe."""
    return PipelineConfig(
        encoder=values["encoder"],
        encoder_weights=values["encoder_weights"] or None,
        backend=values["backend"],
        device=values["device"],
        precision=values["precision"],
        engine_cache_dir=values["engine_cache_dir"] or None,
        force_engine_update=bool(values["force_engine_update"]),
        detector_score_threshold=values["detector_score_threshold"],
        min_face_size=values["min_face_size"],
        detector_max_size=values["detector_max_size"],
        max_faces=values["max_faces"] or None,
        match_threshold=_optional_threshold(values["match_threshold"]),
        target_false_accept_rate=values["target_false_accept_rate"],
        match_margin=_optional_margin(values["match_margin"]),
        gallery_path=values["gallery_path"] or None,
        test_time_flip=bool(values["test_time_flip"]),
    )


def enrollment_settings(values: Mapping[str, Any]) -> LiveEnrollmentSettings:
    return LiveEnrollmentSettings(
        num_samples=values["enroll_num_samples"],
        timeout_s=values["enroll_timeout"],
        max_timeout_s=values["enroll_max_timeout"],
        min_face_size=values["enroll_min_face_size"],
        min_sharpness=values["enroll_min_sharpness"],
        duplicate_similarity=values["enroll_duplicate_similarity"],
    )


def build_recognizer(values: Mapping[str, Any]) -> Recognizer:
    """The recognizer the node runs, from all of its parameter values."""
    tracker = FaceTracker(iou_threshold=values["track_iou_threshold"], max_missed=values["track_max_missed"],
                          vote_window=values["track_vote_window"],
                          # a window shorter than the agreement asked for: the whole window must agree
                          min_votes=min(values["track_min_votes"], values["track_vote_window"]))
    return Recognizer(RecognitionPipeline(pipeline_config(values)), tracker, enrollment_settings(values))


def apply_runtime_parameters(recognizer: Recognizer, values: Mapping[str, Any]) -> None:
    """Apply changed run-time parameters to a running recognizer: all of them, or (ValueError) none.

    Parameters that cannot change at run time are refused (rclpy has already refused read-only
    ones; this keeps the core honest when it is called another way).
    """
    refused = sorted(name for name in values if name not in BY_NAME or not BY_NAME[name].dynamic)
    if refused:
        raise ValueError(f"not changeable at run time: {', '.join(refused)}")
    enrollment = {key: values[name] for name, key in _ENROLLMENT_FIELDS.items() if name in values}
    settings = dataclasses.replace(recognizer.enrollment_settings, **enrollment)
    if settings.timeout_s > settings.max_timeout_s:
        raise ValueError(f"enroll_timeout {settings.timeout_s:g} s exceeds "
                         f"enroll_max_timeout {settings.max_timeout_s:g} s")
    match = {}
    if "match_threshold" in values:
        match["threshold"] = _optional_threshold(values["match_threshold"])
    if "match_margin" in values:
        match["margin"] = _optional_margin(values["match_margin"])
    if "target_false_accept_rate" in values:
        match["target_far"] = float(values["target_false_accept_rate"])
    detection = {}
    if "detector_score_threshold" in values:
        detection["score_threshold"] = float(values["detector_score_threshold"])
    if "min_face_size" in values:
        detection["min_face_size"] = float(values["min_face_size"])
    if "max_faces" in values:
        detection["max_faces"] = int(values["max_faces"]) or None
    recognizer.configure(match=match, detection=detection, enrollment=settings)


_ENROLLMENT_FIELDS = {
    "enroll_num_samples": "num_samples",
    "enroll_timeout": "timeout_s",
    "enroll_max_timeout": "max_timeout_s",
    "enroll_min_face_size": "min_face_size",
    "enroll_min_sharpness": "min_sharpness",
    "enroll_duplicate_similarity": "duplicate_similarity",
}
