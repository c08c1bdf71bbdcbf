"""``eval lfw`` and ``eval identify``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from ..alignment import align_faces
from ..data_paths import data_root
from ..errors import FaceRecognitionError, ModelError
from ..image_files import load_image
from ..types import Detections
from ..evaluation.embedding_cache import EmbeddingCache, cached_embedder
from .common import add_model_options, bounded, emit_json, scratch_pipeline


def add_parsers(subparsers) -> None:
    evaluate = subparsers.add_parser("eval", help="accuracy benchmarks (LFW verification, open-set identification)")
    commands = evaluate.add_subparsers(dest="eval_command", required=True, metavar="BENCHMARK")

    lfw = commands.add_parser(
        "lfw",
        help="LFW View 2 10-fold verification",
        description="The official protocol: for each fold the threshold that is best on the other nine is "
        "applied to it. Images where no face is detected are aligned with LFW's fixed face layout "
        "(deep-funneled images are centred) and counted in failed_detections.",
    )
    lfw.add_argument("--lfw-dir", help="LFW folder (default: $FACE_RECOGNITION_DATA/lfw or ../shared/data/lfw)")
    lfw.add_argument("--pairs", help="pairs file (default: LFW_DIR/pairs.txt)")
    lfw.add_argument("--folds", type=bounded(int, 1, 10), default=10, help="use only the first K folds (CI uses 1)")
    lfw.add_argument("--record-threshold", action="store_true",
                     help="write the mean of the ten per-fold thresholds into the efficientnet_b0 checkpoint "
                     "given by --encoder-weights, as its default threshold (full 10-fold run only)")
    lfw.set_defaults(func=run_lfw)

    identify = commands.add_parser(
        "identify",
        help="open-set identification on folder-per-identity data",
        description="K images per known identity are enrolled in a fresh in-memory gallery, the rest are "
        "queries; a fraction of the identities is never enrolled and must be reported unknown.",
    )
    identify.add_argument("--data", help="folder with one sub-folder per identity (default: celeba-subset)")
    identify.add_argument("--enroll-per-identity", type=bounded(int, 1), default=3, metavar="K")
    identify.add_argument("--unknown-fraction", type=bounded(float, 0.0, 1.0, open_high=True), default=0.2, metavar="F")
    identify.add_argument("--seed", type=int, default=0)
    identify.add_argument("--cache-dir", metavar="DIR",
                          help="where image embeddings are cached between runs (default: the user cache dir)")
    identify.add_argument("--no-cache", action="store_true", help="embed every image again, cache nothing")
    identify.add_argument("--plot", metavar="FILE.png",
                          help="draw the trade-off (missed known people against strangers accepted, a DET curve)")
    identify.set_defaults(func=run_identify)
    for sub in (lfw, identify):
        add_model_options(sub, gallery=False)
        sub.add_argument("--json", action="store_true", help="print the figures as one JSON object")


# Median RetinaFace landmarks over 300 random LFW deep-funneled images (250x250, faces centred): the alignment
# used when the detector finds no face, so that a miss costs accuracy gracefully instead of a pair.
LFW_MEAN_LANDMARKS = np.array(
    [[104.1, 112.9], [146.9, 112.0], [125.3, 136.9], [108.2, 157.9], [143.5, 157.0]], np.float32
)


def _central_face(detections: Detections, width: int, height: int) -> int:
    centres = (detections.boxes[:, :2] + detections.boxes[:, 2:]) / 2
    distance = np.linalg.norm(centres - np.array([width / 2, height / 2]), axis=1)
    size = np.sqrt(detections.areas())
    # LFW's subject is the centred face; prefer it over larger faces near the border.
    return int(np.argmin(distance - 0.5 * size))


def run_lfw(args: argparse.Namespace) -> int:
    from ..evaluation.lfw import evaluate_lfw

    lfw_dir = Path(args.lfw_dir) if args.lfw_dir else data_root() / "lfw"
    if not lfw_dir.is_dir():
        raise FaceRecognitionError(f"{lfw_dir}: LFW folder not found (pass --lfw-dir)")
    if args.record_threshold:
        _check_threshold_recording(args)
    pipeline = scratch_pipeline(args, matches=False)  # verification scores pairs, never the gallery
    failed = {"count": 0}

    def embed_image(path: Path) -> np.ndarray:
        image = load_image(path)
        detections = pipeline.detector.detect(image)
        if len(detections):
            landmarks = detections.landmarks[_central_face(detections, image.shape[1], image.shape[0])]
        else:
            failed["count"] += 1
            scale = np.array([image.shape[1] / 250, image.shape[0] / 250], np.float32)
            landmarks = LFW_MEAN_LANDMARKS * scale
        crop = align_faces(image, landmarks[None], pipeline.encoder.template)
        return pipeline.encoder.embed(crop)[0]

    result = evaluate_lfw(embed_image, lfw_dir, pairs_file=args.pairs, folds=list(range(1, args.folds + 1)),
                          progress=not args.json)
    result["failed_detections"] = failed["count"]
    result["encoder"] = pipeline.encoder.identity
    result["missing_face_policy"] = "aligned with LFW's mean face layout"
    if args.record_threshold:
        from ..encoders.efficientnet_checkpoint import record_lfw_threshold

        threshold = float(np.mean(result["thresholds"]))
        flip = pipeline.encoder.test_time_flip
        record_lfw_threshold(args.encoder_weights, threshold,
                             "mean of the ten per-fold thresholds of `face-recognition-ros eval lfw"
                             + (" --test-time-flip" if flip else "") + "` (LFW View 2, "
                             f"{100 * result['accuracy']:.2f}% +- {100 * result['accuracy_std']:.2f})", flip=flip)
        result["recorded_threshold"] = round(threshold, 4)
    _print_result(result, args.json)
    return 0


def _check_threshold_recording(args: argparse.Namespace) -> None:
    """Refuse before a long run whose threshold could not be recorded, or only on part of LFW."""
    if args.encoder != "efficientnet_b0" or not args.encoder_weights:
        raise FaceRecognitionError("--record-threshold needs --encoder efficientnet_b0 --encoder-weights PATH "
                                   "(the checkpoint to write the threshold into)")
    if args.folds != 10 or args.pairs:
        raise FaceRecognitionError("--record-threshold needs the full official protocol (10 folds, LFW's own pairs.txt)")
    if not os.access(args.encoder_weights, os.W_OK):
        raise FaceRecognitionError(f"{args.encoder_weights}: not writable, cannot record the threshold there")


def run_identify(args: argparse.Namespace) -> int:
    from ..evaluation.identify import evaluate_identification

    data = Path(args.data) if args.data else data_root() / "celeba-subset"
    if not data.is_dir():
        raise FaceRecognitionError(f"{data}: data folder not found (pass --data)")
    if args.plot:
        if args.threshold is not None:
            raise FaceRecognitionError("--plot draws the open-set trade-off: leave out --threshold")
        from ..evaluation.plots import check_plot_target

        check_plot_target(args.plot)
    pipeline = scratch_pipeline(args)

    def embed_image(path: Path) -> np.ndarray | None:
        batch = pipeline.analyze(load_image(path))  # an unreadable file raises, and is counted as such
        if len(batch) == 0:
            return None
        return batch.embeddings[batch.detections.largest_index()]

    cache = None if args.no_cache else EmbeddingCache(identification_settings(pipeline), args.cache_dir)
    try:
        result = evaluate_identification(
            cached_embedder(embed_image, cache), data, enroll_per_identity=args.enroll_per_identity, unknown_fraction=args.unknown_fraction,
            seed=args.seed, margin=pipeline.matcher.margin, k=pipeline.matcher.k, progress=not args.json,
            threshold=pipeline.matcher.threshold if pipeline.matcher.target_far is None else None,
            target_far=pipeline.matcher.target_far, cohort=pipeline.matcher.cohort,
            floor=_open_set_floor(pipeline),
        )
    finally:
        if cache is not None:
            cache.save()
    result["encoder"] = pipeline.encoder.identity
    for problem in result["skipped_files"] + result["unreadable"]:
        print(f"warning: {problem}", file=sys.stderr)
    if args.plot:  # refused up front with --threshold, so the open-set figures are there
        from ..evaluation.plots import plot_open_set

        plot_open_set(result["open_set"], args.plot, f"{pipeline.encoder.name} on {data.name}, "
                      f"K={args.enroll_per_identity}, {result['known_identities']} people enrolled")
        result["plot"] = args.plot
    if not args.json and "open_set" in result:
        _print_open_set(result["open_set"])
        result = {key: value for key, value in result.items() if key != "open_set"}
    _print_result(result, args.json)
    return 0


def _print_open_set(figures: dict) -> None:
    point = figures["operating_point"]
    print(f"operating point              {point['description']}")
    print(f"  false accepts              {point['false_accept_rate']:.4f} (target {point['target_false_accept_rate']})")
    print(f"  identified (DIR)           {point['identification_rate']:.4f}")
    for name, rates in figures["identification_rate_at_far"].items():
        print(f"DIR at FAR ({name:10s})      " + ", ".join(f"{far}: {rate:.4f}" for far, rate in rates.items()))
    for row in figures["gallery_growth"]:
        print(f"gallery of {row['identities']:5d}             threshold {row['threshold']:.3f}, false accepts "
              f"{row['false_accept_rate']:.4f}, DIR {row['identification_rate']:.4f}")


def _open_set_floor(pipeline) -> float:
    """The least score the open-set figures accept: the encoder's calibrated 1:1 threshold, or, for an
    encoder not calibrated for the test-time flip, the fixed ``--threshold`` given instead."""
    try:
        return pipeline.encoder.calibrated_threshold
    except ModelError:
        if pipeline.matcher.target_far is not None:
            raise
        return pipeline.matcher.threshold


def identification_settings(pipeline) -> dict:
    """What decides an image's embedding in ``eval identify``: the cache key of its embeddings."""
    detector = pipeline.detector
    return {"encoder": pipeline.encoder.identity, "detector": detector.weights_hash, "face": "largest",
            "score_threshold": detector.score_threshold, "min_face_size": detector.min_face_size,
            "max_size": detector.max_size}


def _print_result(result: dict, as_json: bool) -> None:
    if as_json:
        emit_json(result)
        return
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4f}"
        elif isinstance(value, list) and len(value) > 12:
            continue
        print(f"{key:28s} {value}")
