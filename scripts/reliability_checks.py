#!/usr/bin/env python3
"""The reliability checks behind the README's "Reliability" figures, each printing its figure.

    python3 scripts/reliability_checks.py traces        # bytes of a forgotten person left on disk
    python3 scripts/reliability_checks.py full-disk     # forget and rename on a full disk (root: tmpfs)
    python3 scripts/reliability_checks.py header-bomb   # time and peak memory of a 32000x32000 JPEG header
    python3 scripts/reliability_checks.py kill [--runs 10]      # SIGKILL during live enrollment
    python3 scripts/reliability_checks.py fuzz [--files 300]    # mutated photos through recognize and enroll
    python3 scripts/reliability_checks.py soak [--minutes 10] [--rate 30]   # memory and latency over time
    python3 scripts/reliability_checks.py all --json

Everything runs without ROS, on the core the node runs (Recognizer, Gallery, image_files), with the
example media of $FACE_RECOGNITION_DATA/media (or ../shared/data/media).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from face_recognition_ros.data_paths import data_root  # noqa: E402

MEDIA = data_root() / "media"
ENV = os.environ | {"PYTHONPATH": str(REPO)}


def run_python(code: str, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)
    if check and done.returncode != 0:
        raise RuntimeError(f"check failed:\n{done.stderr}")
    return done


def check_traces(args) -> dict:
    """Forget a person while another process holds the gallery open; count their bytes left on disk."""
    code = """
    import sqlite3, subprocess, sys, numpy as np
    from pathlib import Path
    from face_recognition_ros.gallery import CROP_SHAPE, Gallery
    folder = Path(sys.argv[1]); path = folder / "gallery.db"
    rng = np.random.default_rng(0)
    def samples(n):
        e = rng.standard_normal((n, 128)).astype(np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True), rng.integers(0, 256, (n, *CROP_SHAPE), dtype=np.uint8)
    gallery = Gallery(path)
    gallery.enroll("Stays Here", *samples(3), "enc:0:0")
    gallery.enroll("Erase Me Zyx", *samples(5), "enc:0:0")
    stored = sqlite3.connect(path).execute("SELECT crop, embedding FROM samples WHERE person_id = 2").fetchall()
    needles = [b"Erase Me Zyx"] + [blob[o:o + 48] for crop, emb in stored for blob in (crop,)
                                   for o in range(200, len(blob) - 248, len(blob) // 10)] + [e for _, e in stored]
    holder = subprocess.Popen([sys.executable, "-c",
        "import sys; from face_recognition_ros.gallery import Gallery; g = Gallery(sys.argv[1]); g.list_people(); "
        "print('open', flush=True); sys.stdin.readline()", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    holder.stdout.readline()
    before = sum(f.read_bytes().count(n) for f in folder.iterdir() for n in needles)
    gallery.forget("Erase Me Zyx")
    after = sum(f.read_bytes().count(n) for f in folder.iterdir() for n in needles)
    holder.kill()
    print(before, after, len(needles), len(list(folder.iterdir())))
    """
    with tempfile.TemporaryDirectory() as folder:
        before, after, needles, files = map(int, run_python(code, folder).stdout.split())
    return {"traces_before_forget": before, "traces_after_forget": after, "needles": needles, "files_searched": files}


def check_full_disk(args) -> dict:
    """Fill a 24 MB tmpfs, then enroll (must fail cleanly), rename and forget (must succeed)."""
    if os.geteuid() != 0:
        return {"skipped": "needs root to mount a tmpfs in a private mount namespace"}
    code = """
    import sys, numpy as np
    from face_recognition_ros.errors import GalleryError
    from face_recognition_ros.gallery import CROP_SHAPE, Gallery
    rng = np.random.default_rng(0)
    def samples(n):
        e = rng.standard_normal((n, 128)).astype(np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True), rng.integers(0, 256, (n, *CROP_SHAPE), dtype=np.uint8)
    g = Gallery(sys.argv[1] + "/gallery.db")
    g.enroll("Keep", *samples(2), "e:0:0"); g.enroll("Erase", *samples(8), "e:0:0")
    try:
        while True:
            with open(sys.argv[1] + "/filler", "ab") as f: f.write(bytes(1 << 20))
    except OSError: pass
    try: g.enroll("More", *samples(8), "e:0:0"); enroll = "succeeded"
    except GalleryError as error: enroll = "refused" if "full" in str(error) else str(error)
    g.rename("Keep", "Kept"); removed = g.forget("Erase")
    print(enroll, removed, ",".join(p.name for p in g.list_people()))
    """
    with tempfile.TemporaryDirectory() as folder:
        disk = Path(folder) / "disk"
        disk.mkdir()
        script = Path(folder) / "full.py"
        script.write_text(textwrap.dedent(code))
        done = subprocess.run(["unshare", "-m", "sh", "-c",
                               f"mount -t tmpfs -o size=24m tmpfs {disk} && {sys.executable} {script} {disk}"],
                              capture_output=True, text=True, timeout=300, env=ENV)
    if done.returncode != 0:
        return {"error": done.stderr.strip()[-300:]}
    enroll, removed, people = done.stdout.split()
    return {"enroll_on_full_disk": enroll, "forget_on_full_disk": f"ok, {removed} samples removed",
            "rename_on_full_disk": "ok" if people == "Kept" else people}


def check_header_bomb(args) -> dict:
    """A 32000x32000 JPEG header against a normal photo: seconds and peak memory growth of load_image."""
    from PIL import Image
    import struct

    probe = """
    import json, resource, sys, time
    from face_recognition_ros.errors import ImageError
    from face_recognition_ros.image_files import load_image
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        load_image(sys.argv[1]); outcome = "loaded"
    except ImageError as error:
        outcome = str(error)
    print(json.dumps({"seconds": round(time.perf_counter() - start, 4), "outcome": outcome,
                      "peak_growth_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, 1)}))
    """
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    marker = data.find(b"\xff\xc0")
    data[marker + 5:marker + 9] = struct.pack(">HH", 32000, 32000)
    with tempfile.TemporaryDirectory() as folder:
        bomb = Path(folder) / "bomb.jpg"
        bomb.write_bytes(bytes(data))
        photo = json.loads(run_python(probe, str(MEDIA / "obama.jpg")).stdout)
        refused = json.loads(run_python(probe, str(bomb)).stdout)
    return {"bomb_file_bytes": len(data), "bomb": refused, "normal_photo": photo}


KILL_CHILD = """
import sys, threading, time, numpy as np
from face_recognition_ros.image_files import load_image
from face_recognition_ros.pipeline import PipelineConfig, RecognitionPipeline
from face_recognition_ros.recognizer import Recognizer
recognizer = Recognizer(RecognitionPipeline(PipelineConfig(backend="onnxruntime", threads=1, gallery_path=sys.argv[1])))
recognizer.enrollment_settings = type(recognizer.enrollment_settings)(num_samples=3, duplicate_similarity=0.999)
photos = [load_image(p) for p in sys.argv[2:]]
frames = photos + [np.ascontiguousarray(p[:, ::-1]) for p in photos]
threading.Thread(target=lambda: recognizer.enroll_live("Killed Midway", 3, 30.0), daemon=True).start()
print("running", flush=True)
index = 0
while True:
    recognizer.process(frames[index % len(frames)])
    index += 1
"""


def check_kill(args) -> dict:
    """SIGKILL a live enrollment at a random moment, again and again: the person is absent or complete."""
    photos = [str(p) for p in sorted((MEDIA / "knn_examples" / "train" / "obama").glob("*.jpg"))] + \
             [str(MEDIA / "obama-480p.jpg")]
    outcomes = {"absent": 0, "complete": 0, "partial": 0, "corrupt": 0}
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.runs):
            gallery = Path(folder) / f"gallery{run}.db"
            child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(gallery), *photos], stdout=subprocess.PIPE,
                                     env=ENV)
            child.stdout.readline()
            time.sleep(rng.uniform(0.2, 4.0))
            child.send_signal(signal.SIGKILL)
            child.wait()
            connection = sqlite3.connect(gallery)
            if connection.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                outcomes["corrupt"] += 1
                continue
            counts = [row[0] for row in connection.execute(
                "SELECT COUNT(s.id) FROM people p LEFT JOIN samples s ON s.person_id = p.id GROUP BY p.id")]
            connection.close()
            outcomes["absent" if not counts else "complete" if counts == [3] else "partial"] += 1
    return {"runs": args.runs, **outcomes}


def mutations(data: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    data = bytearray(data)
    if kind == 0:  # flipped bytes all over
        for _ in range(rng.randint(1, 200)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:  # truncated
        data = data[: rng.randrange(1, len(data))]
    elif kind == 2:  # header mangled
        for index in range(rng.randint(2, 40)):
            data[index] = rng.randrange(256)
    elif kind == 3:  # random bytes behind a real signature
        data = data[:8] + bytearray(rng.randbytes(rng.randint(0, 5000)))
    elif kind == 4:  # chunk repeated
        start = rng.randrange(len(data))
        data = data[:start] + data[start:start + 5000] * rng.randint(2, 20) + data[start:]
    else:  # pure noise
        data = bytearray(rng.randbytes(rng.randint(0, 20000)))
    return bytes(data)


def check_fuzz(args) -> dict:
    """Mutated photos (flips, truncation, mangled headers, noise) through `recognize` and `enroll`."""
    from face_recognition_ros.cli.main import main

    sources = [p.read_bytes() for p in sorted(MEDIA.glob("*.jpg")) + sorted(MEDIA.glob("*.png"))]
    rng = random.Random(args.seed)
    codes: dict[str, int] = {}
    crashes = []
    with tempfile.TemporaryDirectory() as folder:
        gallery = Path(folder) / "gallery.db"
        main(["enroll", "Someone", str(MEDIA / "obama.jpg"), "--gallery", str(gallery), "--backend", "onnxruntime"])
        for index in range(args.files):
            path = Path(folder) / f"fuzz{index:04d}{rng.choice(['.jpg', '.png', '.gif', '', '.bmp'])}"
            path.write_bytes(mutations(rng.choice(sources), rng))
            command = ["recognize", str(path)] if index % 2 == 0 else ["enroll", "Fuzzed", str(path)]
            stdout, stderr = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = io.StringIO()
            try:
                code = main([*command, "--gallery", str(gallery), "--backend", "onnxruntime", "--json"])
            except BaseException as error:  # noqa: BLE001 - a crash is what this counts
                code = "crash"
                crashes.append(f"{path.name}: {type(error).__name__}: {error}")
            finally:
                sys.stdout, sys.stderr = stdout, stderr
            codes[str(code)] = codes.get(str(code), 0) + 1
            path.unlink()
        intact = sqlite3.connect(gallery).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return {"files": args.files, "exit_codes": codes, "crashes": len(crashes), "first_crashes": crashes[:5],
            "gallery_intact": intact}


def check_soak(args) -> dict:
    """Frames at a fixed rate through the Recognizer for a while: memory growth and latency drift."""
    import cv2
    import numpy as np

    from face_recognition_ros.gallery import Gallery
    from face_recognition_ros.image_files import load_image
    from face_recognition_ros.pipeline import PipelineConfig, RecognitionPipeline
    from face_recognition_ros.recognizer import Recognizer

    with tempfile.TemporaryDirectory() as folder:
        pipeline = RecognitionPipeline(PipelineConfig(backend="onnxruntime", threads=1),
                                       gallery=Gallery(Path(folder) / "gallery.db"))
        recognizer = Recognizer(pipeline)
        recognizer.enroll_images("Obama", [load_image(MEDIA / "obama.jpg")])
        photo = load_image(MEDIA / "two_people.jpg")
        frame = cv2.resize(photo, (640, 480), interpolation=cv2.INTER_AREA)
        period, duration = 1.0 / args.rate, args.minutes * 60.0
        start = time.monotonic()
        samples = []  # (elapsed s, latency ms, rss MB)
        next_frame = start
        while (now := time.monotonic()) - start < duration:
            if now < next_frame:
                time.sleep(next_frame - now)
            began = time.monotonic()
            shifted = np.roll(frame, int(began * 10) % 7, axis=1)  # not the very same pixels each time
            recognizer.process(shifted)
            done = time.monotonic()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            samples.append((done - start, (done - began) * 1000, rss))
            next_frame = max(next_frame + period, done)
    elapsed = samples[-1][0]
    tenth = max(1, len(samples) // 10)
    first, last = samples[:tenth], samples[-tenth:]
    slope = (last[-1][2] - samples[tenth][2]) / max(1e-9, (last[-1][0] - samples[tenth][0]) / 60)
    return {"minutes": round(elapsed / 60, 2), "frames": len(samples), "rate_hz": round(len(samples) / elapsed, 1),
            "latency_ms_p50_first_tenth": round(statistics.median(s[1] for s in first), 1),
            "latency_ms_p50_last_tenth": round(statistics.median(s[1] for s in last), 1),
            "peak_rss_mb": round(samples[-1][2], 1), "rss_growth_mb_per_min_after_warmup": round(slope, 3)}


CHECKS = {"traces": check_traces, "full-disk": check_full_disk, "header-bomb": check_header_bomb,
          "kill": check_kill, "fuzz": check_fuzz, "soak": check_soak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("check", choices=[*CHECKS, "all"])
    parser.add_argument("--runs", type=int, default=10, help="kill: enrollments killed")
    parser.add_argument("--files", type=int, default=300, help="fuzz: mutated files")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak: duration")
    parser.add_argument("--rate", type=float, default=30.0, help="soak: frames per second offered")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = list(CHECKS) if args.check == "all" else [args.check]
    results = {name: CHECKS[name](args) for name in chosen}
    print(json.dumps(results, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
