"""Export the detector or an encoder to ONNX or a TensorRT engine (``face-recognition-ros export``).

By default the file goes where :func:`backends.attach_backend` looks for it (the engine cache), so
an export on the robot's computer saves the first start from building it.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from .backends import attach, onnx_backend, probes, tensorrt_backend
from .backends.components import describe
from .backends.attach import BackendOptionError
from .cli.common import bounded
from .errors import BackendUnavailableError

FORMATS = ("onnx", "tensorrt")
_LOG = logging.getLogger("face_recognition_ros.engine_export")


def export_component(
    component: object, fmt: str, out: Path | str | None = None, fp16: bool = False, max_batch: int = 16,
    cache_dir: Path | str | None = None, device: str = "cuda", logger: logging.Logger | None = None,
) -> Path:
    """Write ``component``'s network as ONNX (checked by onnx.checker and a parity run) or a TensorRT engine."""
    logger = logger or _LOG
    if fmt not in FORMATS:
        raise BackendOptionError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    info = describe(component)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else attach.default_cache_dir()
    if fmt == "onnx":
        if fp16:
            raise BackendOptionError("--fp16 applies to tensorrt; ONNX models are exported fp32 "
                             "(ONNX Runtime's TensorRT provider runs them fp16 with --precision fp16)")
        target = Path(out) if out is not None else onnx_backend.onnx_cache_path(info, cache)
        return onnx_backend.export_onnx(info, target, logger)
    probe = probes.tensorrt_probe()
    if not probe.ok:
        raise BackendUnavailableError(f"cannot build a TensorRT engine here: {probe.reason}")
    runner = tensorrt_backend.build_tensorrt_runner(
        info, device, "fp16" if fp16 else "fp32", max_batch, cache, force_engine_update=True, logger=logger
    )
    import tensorrt
    import torch

    built = tensorrt_backend.engine_path(
        info, cache, tensorrt.__version__, torch.cuda.get_device_name(torch.device(device)), runner.precision, max_batch
    )
    if out is None or Path(out) == built:
        return built
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(built, out)
    return Path(out)


def export_encoder(
    name: str, fmt: str, out: Path | str | None = None, fp16: bool = False, max_batch: int = 16,
    weights: Path | str | None = None, **options,
) -> Path:
    """Export a registered encoder (``weights`` picks another checkpoint); see :func:`export_component`."""
    from .encoders import create_encoder

    encoder = create_encoder(name, **({"weights": weights} if weights else {}))
    return export_component(encoder, fmt, out, fp16, max_batch, **options)


def export_detector(
    fmt: str, out: Path | str | None = None, fp16: bool = False, max_size: int = 640, **options
) -> Path:
    """Export RetinaFace; a TensorRT engine takes ``max_size`` x ``max_size`` (rounded up to 32) frames."""
    from .detection import RetinaFaceDetector

    return export_component(RetinaFaceDetector(max_size=max_size), fmt, out, fp16, **options)


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export the detector or an encoder to ONNX or a TensorRT engine",
        description="Export a network. Without --out the file goes to the engine cache, where the node "
        "and the CLI find it on their next start.",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--encoder", metavar="NAME", help="encoder to export (dlib_resnet, efficientnet_b0)")
    which.add_argument("--detector", action="store_true", help="export the RetinaFace detector")
    parser.add_argument("--format", choices=FORMATS, default="onnx", dest="export_format")
    parser.add_argument("--fp16", action="store_true", help="fp16 TensorRT engine")
    parser.add_argument("--out", metavar="PATH", help="output file (default: the engine cache)")
    parser.add_argument("--encoder-weights", metavar="PATH", help="another checkpoint for the encoder")
    parser.add_argument("--max-batch", type=bounded(int, 1), default=16, help="largest batch a TensorRT encoder engine takes")
    parser.add_argument("--max-size", type=bounded(int, 16), default=640, help="detector engine input side (TensorRT)")
    parser.add_argument("--cache-dir", metavar="DIR", help="engine cache directory")
    parser.add_argument("--device", default="cuda", help="CUDA device a TensorRT engine is built on")
    parser.set_defaults(func=run_export)
    return parser


def run_export(args: argparse.Namespace) -> int:
    options = {"cache_dir": args.cache_dir, "device": args.device}
    if args.detector:
        path = export_detector(args.export_format, args.out, args.fp16, args.max_size, **options)
    else:
        path = export_encoder(
            args.encoder, args.export_format, args.out, args.fp16, args.max_batch, args.encoder_weights, **options
        )
    print(f"wrote {path}")
    return 0
