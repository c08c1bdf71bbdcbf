"""``bench``: per-stage latency and frames per second of the pipeline on one frame."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2

from ..errors import FaceRecognitionError, ImageError
from ..image_files import decode_image
from .common import add_model_options, bounded, emit_json, scratch_pipeline

STAGES = ("decode", "detect", "align", "embed", "match")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="per-stage latency and FPS on a frame",
        description="Decodes the frame (JPEG-encoded at the requested size, as a compressed camera frame "
        "would be), runs the whole pipeline REPEAT times after a warm-up and prints median milliseconds "
        "per stage and end-to-end frames per second.",
    )
    parser.add_argument("--image", help="the frame (e.g. media/two_people.jpg); or --frames")
    parser.add_argument("--width", type=bounded(int, 16), help="resize the frame to this width (with --height)")
    parser.add_argument("--height", type=bounded(int, 16), help="resize the frame to this height (with --width)")
    parser.add_argument("--repeat", type=bounded(int, 1), default=20, help="timed repetitions (default 20)")
    parser.add_argument("--warmup", type=bounded(int, 0), default=3, help="untimed repetitions first")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_model_options(parser, gallery=False)
    from ..evaluation.bench import add_frames_arguments

    add_frames_arguments(parser)
    parser.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    if args.frames:
        from ..evaluation.bench import run_frames_bench

        return run_frames_bench(args)
    if not args.image:
        raise FaceRecognitionError("give --image PATH (one frame) or --frames (1/5/10-face frames, all backends)")
    if (args.width is None) != (args.height is None):
        raise FaceRecognitionError("--width and --height go together")
    path = Path(args.image)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ImageError(f"{path}: cannot read ({error.strerror})") from None
    image = decode_image(data, str(path))
    if args.width:
        image = cv2.resize(image, (args.width, args.height), interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        data = encoded.tobytes()

    pipeline = scratch_pipeline(args)
    samples: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    faces = 0
    for repetition in range(args.warmup + args.repeat):
        start = time.perf_counter()
        frame = decode_image(data)
        decode_ms = (time.perf_counter() - start) * 1000
        result = pipeline.process(frame)
        total_ms = (time.perf_counter() - start) * 1000
        if repetition < args.warmup:
            continue
        faces = len(result.faces)
        samples["decode"].append(decode_ms)
        for stage in STAGES[1:]:
            samples[stage].append(result.timings_ms.get(stage, 0.0))
        samples["total"].append(total_ms)
    medians = {stage: round(statistics.median(values), 2) for stage, values in samples.items()}
    report = {
        "image": str(path),
        "width": int(frame.shape[1]),
        "height": int(frame.shape[0]),
        "faces": faces,
        "encoder": pipeline.encoder.identity,
        "backend": pipeline.encoder_backend,
        "detector_backend": pipeline.detector_backend,
        "repeat": args.repeat,
        "stages_ms": {stage: medians[stage] for stage in STAGES},
        "total_ms": medians["total"],
        "fps": round(1000.0 / medians["total"], 2),
        "threads": args.threads,
    }
    if args.json:
        emit_json(report)
    else:
        print(f"{report['width']}x{report['height']} frame, {faces} face(s), {report['encoder']} on {report['backend']}")
        for stage in STAGES:
            print(f"  {stage:7s} {medians[stage]:8.2f} ms")
        print(f"  total   {medians['total']:8.2f} ms  ->  {report['fps']:.1f} FPS")
    return 0


