"""Speed of ``Matcher.match`` against a large synthetic gallery (used by ``scripts/bench_matching.py``)."""

from __future__ import annotations

import time

import numpy as np

from .gallery import GalleryEmbeddings
from .matching import Matcher


def _unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((rows, dim), dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def benchmark_matching(
    num_samples: int = 100_000,
    dim: int = 128,
    batch: int = 10,
    samples_per_person: int = 10,
    repeats: int = 20,
    k: int = 3,
) -> dict:
    """Milliseconds per match call of ``batch`` queries: wall clock (median, best) and CPU time.

    CPU time is reported too because wall-clock figures on a shared machine mostly measure the
    other processes.
    """
    rng = np.random.default_rng(0)
    person_ids = np.arange(num_samples, dtype=np.int64) // samples_per_person
    gallery = GalleryEmbeddings(
        _unit_rows(rng, num_samples, dim), person_ids, {int(p): f"person {p}" for p in np.unique(person_ids)}
    )
    queries = _unit_rows(rng, batch, dim)
    matcher = Matcher(threshold=0.5, margin=0.05, k=k)
    matcher.match(queries, gallery)  # warm-up: groups the gallery once, as in a running node
    times_ms = []
    cpu_start = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        matcher.match(queries, gallery)
        times_ms.append((time.perf_counter() - start) * 1000)
    cpu_ms = (time.process_time() - cpu_start) * 1000 / repeats
    return {
        "num_samples": num_samples,
        "num_people": int(person_ids[-1]) + 1,
        "dim": dim,
        "batch": batch,
        "k": k,
        "median_ms": round(float(np.median(times_ms)), 3),
        "min_ms": round(float(np.min(times_ms)), 3),
        "cpu_ms": round(cpu_ms, 3),
    }
