"""``recognize PATH|--camera N``: images, folders, video files or a camera."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import FaceRecognitionError, ImageError
from ..imageio import IMAGE_SUFFIXES, VIDEO_SUFFIXES, iter_image_files, load_image, to_rgb8
from .common import add_model_options, emit_json, pipeline_from_args


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "recognize",
        help="recognise faces in an image, a folder, a video file or a camera",
        description="Prints one line per face, or with --json one JSON object per image or frame: "
        '{"source", "frame", "faces": [{"box", "landmarks", "score", "name", "person_id", "is_known", '
        '"similarity", "margin"}]}.',
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("path", nargs="?", help="image file, folder of images, or video file")
    source.add_argument("--camera", type=int, metavar="N", help="camera device index (OpenCV)")
    parser.add_argument("--annotate", metavar="OUT",
                        help="write annotated output: an image file, a folder (for folder input) or a video file")
    parser.add_argument("--max-frames", type=int, help="stop after this many video/camera frames")
    parser.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th video frame")
    parser.add_argument("--no-tracking", action="store_true",
                        help="video/camera: report each frame's own match instead of a track's identity vote")
    parser.add_argument("--json", action="store_true", help="one JSON object per image or frame")
    add_model_options(parser)
    parser.set_defaults(func=run_recognize)


def _video_frames(capture: cv2.VideoCapture, every: int, max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    index = processed = 0
    while max_frames is None or processed < max_frames:
        ok, bgr = capture.read()
        if not ok:
            return
        if index % every == 0:
            processed += 1
            yield index, to_rgb8(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"frame {index}")
        index += 1


def _report(source: str, frame: int | None, result, as_json: bool) -> None:
    if as_json:
        emit_json({"source": source, "frame": frame, "faces": [face.to_json() for face in result.faces]})
        return
    where = source if frame is None else f"{source}#{frame}"
    if not result.faces:
        print(f"{where}: no face")
    for face in result.faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        who = face.match.name if face.match.is_known else "unknown"
        print(f"{where}: {who} (similarity {face.match.similarity:.3f}, margin {face.match.margin:.3f}) "
              f"at [{x1}, {y1}, {x2}, {y2}]")


def run_recognize(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..annotate import annotate

    if args.every < 1:
        raise FaceRecognitionError("--every must be at least 1")
    pipeline = pipeline_from_args(args)
    if args.camera is not None or Path(args.path).suffix.lower() in VIDEO_SUFFIXES:
        return _run_video(args, pipeline)
    path = Path(args.path)
    if not path.exists():
        raise ImageError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ImageError(f"{path}: not an image or video file (by its extension)")
    files = iter_image_files([path])
    if path.is_dir() and not files:
        raise ImageError(f"{path}: folder holds no images")
    out = Path(args.annotate) if args.annotate else None
    if out and path.is_dir():
        out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for file in tqdm(files, desc="images", unit="img", disable=len(files) < 2 or None, file=sys.stderr):
        try:
            image = load_image(file)
        except ImageError as error:
            # In a folder, one bad file is reported and skipped; a single bad file is an error.
            if len(files) == 1:
                raise
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        result = pipeline.process(image)
        _report(str(file), None, result, args.json)
        if out:
            target = out / file.relative_to(path).with_suffix(".png") if path.is_dir() else out
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), cv2.cvtColor(annotate(image, result.faces), cv2.COLOR_RGB2BGR)):
                raise ImageError(f"{target}: cannot write the annotated image (unknown extension or unwritable)")
    return 1 if failures else 0


def _run_video(args: argparse.Namespace, pipeline) -> int:
    from tqdm import tqdm

    from ..annotate import annotate

    source = f"camera {args.camera}" if args.camera is not None else args.path
    if args.camera is None and not Path(args.path).is_file():
        raise ImageError(f"{args.path}: no such video file")
    capture = cv2.VideoCapture(args.camera if args.camera is not None else args.path)
    if not capture.isOpened():
        raise ImageError(f"{source}: cannot open the video (unsupported or corrupt)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    from ..tracking import FaceTracker

    tracker = None if args.no_tracking else FaceTracker()
    writer = None
    start = time.perf_counter()
    frames = 0
    try:
        progress = tqdm(_video_frames(capture, args.every, args.max_frames), total=total and total // args.every,
                        desc="frames", unit="frame", file=sys.stderr, disable=None)
        for index, image in progress:
            result = pipeline.process(image)
            if tracker is not None:
                tracker.apply(result.faces)  # as the ROS node does
            frames += 1
            _report(source, index, result, args.json)
            if args.annotate:
                if writer is None:
                    height, width = image.shape[:2]
                    writer = cv2.VideoWriter(args.annotate, cv2.VideoWriter_fourcc(*"mp4v"), fps / args.every,
                                             (width, height))
                    if not writer.isOpened():
                        raise ImageError(f"{args.annotate}: cannot write a video there")
                writer.write(cv2.cvtColor(annotate(image, result.faces), cv2.COLOR_RGB2BGR))
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise ImageError(f"{source}: no frame could be read")
    if not args.json:
        elapsed = time.perf_counter() - start
        print(f"{frames} frame(s) in {elapsed:.1f} s ({frames / elapsed:.1f} frames/s)", file=sys.stderr)
    return 0
