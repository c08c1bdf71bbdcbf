"""``recognize PATH|--camera N``: images, folders, video files or a camera."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

from ..errors import ImageError
from ..frame_sources import VideoFrames
from ..image_files import find_images, is_image_file, load_image
from ..tracking import DEFAULT_MIN_VOTES
from .common import add_model_options, bounded, emit_json, pipeline_from_args


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "recognize",
        help="recognise faces in an image, a folder, a video file or a camera",
        description="Prints one line per face, or with --json one JSON object per image or frame: "
        '{"source", "frame", "faces": [{"box", "landmarks", "score", "name", "person_id", "is_known", '
        '"similarity", "margin", "threshold", "frames_to_confirm", "track_id"}]}. In a video, a face is named '
        f"once {DEFAULT_MIN_VOTES} frames of its track agree (--no-tracking: each frame on its own).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("path", nargs="?", help="image file, folder of images, or video file")
    source.add_argument("--camera", type=bounded(int, 0), metavar="N", help="camera device index (OpenCV)")
    parser.add_argument("--annotate", metavar="OUT",
                        help="write annotated output: an image file, a folder (for folder input) or a video file")
    parser.add_argument("--max-frames", type=bounded(int, 1), help="stop after this many video/camera frames")
    parser.add_argument("--every", type=bounded(int, 1), default=1, metavar="N", help="process every N-th video frame")
    parser.add_argument("--no-tracking", action="store_true",
                        help="video/camera: report each frame's own match instead of a track's identity vote")
    parser.add_argument("--json", action="store_true", help="one JSON object per image or frame")
    add_model_options(parser)
    parser.set_defaults(func=run_recognize)


def _report(source: str, frame: int | None, result, as_json: bool, decision: dict) -> None:
    if as_json:
        emit_json({"source": source, "frame": frame, "faces": [face.to_json() for face in result.faces],
                   "decision": decision})
        return
    where = source if frame is None else f"{source}#{frame}"
    if not result.faces:
        print(f"{where}: no face")
    for face in result.faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        who = face.match.name if face.match.is_known else "unknown"
        if face.match.frames_to_confirm:
            who += f" until {face.match.frames_to_confirm} more frame(s) agree"
        needed = "" if face.match.threshold is None else f" of {face.match.threshold:.3f} needed"
        print(f"{where}: {who} (similarity {face.match.similarity:.3f}{needed}, margin {face.match.margin:.3f}) "
              f"at [{x1}, {y1}, {x2}, {y2}]")


def _warn_dropped(where: str, result, limit: int | None) -> None:
    print(f"warning: {where}: {len(result.faces) + result.faces_dropped} faces found, only the {limit} largest "
          "were recognised (--max-faces 0 recognises every face)", file=sys.stderr)


def run_recognize(args: argparse.Namespace) -> int:
    if args.camera is not None:
        return _run_video(args, VideoFrames(args.camera))
    path = Path(args.path)
    if not path.exists():
        raise ImageError(f"{path}: no such file or folder")
    if path.is_file() and not is_image_file(path):
        try:
            frames = VideoFrames(path)
        except ImageError:
            raise ImageError(f"{path}: not an image or a video this software can read") from None
        return _run_video(args, frames)
    return _run_images(args, path)


def _run_images(args: argparse.Namespace, path: Path) -> int:
    from tqdm import tqdm

    from ..annotate import annotate

    listing = find_images([path])
    if path.is_dir() and not listing.images:
        raise ImageError(f"{path}: folder holds no images")
    for skipped, reason in listing.skipped:
        print(f"skipping {skipped}: {reason}", file=sys.stderr)
    out = Path(args.annotate) if args.annotate else None
    if out and not path.is_dir() and not cv2.haveImageWriter(str(out)):
        raise ImageError(f"{out}: no image format this software writes has that extension (use .png or .jpg)")
    pipeline = pipeline_from_args(args)
    if out and path.is_dir():
        out.mkdir(parents=True, exist_ok=True)
    files = listing.images
    failures = len(listing.skipped)
    for file in tqdm(files, desc="images", unit="img", disable=len(files) < 2 or None, file=sys.stderr):
        try:
            image = load_image(file)
        except ImageError as error:
            # In a folder, one bad file is reported and skipped; a single bad file is an error.
            if len(files) == 1 and not path.is_dir():
                raise
            print(f"error: {error}", file=sys.stderr)
            failures += 1
            continue
        result = pipeline.process(image)
        if result.faces_dropped:
            _warn_dropped(str(file), result, pipeline.detector.max_faces)
        _report(str(file), None, result, args.json, pipeline.decision())
        if out:
            target = out / file.relative_to(path).with_suffix(".png") if path.is_dir() else out
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                written = cv2.imwrite(str(target), cv2.cvtColor(annotate(image, result.faces), cv2.COLOR_RGB2BGR))
            except cv2.error:
                written = False
            if not written:
                raise ImageError(f"{target}: cannot write the annotated image (unknown extension or unwritable)")
    return 1 if failures else 0


def _run_video(args: argparse.Namespace, frames: VideoFrames) -> int:
    from tqdm import tqdm

    from ..annotate import annotate
    from ..recognizer import Recognizer

    recognizer = Recognizer(pipeline_from_args(args), track=not args.no_tracking)  # as the ROS node runs it
    writer = None
    start = time.perf_counter()
    processed = 0
    dropped_frames = 0
    total = frames.frame_count and frames.frame_count // args.every
    if args.max_frames is not None and total:
        total = min(total, args.max_frames)
    try:
        progress = tqdm(frames.frames(), total=total, desc="frames", unit="frame", file=sys.stderr, disable=None)
        for frame in progress:
            if frame.index % args.every:
                continue
            result = recognizer.process(frame.rgb)
            if result.faces_dropped:
                if not dropped_frames:
                    _warn_dropped(f"{frames.name}#{frame.index}", result, recognizer.pipeline.detector.max_faces)
                dropped_frames += 1
            processed += 1
            _report(frames.name, frame.index, result, args.json, recognizer.pipeline.decision())
            if args.annotate:
                if writer is None:
                    height, width = frame.rgb.shape[:2]
                    writer = cv2.VideoWriter(args.annotate, cv2.VideoWriter_fourcc(*"mp4v"),
                                             frames.rate_hz / args.every, (width, height))
                    if not writer.isOpened():
                        raise ImageError(f"{args.annotate}: cannot write a video there")
                writer.write(cv2.cvtColor(annotate(frame.rgb, result.faces), cv2.COLOR_RGB2BGR))
            if args.max_frames is not None and processed >= args.max_frames:
                break
    finally:
        if writer is not None:
            writer.release()
    if processed == 0:
        raise ImageError(f"{frames.name}: no frame could be read")
    if dropped_frames > 1:
        print(f"warning: {dropped_frames} frames had more faces than --max-faces", file=sys.stderr)
    if not args.json:
        elapsed = time.perf_counter() - start
        print(f"{processed} frame(s) in {elapsed:.1f} s ({processed / elapsed:.1f} frames/s)", file=sys.stderr)
    return 0
