"""Frame -> detections -> aligned crops -> one batched embedding call -> open-set matches.

The stateless half of recognition: one frame at a time, no tracking. ``recognizer.Recognizer``
builds on it for streams (tracks, voted names, live enrollment); evaluations and benchmarks use it
directly. The decision parameters (threshold, margin, k) are resolved in one place, ``set_match``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .alignment import STORAGE_TEMPLATE, align_faces
from .encoders import FaceEncoder, create_encoder
from .errors import GalleryUnavailableError, NoFaceError
from .gallery import EnrollResult, FaceGallery, GalleryEmbeddings, open_gallery, validate_name
from .matching import Matcher
from .openset import DEFAULT_TARGET_FAR, load_cohort
from .types import Detections, FaceResult, FrameResult, Match

LOGGER = logging.getLogger(__name__)
#: enrollment warns about another person the new samples come this close to (below their bar) or closer
LOOKALIKE_SLACK = 0.03


@dataclass
class PipelineConfig:
    """Everything that selects models and thresholds; the ROS node maps its parameters onto this."""

    encoder: str = "dlib_resnet"
    encoder_weights: str | None = None  # another checkpoint for the same architecture
    backend: str = "auto"  # auto | torch | onnxruntime | tensorrt, for detector and encoder (backends/attach.py)
    device: str = "cpu"  # cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | fp16 (GPU backends only)
    engine_cache_dir: str | None = None  # exported ONNX models / TensorRT engines (default: user cache dir)
    force_engine_update: bool = False  # rebuild cached ONNX models / TensorRT engines
    threads: int | None = None  # CPU inference threads (None: one per core)
    detector_score_threshold: float = 0.8
    detector_nms_threshold: float = 0.4
    min_face_size: int = 20  # pixels, shorter box side in the source frame
    detector_max_size: int | None = 640  # longer frame side is downscaled to this for detection
    max_faces: int | None = 10
    match_threshold: float | None = None  # a fixed threshold; None: the open-set operating point below
    target_false_accept_rate: float | None = None  # strangers given a name, per query; None: openset's default
    match_margin: float | None = None  # None: the encoder's calibrated default
    knn: int = 3
    gallery_path: str | None = None  # a file (SQLite) or a postgresql:// URL; None: default_gallery_setting()
    auto_reembed: bool = True  # re-embed stored crops when the gallery was built by another encoder
    test_time_flip: bool = False  # embed each face and its mirror image; set on the pipeline's encoder


@dataclass
class FaceBatch:
    """All faces of one frame with their crops and embeddings, before matching."""

    detections: Detections
    crops: np.ndarray  # (N, h, w, 3) uint8 RGB at the encoder's template
    embeddings: np.ndarray  # (N, D) float32 unit vectors
    storage_crops: np.ndarray | None = None  # (N, 256, 256, 3) at STORAGE_TEMPLATE, for the gallery
    timings_ms: dict[str, float] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.detections)

    def results(self, matches: list[Match]) -> list[FaceResult]:
        """One FaceResult per face, with its match (``FaceTracker.apply`` adds track ids)."""
        return [
            FaceResult(
                box=self.detections.boxes[i],
                landmarks=self.detections.landmarks[i],
                score=float(self.detections.scores[i]),
                match=matches[i],
                embedding=self.embeddings[i],
            )
            for i in range(len(self))
        ]


class RecognitionPipeline:
    """The whole recognition path, free of ROS; the CLI, the ROS node and the benchmarks share it."""

    def __init__(
        self,
        config: PipelineConfig | None = None,
        gallery: FaceGallery | None = None,
        detector=None,
        encoder: FaceEncoder | None = None,
    ) -> None:
        self.config = config or PipelineConfig()
        cfg = self.config
        from .backends.attach import normalise_device

        normalise_device(cfg.device)  # a misspelt device is refused before any model is loaded
        # Detector and encoder are built on the CPU; attaching the backend moves them to cfg.device
        # when it can run there, and otherwise falls back along the documented order (logged), so
        # device=cuda on a machine without CUDA degrades to the CPU instead of failing to start.
        if encoder is None:
            kwargs = {"weights": cfg.encoder_weights} if cfg.encoder_weights else {}
            encoder = create_encoder(cfg.encoder, **kwargs)
        encoder.test_time_flip = cfg.test_time_flip
        self.encoder = encoder
        if detector is None:
            from .detection import RetinaFaceDetector

            detector = RetinaFaceDetector(
                score_threshold=cfg.detector_score_threshold,
                nms_threshold=cfg.detector_nms_threshold,
                min_face_size=cfg.min_face_size,
                max_size=cfg.detector_max_size,
                max_faces=cfg.max_faces,
            )
        self.detector = detector
        self.detector_backend, self.encoder_backend = self._attach_backends()
        self.matcher = Matcher(k=cfg.knn, cohort=load_cohort(encoder.identity))
        self.set_match(cfg.match_threshold, cfg.match_margin, target_far=cfg.target_false_accept_rate)
        self.gallery = gallery if gallery is not None else open_gallery(cfg.gallery_path)
        self._gallery_revision: int | None = None
        self._gallery_embeddings: GalleryEmbeddings | None = None
        self.refresh_gallery(force=True)

    # -- set-up -------------------------------------------------------------------------------

    def _attach_backends(self) -> tuple[str, str]:
        """Run detector and encoder through the configured backend; returns the backend each one got."""
        from .backends import attach_backend

        cfg = self.config
        options = dict(
            device=cfg.device,
            precision=cfg.precision,
            cache_dir=Path(cfg.engine_cache_dir) if cfg.engine_cache_dir else None,
            force_engine_update=cfg.force_engine_update,
            logger=LOGGER,
            threads=cfg.threads,
        )
        return attach_backend(self.detector, cfg.backend, **options), attach_backend(self.encoder, cfg.backend, **options)

    def set_match(self, threshold: float | None = None, margin: float | None = None, k: int | None = None,
                  target_far: float | None = None) -> None:
        """The decision parameters: the one place where "not given" becomes a default.

        A ``threshold`` is a fixed cosine similarity. Without one, the decision is the open-set
        operating point (``openset``) for ``target_far`` (default ``openset.DEFAULT_TARGET_FAR``),
        calibrated on the gallery and the encoder's cohort, never looser than the encoder's own 1:1
        threshold. ``margin`` defaults to the encoder's. Raises ``ValueError`` for values out of
        range, leaving the previous ones in force.
        """
        fixed = threshold is not None
        threshold = float(threshold) if fixed else self.encoder.calibrated_threshold
        margin = self.encoder.default_margin if margin is None else margin
        target = None if fixed else (DEFAULT_TARGET_FAR if target_far is None else target_far)
        trial = Matcher(threshold, margin, self.matcher.k if k is None else k, target)  # validates them all first
        matcher = self.matcher
        matcher.threshold, matcher.margin, matcher.k, matcher.target_far = trial.threshold, trial.margin, trial.k, target

    @property
    def threshold_in_force(self) -> float:
        """The similarity a typical face must reach now (the fixed threshold, or the operating point's)."""
        return self.matcher.threshold_in_force(self._gallery_embeddings)

    def decision(self) -> dict:
        """What decides who is named, for reports (``recognize --json``, ``/diagnostics``)."""
        point = self.matcher.operating_point(self._gallery_embeddings) if self._gallery_embeddings is not None else None
        report = {"threshold": round(self.threshold_in_force, 4), "margin": round(self.matcher.margin, 4),
                  "mode": "fixed threshold" if self.matcher.target_far is None else (point.mode if point else "openset")}
        if self.matcher.target_far is not None:
            report["target_false_accept_rate"] = self.matcher.target_far
            report["people"] = len(set(self._gallery_embeddings.person_ids.tolist())) if self._gallery_embeddings else 0
            if point is not None:
                report["description"] = point.describe()
        return report

    def refresh_gallery(self, force: bool = False) -> bool:
        """Reload gallery embeddings if the gallery changed (in any process); True when reloaded."""
        revision = self.gallery.known_revision()
        if not force and revision == self._gallery_revision:
            return False
        if self.config.auto_reembed and not self.gallery.read_only and self.gallery.stale_count(self.encoder.identity):
            LOGGER.info("gallery holds samples of another encoder: re-embedding them for %s", self.encoder.identity)
            self.reembed_gallery(progress=False)
            revision = self.gallery.known_revision()
        self._gallery_embeddings = self.gallery.embeddings(self.encoder.identity)
        self._gallery_revision = revision
        return True

    @property
    def gallery_revision(self) -> int | None:
        """Gallery revision the current matches are based on (changes when the gallery is reloaded)."""
        return self._gallery_revision

    def reembed_gallery(self, progress: bool = False) -> int:
        """Re-embed every stored sample made by another encoder; returns how many changed."""
        return self.gallery.reembed(self.embed_storage_crops, self.encoder.identity, progress=progress)

    # -- the recognition path -----------------------------------------------------------------

    def embed_storage_crops(self, storage_crops: np.ndarray) -> np.ndarray:
        """Embed gallery crops (STORAGE_TEMPLATE) by re-aligning them to the encoder's template."""
        width, height = self.encoder.template.size
        crops = np.zeros((len(storage_crops), height, width, 3), np.uint8)
        for crop, stored in zip(crops, storage_crops):
            crop[:] = align_faces(stored, STORAGE_TEMPLATE.landmarks[None], self.encoder.template)[0]
        return self.encoder.embed(crops)

    def analyze(self, image: np.ndarray, storage_crops: bool = False) -> FaceBatch:
        """Detect, align and embed every face of an (H, W, 3) uint8 RGB frame."""
        timings: dict[str, float] = {}
        start = time.perf_counter()
        detections = self.detector.detect(image)
        timings["detect"] = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        crops = align_faces(image, detections.landmarks, self.encoder.template)
        stored = align_faces(image, detections.landmarks, STORAGE_TEMPLATE) if storage_crops else None
        timings["align"] = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        embeddings = self.encoder.embed(crops)
        timings["embed"] = (time.perf_counter() - start) * 1000
        return FaceBatch(detections, crops, embeddings, stored, timings)

    def match(self, embeddings: np.ndarray) -> list[Match]:
        self._refresh_if_reachable()
        return self.matcher.match(embeddings, self._gallery_embeddings)

    def process(self, image: np.ndarray) -> FrameResult:
        """Recognise every face of an (H, W, 3) uint8 RGB frame."""
        return self.recognise(image)[0]

    def recognise(self, image: np.ndarray, storage_crops: bool = False) -> tuple[FrameResult, FaceBatch]:
        """``process``, and the frame's batch too (with storage crops when asked: live enrollment)."""
        total_start = time.perf_counter()
        batch = self.analyze(image, storage_crops=storage_crops)
        start = time.perf_counter()
        matches = self.match(batch.embeddings)
        batch.timings_ms["match"] = (time.perf_counter() - start) * 1000
        faces = batch.results(matches)
        batch.timings_ms["total"] = (time.perf_counter() - total_start) * 1000
        result = FrameResult(faces=faces, timings_ms=batch.timings_ms, image_size=(image.shape[1], image.shape[0]),
                             faces_dropped=batch.detections.dropped)
        return result, batch

    # -- enrollment ---------------------------------------------------------------------------

    def enroll_images(self, name: str, images: list[np.ndarray], sources: list[str] | None = None) -> EnrollResult:
        """Enroll the largest face of each image under ``name`` in one atomic gallery write.

        Images without a face, and images where another face is nearly as large as the largest
        (``Detections.dominant_index``: which one is ``name`` would be a guess), are skipped and
        listed in ``EnrollResult.skipped``; if no image is left, ``NoFaceError`` is raised and the
        gallery is untouched.
        """
        name = validate_name(name)
        sources = sources or [f"image {i + 1}" for i in range(len(images))]
        crops, embeddings, skipped = [], [], []
        ambiguous = 0
        for image, source in zip(images, sources):
            batch = self.analyze(image, storage_crops=True)
            if len(batch) == 0:
                skipped.append(f"{source}: no face found")
                continue
            index = batch.detections.dominant_index()
            if index is None:
                ambiguous += 1
                # no name in the reason: the node logs failures, and names stay out of its log
                skipped.append(f"{source}: {len(batch)} faces of about the same size, so which one is the person "
                               "would be a guess (crop the photo to that person)")
                continue
            crops.append(batch.storage_crops[index])
            embeddings.append(batch.embeddings[index])
        if not embeddings:
            if not ambiguous:
                raise NoFaceError(f"no face found in {'the image' if len(images) == 1 else f'any of {len(images)} images'}")
            raise NoFaceError("no image with one clearly largest face: " + "; ".join(skipped))
        result = self.enroll_batch(name, np.stack(crops), np.stack(embeddings))
        result.skipped = skipped
        return result

    def enroll_batch(self, name: str, storage_crops: np.ndarray, embeddings: np.ndarray) -> EnrollResult:
        """Store already computed samples (e.g. live enrollment) under ``name``; the result warns
        about enrolled people the new samples come close to (``lookalike_warnings``)."""
        self._refresh_if_reachable()
        warnings = self.lookalike_warnings(name, embeddings)
        stored = self.gallery.enroll(name, embeddings, storage_crops, self.encoder.identity)
        self._refresh_if_reachable()
        stored.warnings = warnings
        return stored

    def _refresh_if_reachable(self) -> None:
        try:
            self.refresh_gallery()
        except GalleryUnavailableError:
            pass  # the database server is away: keep matching against the cached gallery (its health says so)

    def lookalike_warnings(self, name: str, embeddings: np.ndarray) -> list[str]:
        """One line per other enrolled person the samples come within ``LOOKALIKE_SLACK`` of the bar
        for: a look-alike (who needs more care to tell apart), or the same person under another name."""
        gallery = self._gallery_embeddings
        if gallery is None or len(gallery.person_ids) == 0:
            return []
        name = validate_name(name)
        warnings = []
        for person_id, reached, needed in self.matcher.closest_people(np.asarray(embeddings, np.float32), gallery):
            other = gallery.names.get(person_id)
            if other == name or reached < needed - LOOKALIKE_SLACK:
                continue
            verdict = "would be taken for" if reached >= needed else "comes close to"
            warnings.append(f"the new samples {verdict} {other!r} (person id {person_id}): similarity {reached:.3f}, "
                            f"{needed:.3f} names them; a look-alike, or the same person under another name?")
        return warnings
