"""A stream of frames in, tracked and voted identities out: the recognizer the node, the bag tool and
the CLI's video and camera path all run.

It owns, free of ROS:

* the pipeline (detect, align, embed, match) and the tracker (track ids, names voted over recent frames);
* the decision parameters (``set_match``: threshold, margin; ``None`` means the encoder's calibrated
  default, decided in ``RecognitionPipeline.set_match`` alone) and the detection limits;
* vote clearing: when the answers change (the gallery was edited here or by another process, or the
  threshold moved), votes cast under the old answers are dropped, so the new answer shows within
  a few frames instead of being outvoted;
* enrollment from images, live enrollment from the stream (one at a time, bounded in time,
  cancellable), and forgetting.

Thread-safe: the node calls it from its frame worker and from service callbacks. The models and the
gallery cache are used under one lock; a live enrollment's wait is not.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from .enrollment import DEFAULT_MIN_SHARPNESS, LiveEnrollment
from .errors import FaceRecognitionError, UnknownPersonError
from .gallery import EnrollResult, PersonInfo, validate_name
from .pipeline import RecognitionPipeline
from .tracking import FaceTracker
from .types import FrameResult

#: a live enrollment's wait runs this long beyond its own timeout before it is ended regardless
ENROLL_GRACE_S = 1.0
#: ``set_detection``'s "leave this limit as it is" (None already means "no limit")
UNCHANGED = object()


class EnrollmentRequestError(FaceRecognitionError, ValueError):
    """A live enrollment cannot start: bad timeout or sample count, or another one is running."""


@dataclass(frozen=True)
class LiveEnrollmentSettings:
    """Defaults and bounds of live enrollment (the node's ``enroll_*`` parameters)."""

    num_samples: int = 5
    timeout_s: float = 15.0
    max_timeout_s: float = 120.0  # no request holds the only live-enrollment slot longer than this
    min_face_size: float = 60
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    duplicate_similarity: float = 0.97


@dataclass
class _LiveSession:
    enrollment: LiveEnrollment
    name: str
    finished: threading.Event = field(default_factory=threading.Event)
    cancelled: bool = False
    frames_offered: int = 0


class Recognizer:
    """See the module docstring. ``tracker=None`` reports each frame's own matches (no tracking)."""

    def __init__(self, pipeline: RecognitionPipeline, tracker: FaceTracker | None = None,
                 enrollment: LiveEnrollmentSettings | None = None, track: bool = True) -> None:
        self.pipeline = pipeline
        self.tracker = (tracker or FaceTracker()) if track else None
        self.enrollment_settings = enrollment or LiveEnrollmentSettings()
        self._lock = threading.RLock()
        self._votes_revision = pipeline.gallery_revision
        self._votes_stale = False
        # the decision as asked for (None: the encoder's default), so one can change without the other
        self._match = {"threshold": pipeline.config.match_threshold, "margin": pipeline.config.match_margin,
                       "target_far": pipeline.config.target_false_accept_rate}
        self._live: _LiveSession | None = None
        self._live_slot = threading.Lock()
        #: a fault that needs a person's attention (a forget that failed), "" when there is none
        self.problem = ""
        self._erase_pending = False

    # -- the stream ----------------------------------------------------------------------------

    def process(self, rgb: np.ndarray) -> FrameResult:
        """Recognise (and track) every face of one (H, W, 3) uint8 RGB frame of the stream."""
        live = self._live
        with self._lock:
            if self._erase_pending:
                self._retry_erase()
            result, batch = self.pipeline.recognise(rgb, storage_crops=live is not None)
            self._clear_stale_votes()
            if self.tracker is not None:
                self.tracker.apply(result.faces)
        if live is not None:
            self._feed(live, batch)
        return result

    def _clear_stale_votes(self) -> None:
        revision = self.pipeline.gallery_revision
        if self.tracker is not None and (revision != self._votes_revision or self._votes_stale):
            # New answers (gallery edited here or elsewhere, threshold changed): votes cast under the
            # old ones must not outvote them.
            self.tracker.clear_votes()
        self._votes_revision, self._votes_stale = revision, False

    # -- decisions and limits ------------------------------------------------------------------

    def set_match(self, threshold: float | None | object = UNCHANGED, margin: float | None | object = UNCHANGED,
                  target_far: float | None | object = UNCHANGED) -> None:
        """The decision from the next frame on: a fixed ``threshold``, or (``None``) the open-set
        operating point for ``target_far`` (None: the default rate); ``margin`` None is the encoder's.
        An omitted one stays as it is. Raises ValueError (changing nothing) when out of range."""
        with self._lock:
            settings = dict(self._match)
            for key, value in (("threshold", threshold), ("margin", margin), ("target_far", target_far)):
                if value is not UNCHANGED:
                    settings[key] = value
            self.pipeline.set_match(settings["threshold"], settings["margin"], target_far=settings["target_far"])
            self._match = settings
            self._votes_stale = True

    @property
    def threshold(self) -> float:
        """The similarity a typical face must reach now (a fixed threshold, or the operating point's)."""
        return self.pipeline.threshold_in_force

    @property
    def margin(self) -> float:
        return self.pipeline.matcher.margin

    def set_detection(self, score_threshold: float | None = None, min_face_size: float | None = None,
                      max_faces: int | None | object = UNCHANGED) -> None:
        """Detector limits from the next frame on; ``max_faces=None`` is no limit, omitted is unchanged.
        Raises ValueError (changing nothing) when a value is out of range."""
        if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must lie in [0, 1], got {score_threshold}")
        if min_face_size is not None and min_face_size < 0:
            raise ValueError(f"min_face_size cannot be negative, got {min_face_size}")
        if max_faces is not UNCHANGED and max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces must be None (no limit) or positive, got {max_faces}")
        with self._lock:
            detector = self.pipeline.detector
            if score_threshold is not None:
                detector.score_threshold = float(score_threshold)
            if min_face_size is not None:
                detector.min_face_size = float(min_face_size)
            if max_faces is not UNCHANGED:
                detector.max_faces = max_faces

    def configure(self, match: dict | None = None, detection: dict | None = None,
                  enrollment: LiveEnrollmentSettings | None = None) -> None:
        """Several settings at once, all or none: ``match`` and ``detection`` take ``set_match`` and
        ``set_detection``'s keywords; ``enrollment`` replaces the live-enrollment settings."""
        with self._lock:
            previous_match, previous_votes = dict(self._match), self._votes_stale
            if match:
                self.set_match(**match)
            try:
                if detection:
                    self.set_detection(**detection)
            except ValueError:
                self.pipeline.set_match(previous_match["threshold"], previous_match["margin"],
                                    target_far=previous_match["target_far"])
                self._match, self._votes_stale = previous_match, previous_votes
                raise
            if enrollment is not None:
                self.enrollment_settings = enrollment

    # -- the gallery ---------------------------------------------------------------------------

    @property
    def gallery(self):
        return self.pipeline.gallery

    @property
    def gallery_revision(self) -> int | None:
        """The gallery revision the current answers are based on."""
        return self.pipeline.gallery_revision

    def list_people(self) -> list[PersonInfo]:
        return self.pipeline.gallery.list_people()  # the gallery is safe to read from any thread

    def enroll_images(self, name: str, images: list[np.ndarray], sources: list[str] | None = None) -> EnrollResult:
        """Enroll the largest face of each image (one atomic gallery write; see ``RecognitionPipeline``)."""
        with self._lock:
            return self.pipeline.enroll_images(name, images, sources)

    def forget(self, person: int | str) -> tuple[PersonInfo, int]:
        """Remove a person (by name or id) with every sample; returns who it was and how many samples went.

        A forget that fails for a reason other than an unknown person (a broken or unwritable gallery)
        stands as :attr:`problem` until a forget succeeds: a person asked to be erased and is not.
        """
        if isinstance(person, str):
            person = person.strip()
        with self._lock:
            info = None
            try:
                info = self.pipeline.gallery.get_person(person)
                removed = self.pipeline.gallery.forget(info.id)
            except UnknownPersonError:
                raise
            except FaceRecognitionError as error:
                self.problem = f"forget failed: {error}"
                # Deleted but not yet erased from the WAL (a long reader elsewhere): retried each frame.
                self._erase_pending = info is not None and self._is_gone(info.id)
                raise
            finally:
                self.pipeline.refresh_gallery()
            self.problem, self._erase_pending = "", False
        return info, removed

    def _is_gone(self, person_id: int) -> bool:
        try:
            return all(p.id != person_id for p in self.pipeline.gallery.list_people())
        except FaceRecognitionError:
            return False

    def _retry_erase(self) -> None:
        try:
            self.pipeline.gallery.erase_traces()
        except FaceRecognitionError:
            return
        self.problem, self._erase_pending = "", False

    # -- live enrollment -----------------------------------------------------------------------

    @property
    def live_enrollment_active(self) -> bool:
        return self._live is not None

    def enroll_live(self, name: str, num_samples: int = 0, timeout_s: float = 0.0) -> EnrollResult:
        """Enroll ``name`` from the frames ``process`` sees next: blocks until enough good samples
        were taken, the timeout passed, or :meth:`cancel_live_enrollment` was called.

        ``0`` takes the settings' default for samples and timeout. The timeout must be finite and at
        most ``max_timeout_s``; one live enrollment runs at a time. Failure raises
        ``FaceRecognitionError`` saying why (and what the frames showed); the gallery is then unchanged.
        """
        settings = self.enrollment_settings
        name = validate_name(name)
        samples = int(num_samples) or settings.num_samples
        timeout = float(timeout_s) or settings.timeout_s
        if not math.isfinite(timeout) or timeout < 0:
            raise EnrollmentRequestError(f"the enrollment timeout must be a finite number of seconds, got {timeout_s}")
        if timeout > settings.max_timeout_s:
            raise EnrollmentRequestError(
                f"the enrollment timeout can be at most {settings.max_timeout_s:g} s, got {timeout:g}")
        if samples < 1:
            raise EnrollmentRequestError(f"num_samples must be positive, got {num_samples}")
        if not self._live_slot.acquire(blocking=False):
            raise EnrollmentRequestError("another live enrollment is in progress")
        try:
            session = _LiveSession(LiveEnrollment(
                num_samples=samples, timeout_s=timeout, min_face_size=settings.min_face_size,
                min_sharpness=settings.min_sharpness, duplicate_similarity=settings.duplicate_similarity,
                started_at=time.monotonic()), name)
            self._live = session
            try:
                # Only this caller waits; whoever calls process() feeds the enrollment.
                session.finished.wait(timeout + ENROLL_GRACE_S)
            finally:
                self._live = None
            enrollment = session.enrollment
            if session.cancelled:
                raise FaceRecognitionError(f"live enrollment of {name!r} was cancelled")
            if not enrollment.done:
                failure = enrollment.failure(time.monotonic()) or f"timed out after {timeout:g} s"
                if session.frames_offered == 0:
                    failure += "; no camera frames arrived"
                raise FaceRecognitionError(f"live enrollment failed: {failure}")
            crops, embeddings = enrollment.samples
            with self._lock:
                return self.pipeline.enroll_batch(name, crops, embeddings)
        finally:
            self._live_slot.release()

    def cancel_live_enrollment(self) -> bool:
        """End the live enrollment in progress without storing anything; False when none runs."""
        session = self._live
        if session is None:
            return False
        session.cancelled = True
        session.finished.set()
        return True

    def live_enrollment_status(self) -> str:
        """``idle``, or how far the running live enrollment is (samples taken, last frame's verdict)."""
        session = self._live
        if session is None:
            return "idle"
        enrollment = session.enrollment
        progress = f"{enrollment.num_accepted}/{enrollment.num_samples} samples"
        return f"active: {progress} ({enrollment.last_status or 'waiting'})"

    def _feed(self, session: _LiveSession, batch) -> None:
        now = time.monotonic()
        session.enrollment.offer(batch, now)
        session.frames_offered += 1
        if session.enrollment.done or session.enrollment.failure(now) is not None:
            session.finished.set()

    # -- what is in force ----------------------------------------------------------------------

    def status(self) -> dict[str, str]:
        """The facts a health report shows: models, backends, the decision in force, the gallery."""
        pipeline = self.pipeline
        return {
            "encoder": pipeline.encoder.identity,
            "test_time_flip": str(bool(getattr(pipeline.encoder, "test_time_flip", False))).lower(),
            "encoder_backend": pipeline.encoder_backend,
            "detector_backend": pipeline.detector_backend,
            "match_threshold": f"{self.threshold:.3f}",
            "match_margin": f"{self.margin:.3f}",
            "decision": self.pipeline.decision().get("description", self.pipeline.decision()["mode"]),
            "gallery": pipeline.gallery.location,
            "gallery_revision": str(self.gallery_revision),
            "gallery_state": f"stale: {self.gallery_health}" if self.gallery_health else "live",
            "live_enrollment": self.live_enrollment_status(),
        }

    @property
    def gallery_health(self) -> str:
        """Why the gallery in use may be out of date ("" when live): a PostgreSQL server out of reach."""
        return self.pipeline.gallery.health()

    @property
    def warning(self) -> str:
        """A fault recognition works around (shown as WARN), "" when there is none: a stale gallery."""
        health = self.gallery_health
        return f"gallery stale: {health}; recognising from the cached gallery" if health else ""

    def close(self) -> None:
        """Cancel a live enrollment still waiting (at shutdown)."""
        self.cancel_live_enrollment()
