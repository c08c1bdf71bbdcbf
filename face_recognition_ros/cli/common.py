"""Options and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable

from ..errors import FaceRecognitionError, GalleryError


def add_gallery_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gallery",
        metavar="PATH|URL",
        default=None,
        help="the gallery: a file (SQLite), or a postgresql:// URL (PostgreSQL, shared by several robots; the "
        "password comes from ~/.pgpass, $PGPASSFILE, $PGPASSWORD or a service file, never the URL) "
        "(default: $FACE_RECOGNITION_GALLERY, else gallery.db in the user's data dir)",
    )


def bounded(kind: type, low: float | None = None, high: float | None = None, open_low: bool = False,
            open_high: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` that refuses values outside [low, high] (or open ends), and NaN, with a usage error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        too_low = low is not None and (value <= low if open_low else value < low)
        too_high = high is not None and (value >= high if open_high else value > high)
        if (kind is float and not math.isfinite(value)) or too_low or too_high:
            ends = ("(" if open_low else "[") + ("-inf" if low is None else f"{low:g}") + ", " + \
                ("inf" if high is None else f"{high:g}") + (")" if open_high else "]")
            raise argparse.ArgumentTypeError(f"{text} is outside {ends}")
        return value
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_model_options(parser: argparse.ArgumentParser, gallery: bool = True) -> None:
    group = parser.add_argument_group("models")
    group.add_argument("--encoder", default="dlib_resnet", help="face encoder (dlib_resnet, efficientnet_b0)")
    group.add_argument("--encoder-weights", metavar="PATH", help="another checkpoint for the encoder")
    group.add_argument("--backend", default="auto",
                       help="auto | torch | onnxruntime | tensorrt (auto: tensorrt, torch CUDA, onnxruntime, torch CPU)")
    group.add_argument("--threads", type=bounded(int, 1), help="CPU inference threads (default: one per core)")
    group.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    group.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    group.add_argument("--test-time-flip", action="store_true",
                       help="embed each face and its mirror image: a little more accurate, twice the encoder's time")
    group.add_argument("--threshold", type=bounded(float, -1.0, 1.0),
                       help="a fixed match threshold (default: the open-set operating point for --target-far)")
    group.add_argument("--target-far", type=bounded(float, 0.0, 1.0, open_low=True, open_high=True), metavar="RATE",
                       help="share of strangers that may be given a name, per face; the threshold is calibrated "
                       "for it on the gallery (default 0.01; ignored with --threshold)")
    group.add_argument("--margin", type=bounded(float, 0.0, 2.0),
                       help="required lead over the second-best person (default: the encoder's calibrated one)")
    group.add_argument("--min-face-size", type=bounded(int, 0), default=20, help="smallest face side in pixels")
    group.add_argument("--detector-max-size", type=bounded(int, 0), default=640,
                       help="frames with a longer side are downscaled to this for detection (0: never)")
    group.add_argument("--max-faces", type=int, default=10,
                       help="most faces recognised per frame, the largest ones (0: no limit; default 10)")
    if gallery:
        add_gallery_option(parser)


def open_gallery(args: argparse.Namespace, create: bool):
    return open_gallery_setting(args.gallery, create, explicit=bool(args.gallery))


def open_gallery_setting(setting, create: bool, explicit: bool = True):
    """The gallery a ``--gallery`` value (or the default) names; a typo is refused rather than created."""
    from ..gallery import default_gallery_setting, is_postgres_url
    from ..gallery import open_gallery as open_any

    setting = setting or default_gallery_setting()
    if is_postgres_url(setting):
        return open_any(setting, create=create)
    path = os.fspath(setting)
    if explicit and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        # An explicit path into a missing folder is most likely a typo: don't invent the folder.
        raise GalleryError(f"{os.path.dirname(os.path.abspath(path))}: folder does not exist")
    if not create and not os.path.exists(path):
        raise GalleryError(f"{path}: no gallery there yet (enroll someone first, or pass --gallery)")
    return open_any(path, create=create)


def max_faces(args: argparse.Namespace) -> int | None:
    """``--max-faces``: None for no limit (0), else the positive limit."""
    if args.max_faces < 0:
        raise FaceRecognitionError(f"--max-faces must be 0 (no limit) or positive, got {args.max_faces}")
    return args.max_faces or None


def pipeline_from_args(args: argparse.Namespace, gallery=None, matches: bool = True):
    """The pipeline the model options describe. ``matches=False``: the caller only embeds faces, so
    no match is ever accepted, and an encoder without a calibrated threshold (a new checkpoint
    with ``--test-time-flip``) can still be measured and calibrated."""
    from ..pipeline import PipelineConfig, RecognitionPipeline

    config = PipelineConfig(
        encoder=args.encoder,
        encoder_weights=args.encoder_weights,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        match_threshold=args.threshold if matches else 1.0,
        target_false_accept_rate=args.target_far,
        match_margin=args.margin,
        min_face_size=args.min_face_size,
        detector_max_size=args.detector_max_size or None,
        max_faces=max_faces(args),
        test_time_flip=args.test_time_flip,
    )
    if gallery is None:
        gallery = open_gallery(args, create=True)
    return RecognitionPipeline(config, gallery=gallery)


def scratch_pipeline(args: argparse.Namespace, matches: bool = True):
    """A pipeline whose gallery is a throw-away file: evaluations and benchmarks never touch the user's."""
    import atexit
    import shutil
    import tempfile

    from ..gallery import Gallery

    folder = tempfile.mkdtemp(prefix="face-eval-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return pipeline_from_args(args, gallery=Gallery(os.path.join(folder, "gallery.db")), matches=matches)


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()
