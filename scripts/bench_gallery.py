#!/usr/bin/env python3
"""The gallery's figures for the README (section "A gallery for a fleet of robots"), SQLite against PostgreSQL:

1. load time of a gallery of 10,000 people x 5 samples (open + the embeddings of one encoder);
2. enroll-to-visible latency across processes: from the call to ``enroll`` in one process to the
   first match naming the person in another (which checks as fast as it can), p50/p95;
3. match latency (``RecognitionPipeline.match``: gallery check + reload when changed + matching) of
   a recognising process at 30 frames/s, quiet and while another process enrolls a person every 0.25 s.

    bash scripts/with_postgres.sh python3 scripts/bench_gallery.py          # a throw-away cluster
    python3 scripts/bench_gallery.py --postgres postgresql://me@db/faces    # an existing one (a schema is made and dropped)

The recognising processes run the real ``RecognitionPipeline`` with the weightless detector and
encoder of ``test/stub_models.py`` (the figures are about the gallery, not the networks). Crops are
small synthetic PNGs (``--crop-bytes``; real ones are 60-120 kB): the loads read embeddings only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "test")]

from face_recognition_ros.alignment import STORAGE_TEMPLATE  # noqa: E402
from face_recognition_ros.gallery import CROP_SHAPE, PersonRecord, SampleRecord, open_gallery  # noqa: E402

ENCODER = "stub:00000000:00000000"  # stub_models.IDENTITY
DIM = 128  # as dlib_resnet's embeddings


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q))


def unit(rng, count: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def crop_png(size: int) -> bytes:
    import cv2

    crop = np.zeros(CROP_SHAPE, np.uint8)
    side = max(1, int(np.sqrt(size / 3)))
    crop[:side, :side] = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return cv2.imencode(".png", crop)[1].tobytes()


def build(setting, people: int, samples: int, crop: bytes) -> None:
    """A gallery of ``people`` x ``samples`` written in one bulk import (as ``gallery copy`` would)."""
    rng = np.random.default_rng(1)
    landmarks = STORAGE_TEMPLATE.landmarks.astype("<f4").tobytes()
    now = time.time()
    records = [PersonRecord(i + 1, f"person {i + 1:05d}", now) for i in range(people)]

    def batches():
        for start in range(0, people, 500):
            stop = min(people, start + 500)
            embeddings = unit(rng, (stop - start) * samples, DIM)
            yield [SampleRecord(p * samples + s + 1, p + 1, embeddings[(p - start) * samples + s].astype("<f4").tobytes(),
                                DIM, ENCODER, crop, landmarks, now)
                   for p in range(start, stop) for s in range(samples)]

    with open_gallery(setting) as gallery:
        gallery.import_records(records, batches(), replace=True)


def load_seconds(setting, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with open_gallery(setting, create=False) as gallery:
            loaded = gallery.embeddings(ENCODER)
        times.append(time.perf_counter() - start)
    assert len(loaded) > 0
    return statistics.median(times)


# -- the recognising process -------------------------------------------------------------------------


def recogniser(setting: str, mode: str, seconds: float) -> None:
    from stub_models import embedding_of, stub_pipeline

    pipeline = stub_pipeline(open_gallery(setting), DIM)
    print(json.dumps({"ready": True, "samples": len(pipeline._gallery_embeddings)}), flush=True)
    if mode == "watch":  # as fast as it goes: when is the next trial person (stub person 10,000 + i) recognised?
        index = 0
        while True:
            if pipeline.match(embedding_of(10_000 + index, DIM)[None])[0].is_known:
                print(json.dumps({"seen": index, "t": time.time()}), flush=True)
                index += 1
            time.sleep(0.001)
    rng = np.random.default_rng(3)
    queries = unit(rng, 10, DIM)  # ten faces a frame
    latencies, refreshes, end = [], [], time.monotonic() + seconds
    next_frame = time.monotonic()
    while time.monotonic() < end:
        start = time.perf_counter()
        pipeline._refresh_if_reachable()  # the gallery's share: check, and take in a change (match does it too)
        checked = time.perf_counter()
        pipeline.match(queries)
        latencies.append((time.perf_counter() - start) * 1000)
        refreshes.append((checked - start) * 1000)
        next_frame += 1 / 30
        time.sleep(max(0.0, next_frame - time.monotonic()))
    print(json.dumps({"latencies_ms": latencies, "refresh_ms": refreshes}), flush=True)


class Child:
    def __init__(self, setting: str, mode: str, seconds: float = 0.0) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, "--role", mode, "--setting", str(setting),
                                         "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True,
                                        env=os.environ | {"OMP_NUM_THREADS": "1"})
        first = self.line()
        assert first.get("ready"), first

    def line(self) -> dict:
        text = self.process.stdout.readline()
        if not text:
            raise RuntimeError(f"the recognising process ended (exit {self.process.wait()})")
        return json.loads(text)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def trial_samples(index: int, count: int):
    """``count`` samples of trial person ``index`` (stub person 10,000 + index): what the watcher looks for."""
    from stub_models import embedding_of

    embeddings = np.repeat(embedding_of(10_000 + index, DIM)[None], count, axis=0)
    crops = np.zeros((count, *CROP_SHAPE), np.uint8)
    crops[:, :16, :16] = index % 256
    return embeddings, crops


def visibility(setting, trials: int, samples: int) -> list[float]:
    child = Child(setting, "watch")
    latencies = []
    try:
        with open_gallery(setting) as gallery:
            for index in range(trials):
                embeddings, crops = trial_samples(index, samples)
                start = time.time()
                gallery.enroll(f"trial {index}", embeddings, crops, ENCODER)
                committed = time.time()
                line = child.line()
                assert line["seen"] == index, line
                latencies.append((line["t"] - start, committed - start))
                time.sleep(0.3)
            for index in range(trials):
                gallery.forget(f"trial {index}")
    finally:
        child.close()
    return latencies


def match_latency(setting, seconds: float, enroll: bool, samples: int) -> tuple[dict, int]:
    child = Child(setting, "frames", seconds)
    enrolled = 0
    try:
        if enroll:
            with open_gallery(setting) as gallery:
                end = time.monotonic() + seconds
                while time.monotonic() < end - 0.3:
                    gallery.enroll(f"busy {enrolled}", *trial_samples(50 + enrolled % 40, samples), ENCODER)
                    enrolled += 1
                    time.sleep(0.25)
        figures = child.line()
    finally:
        child.close()
    if enroll:
        with open_gallery(setting) as gallery:
            for index in range(enrolled):
                gallery.forget(f"busy {index}")
    return figures, enrolled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--trials", type=int, default=20, help="enrollments timed across processes")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each match-latency run")
    parser.add_argument("--crop-bytes", type=int, default=2000, help="size of each synthetic crop's noise")
    parser.add_argument("--postgres", default=os.environ.get("FACE_RECOGNITION_TEST_POSTGRES_URL", ""),
                        help="a PostgreSQL database to make a scratch schema in (default: $FACE_RECOGNITION_TEST_POSTGRES_URL)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", choices=["watch", "frames"], help=argparse.SUPPRESS)
    parser.add_argument("--setting", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        recogniser(args.setting, args.role, args.seconds)
        return 0

    folder = tempfile.mkdtemp(prefix="bench-gallery-")
    settings = {"sqlite": Path(folder) / "gallery.db"}
    schema = None
    if args.postgres:
        import psycopg

        schema = "bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if "?" in args.postgres else "?"
        settings["postgresql"] = f"{args.postgres}{separator}options=-c%20search_path%3D{schema}"
    else:
        print("bench_gallery: no PostgreSQL (--postgres or $FACE_RECOGNITION_TEST_POSTGRES_URL): SQLite only",
              file=sys.stderr)
    crop = crop_png(args.crop_bytes)
    results = {}
    try:
        for kind, setting in settings.items():
            print(f"{kind}: building {args.people} x {args.samples}", file=sys.stderr, flush=True)
            build(setting, args.people, args.samples, crop)
            figures = {"load_s": load_seconds(setting)}
            visible = visibility(setting, args.trials, args.samples)
            seen, enrolling = [v[0] for v in visible], [v[1] for v in visible]
            figures |= {"visible_p50_ms": percentile(seen, 50) * 1000, "visible_p95_ms": percentile(seen, 95) * 1000,
                        "visible_max_ms": max(seen) * 1000, "enroll_p50_ms": percentile(enrolling, 50) * 1000}
            for label, enroll in (("quiet", False), ("enrolling", True)):
                measured, enrolled = match_latency(setting, args.seconds, enroll, args.samples)
                latencies = measured["latencies_ms"]
                figures[f"refresh_{label}_p95_ms"] = percentile(measured["refresh_ms"], 95)
                figures[f"refresh_{label}_max_ms"] = max(measured["refresh_ms"])
                figures[f"match_{label}_p50_ms"] = percentile(latencies, 50)
                figures[f"match_{label}_p95_ms"] = percentile(latencies, 95)
                figures[f"match_{label}_max_ms"] = max(latencies)
                figures[f"match_{label}_frames"] = len(latencies)
                if enroll:
                    figures["enrollments_during"] = enrolled
            results[kind] = figures
            print(f"{kind}: {json.dumps(figures)}", file=sys.stderr, flush=True)
    finally:
        if schema:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"gallery of {args.people} people x {args.samples} samples ({DIM}-d embeddings), "
          f"{args.trials} enrollments timed, match runs of {args.seconds:g} s at 30 frames/s, 10 faces a frame")
    print(f"{'':34}" + "".join(f"{kind:>14}" for kind in results))
    rows = [("load (open + embeddings), s", "load_s", "{:.3f}"),
            ("enroll-to-visible p50, ms", "visible_p50_ms", "{:.1f}"),
            ("enroll-to-visible p95, ms", "visible_p95_ms", "{:.1f}"),
            ("  of which the enroll call p50, ms", "enroll_p50_ms", "{:.1f}"),
            ("match p50 / p95, quiet, ms", ("match_quiet_p50_ms", "match_quiet_p95_ms"), "{:.2f} / {:.2f}"),
            ("match p50 / p95, enrolling, ms", ("match_enrolling_p50_ms", "match_enrolling_p95_ms"), "{:.2f} / {:.2f}"),
            ("match max quiet / enrolling, ms", ("match_quiet_max_ms", "match_enrolling_max_ms"), "{:.1f} / {:.1f}"),
            ("  gallery's share p95, enrolling", "refresh_enrolling_p95_ms", "{:.2f}"),
            ("  gallery's share max, enrolling", "refresh_enrolling_max_ms", "{:.2f}")]
    for label, keys, fmt in rows:
        keys = keys if isinstance(keys, tuple) else (keys,)
        print(f"{label:34}" + "".join(f"{fmt.format(*(r[k] for k in keys)):>14}" for r in results.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
