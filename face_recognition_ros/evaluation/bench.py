"""Frame benchmarks: per-stage latency and FPS of the pipeline per backend, against the face_recognition library.

Frames are 640x480 canvases holding 1, 5 or 10 real faces (LFW photos pasted on a grid, always the
same ones), JPEG-encoded once, so every system decodes the same bytes. Each system runs its
warm-up and timed frames in one block: interleaving them frame by frame let one system's idle
spinning threads (OpenMP, ONNX Runtime) slow the next system's first stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..data_paths import data_root
from ..errors import EvaluationError
from ..image_files import decode_image, load_image

FRAME_SIZE = (640, 480)  # width, height
STAGES = ("decode", "detect", "align", "embed", "match")
FACE_RECOGNITION = "face_recognition"
#: LFW images are 250x250 deep-funneled with the face centred; this square keeps face and hair
LFW_FACE_BOX = (45, 45, 205, 205)
CANVAS_GREY = 128
LARGEST_FACE = 300  # px: a single face does not fill the frame, as in a robot's view

PipelineFactory = Callable[[str], object]


# ---- frames -------------------------------------------------------------------------------------


def lfw_faces(lfw_dir: Path, count: int) -> list[np.ndarray]:
    """The first image of the first ``count`` people of LFW (sorted by name), cropped to the face."""
    people = sorted(p for p in Path(lfw_dir).iterdir() if p.is_dir())[:count] if Path(lfw_dir).is_dir() else []
    if len(people) < count:
        raise EvaluationError(f"{lfw_dir}: need {count} LFW people folders to compose frames, found {len(people)}")
    x1, y1, x2, y2 = LFW_FACE_BOX
    return [np.ascontiguousarray(load_image(sorted(person.glob("*.jpg"))[0])[y1:y2, x1:x2]) for person in people]


def grid_shape(count: int, size: tuple[int, int] = FRAME_SIZE) -> tuple[int, int]:
    """(columns, rows) of near-square cells for ``count`` faces in a frame of ``size``."""
    columns = math.ceil(math.sqrt(count * size[0] / size[1]))
    return columns, math.ceil(count / columns)


def compose_frame(faces: Sequence[np.ndarray], size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """Paste the faces on a grey canvas, one per grid cell, as large as the cell allows (RGB uint8)."""
    width, height = size
    frame = np.full((height, width, 3), CANVAS_GREY, np.uint8)
    columns, rows = grid_shape(len(faces), size)
    cell_w, cell_h = width // columns, height // rows
    side = min(int(min(cell_w, cell_h) * 0.92), LARGEST_FACE)
    for index, face in enumerate(faces):
        row, column = divmod(index, columns)
        x = column * cell_w + (cell_w - side) // 2
        y = row * cell_h + (cell_h - side) // 2
        frame[y : y + side, x : x + side] = cv2.resize(face, (side, side), interpolation=cv2.INTER_AREA)
    return frame


def encode_jpeg(frame_rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise EvaluationError("could not JPEG-encode a benchmark frame")
    return data.tobytes()


def benchmark_frames(faces_per_frame: Sequence[int], lfw_dir: Path) -> dict[int, bytes]:
    """JPEG bytes of one deterministic 640x480 frame per face count."""
    faces = lfw_faces(lfw_dir, max(faces_per_frame))
    return {count: encode_jpeg(compose_frame(faces[:count])) for count in faces_per_frame}


# ---- systems under test -------------------------------------------------------------------------


class PipelineSystem:
    """Our pipeline: decode, then ``process`` (which times detect / align / embed / match itself)."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline

    def run(self, data: bytes) -> tuple[dict[str, float], int]:
        start = time.perf_counter()
        frame = decode_image(data)
        decoded = time.perf_counter()
        result = self.pipeline.process(frame)
        end = time.perf_counter()
        stages = {stage: float(result.timings_ms.get(stage, 0.0)) for stage in STAGES[1:]}
        stages |= {"decode": (decoded - start) * 1000, "total": (end - start) * 1000}
        return stages, len(result.faces)


class FaceRecognitionSystem:
    """The face_recognition library as its README shows it: HOG locations, then 128-d encodings.

    Its landmark fit and chip extraction happen inside ``face_encodings``: they count as "embed".
    """

    def __init__(self, known_images: Sequence[np.ndarray]) -> None:
        import face_recognition

        self.library = face_recognition
        # The enrolled faces fill the centre of an LFW crop: given that box, HOG cannot miss one.
        centre = [self._central_box(image) for image in known_images]
        self.known = np.array([face_recognition.face_encodings(image, [box])[0] for image, box in zip(known_images, centre)])

    @staticmethod
    def _central_box(image: np.ndarray) -> tuple[int, int, int, int]:
        height, width = image.shape[:2]
        return (height // 5, width * 4 // 5, height * 4 // 5, width // 5)  # top, right, bottom, left

    def run(self, data: bytes) -> tuple[dict[str, float], int]:
        times = [time.perf_counter()]
        frame = decode_image(data)
        times.append(time.perf_counter())
        locations = self.library.face_locations(frame)
        times.append(time.perf_counter())
        encodings = self.library.face_encodings(frame, locations)
        times.append(time.perf_counter())
        for encoding in encodings:
            self.library.compare_faces(self.known, encoding)
        times.append(time.perf_counter())
        decode, detect, embed, match = (1000 * (b - a) for a, b in zip(times, times[1:]))
        stages = {"decode": decode, "detect": detect, "align": 0.0, "embed": embed, "match": match}
        return stages | {"total": (times[-1] - times[0]) * 1000}, len(locations)


def default_pipeline_factory(
    encoder: str = "dlib_resnet", device: str = "cpu", precision: str = "fp32", detector_max_size: int | None = 640,
    enroll: Sequence[np.ndarray] = (), workdir: Path | None = None, threads: int | None = None,
    test_time_flip: bool = False,
) -> PipelineFactory:
    """Pipelines as the CLI builds them, with a throw-away gallery holding the ``enroll`` faces.

    ``threads`` re-attaches the pipeline's backend with that many intra-op threads (torch's setting
    is process-wide).
    """
    from ..gallery import Gallery
    from ..pipeline import PipelineConfig, RecognitionPipeline

    workdir = Path(workdir or tempfile.mkdtemp(prefix="face-bench-"))

    def make(backend: str):
        config = PipelineConfig(
            encoder=encoder, backend=backend, device=device, precision=precision,
            detector_max_size=detector_max_size, max_faces=None, engine_cache_dir=None, test_time_flip=test_time_flip,
        )
        gallery = Gallery(workdir / f"gallery-{backend}-{time.monotonic_ns()}.db")
        pipeline = RecognitionPipeline(config, gallery=gallery)
        if threads:
            from ..backends import attach_backend

            for component in (pipeline.detector, pipeline.encoder):
                attach_backend(component, backend, device=device, precision=precision, threads=threads)
        for index, image in enumerate(enroll):
            pipeline.enroll_images(f"person {index}", [image])
        return pipeline

    return make


# ---- measurements -------------------------------------------------------------------------------


def _summary(samples: list[dict[str, float]], faces_found: int) -> dict:
    medians = {stage: statistics.median(s[stage] for s in samples) for stage in (*STAGES, "total")}
    return {
        "stages_ms": {stage: round(medians[stage], 2) for stage in STAGES},
        "total_ms": round(medians["total"], 2),
        "fps": round(1000.0 / medians["total"], 2),
        "faces_found": faces_found,
    }


def bench_frames(
    pipeline_factory: PipelineFactory | None = None,
    faces_per_frame: Sequence[int] = (1, 5, 10),
    backends: Sequence[str] = ("torch", "onnxruntime"),
    repeat: int = 10,
    warmup: int = 2,
    compare_face_recognition: bool = True,
    lfw_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Median per-stage milliseconds and end-to-end FPS per face count and system, plus our/their FPS ratios."""
    if repeat < 1 or warmup < 0:
        raise EvaluationError(f"repeat must be >= 1 and warmup >= 0, got {repeat}, {warmup}")
    if not faces_per_frame or min(faces_per_frame) < 1:
        raise EvaluationError(f"faces per frame must be positive counts, got {list(faces_per_frame)}")
    lfw = Path(lfw_dir) if lfw_dir else data_root() / "lfw"
    frames = benchmark_frames(faces_per_frame, lfw)
    say = progress or (lambda message: None)
    # People in the gallery: LFW people after those in the frames, so matching has real work to do.
    known = lfw_faces(lfw, max(faces_per_frame) + 4)[-4:]
    factory = pipeline_factory or default_pipeline_factory(enroll=known)
    systems: dict[str, object] = {}
    for backend in backends:
        say(f"setting up {backend}")
        pipeline = factory(backend)
        used = getattr(pipeline, "backend", backend)
        systems[backend if used == backend else f"{backend}->{used}"] = PipelineSystem(pipeline)
    if compare_face_recognition:
        say("setting up face_recognition")
        systems[FACE_RECOGNITION] = FaceRecognitionSystem(known)

    results: dict[str, dict] = {}
    for count, data in frames.items():
        say(f"{count} face(s) per frame")
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in systems}
        found: dict[str, int] = {}
        for name, system in systems.items():
            for repetition in range(warmup + repeat):
                stages, found[name] = system.run(data)
                if repetition >= warmup:
                    samples[name].append(stages)
        entry = {name: _summary(samples[name], found[name]) for name in systems}
        if FACE_RECOGNITION in entry:
            theirs = entry[FACE_RECOGNITION]["fps"]
            for name in systems:
                if name != FACE_RECOGNITION:
                    entry[name]["fps_ratio_vs_face_recognition"] = round(entry[name]["fps"] / theirs, 2)
        results[str(count)] = entry
    return {"frame_size": list(FRAME_SIZE), "repeat": repeat, "warmup": warmup, "frames": results, "hardware": hardware()}


def encoder_throughput(
    encoder_name: str = "dlib_resnet", backends: Sequence[str] = ("torch", "onnxruntime"),
    precisions: Sequence[str] = ("fp32",), device: str = "cpu", batch: int = 64, repeat: int = 5,
    lfw_dir: Path | None = None, cache_dir: Path | None = None, threads: int | None = None,
) -> dict[str, float]:
    """Faces per second embedding one batch of ``batch`` aligned real faces, per backend/precision."""
    from ..alignment import align_faces
    from ..backends import attach_backend
    from ..detection import RetinaFaceDetector
    from ..encoders import create_encoder

    frame = compose_frame(lfw_faces(Path(lfw_dir) if lfw_dir else data_root() / "lfw", 10))
    detections = RetinaFaceDetector().detect(frame)
    if len(detections) == 0:
        raise EvaluationError("no face found in the throughput frame")
    results: dict[str, float] = {}
    for backend in backends:
        for precision in precisions:
            encoder = create_encoder(encoder_name)
            used = attach_backend(encoder, backend, device=device, precision=precision, max_batch=batch, cache_dir=cache_dir, threads=threads)
            crops = align_faces(frame, detections.landmarks, encoder.template)
            crops = np.ascontiguousarray(np.resize(crops, (batch, *crops.shape[1:])))
            encoder.embed(crops)  # warm-up: lazy initialisation, allocator, cuDNN / TensorRT tactics
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                encoder.embed(crops)
                times.append(time.perf_counter() - start)
            key = f"{used}/{getattr(encoder.runner, 'precision', precision)}"
            results[key] = round(batch / statistics.median(times), 1)
    return results


def hardware() -> dict:
    """What the figures were measured on; the load average tells whether the machine was shared."""
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


# ---- command line (wired by the CLI as ``bench --frames``) --------------------------------------


def add_frames_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench --frames`` beside the ``bench`` command's --repeat, --warmup, --json and model options."""
    group = parser.add_argument_group("frame benchmark (--frames)")
    group.add_argument("--frames", action="store_true", help="benchmark 640x480 frames with 1, 5 and 10 faces")
    group.add_argument("--faces", type=int, nargs="+", default=[1, 5, 10], metavar="N", help="faces per frame")
    group.add_argument("--backends", nargs="+", metavar="NAME",
                       help="backends to compare (default: torch, onnxruntime, and tensorrt when it can run)")
    group.add_argument("--no-face-recognition", action="store_true", help="skip the face_recognition library")
    group.add_argument("--encoder-batch", type=int, default=64, help="batch for encoder throughput (0: skip)")
    group.add_argument("--lfw", metavar="DIR", help="LFW folder (default: the data root's lfw/)")
    group.add_argument("--output", metavar="PATH", help="also write the JSON report to this file")


def default_backends(device: str) -> list[str]:
    from ..backends import probes

    backends = ["torch", "onnxruntime"]
    if device.startswith("cuda") and probes.tensorrt_probe().ok:
        backends.append("tensorrt")
    return backends


def run_frames_bench(args: argparse.Namespace) -> int:
    device = getattr(args, "device", "cpu")
    precision = getattr(args, "precision", "fp32")
    backends = args.backends or default_backends(device)
    lfw = Path(args.lfw) if args.lfw else None
    lfw_root = lfw or data_root() / "lfw"
    known = lfw_faces(lfw_root, max(args.faces) + 4)[-4:]
    factory = default_pipeline_factory(
        getattr(args, "encoder", "dlib_resnet"), device, precision, getattr(args, "detector_max_size", 640) or None, known,
        threads=args.threads, test_time_flip=getattr(args, "test_time_flip", False),
    )
    report = bench_frames(
        factory, args.faces, backends, getattr(args, "repeat", 10), getattr(args, "warmup", 2),
        not args.no_face_recognition, lfw, progress=lambda message: print(f"... {message}", file=sys.stderr),
    )
    if args.encoder_batch:
        precisions = ("fp32", "fp16") if device.startswith("cuda") else ("fp32",)
        report["encoder_throughput_faces_per_s"] = encoder_throughput(
            getattr(args, "encoder", "dlib_resnet"), backends, precisions, device, args.encoder_batch, lfw_dir=lfw, threads=args.threads
        )
    text = json.dumps(report, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    if getattr(args, "json", False):
        print(text)
    else:
        print(format_report(report))
    return 0


def format_report(report: dict) -> str:
    """A plain-text table: one row per face count and system."""
    lines = [f"{report['frame_size'][0]}x{report['frame_size'][1]} frames, median of {report['repeat']} runs "
             f"({report['hardware']['cpu']}, {report['hardware']['cores']} cores, load {report['hardware']['load_average_1min']})"]
    lines.append(f"{'faces':>5} {'system':<26}" + "".join(f"{s:>9}" for s in STAGES) + f"{'total':>9}{'FPS':>8}{'ratio':>7}{'found':>6}")
    for count, entry in report["frames"].items():
        for name, row in entry.items():
            ratio = row.get("fps_ratio_vs_face_recognition")
            lines.append(
                f"{count:>5} {name:<26}" + "".join(f"{row['stages_ms'][s]:9.1f}" for s in STAGES)
                + f"{row['total_ms']:9.1f}{row['fps']:8.2f}{(f'{ratio:.2f}x' if ratio else '-'):>7}{row['faces_found']:6d}"
            )
    for key, value in report.get("encoder_throughput_faces_per_s", {}).items():
        lines.append(f"encoder throughput {key}: {value:.1f} faces/s")
    return "\n".join(lines)
