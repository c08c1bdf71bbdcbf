"""A live camera stream's flow and health, free of ROS: the node wires these to its topics.

* :class:`LatestFrameSlot`: frames are never queued. The camera callback puts each frame in a
  one-item slot (a newer one replaces one not yet taken, which counts as dropped) and the worker
  always takes the newest, so latency stays one frame's processing time at any camera rate.
* :class:`StreamStats`: counters, processing rate and latency percentiles over recent frames.
* :class:`HealthReport`: the level, message and key/value pairs of a ``/diagnostics`` status.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

Item = TypeVar("Item")
#: frames kept for the latency and rate figures
WINDOW = 200
#: the processing rate is measured over frames finished in the last this many seconds
RATE_WINDOW_S = 5.0


class LatestFrameSlot(Generic[Item]):
    """One slot: ``put`` replaces what is there, ``take`` empties it, ``wait`` blocks until it is filled."""

    def __init__(self) -> None:
        self._item: Item | None = None
        self._lock = threading.Lock()
        self._ready = threading.Event()

    def put(self, item: Item) -> bool:
        """Store ``item``; True when it replaced one nobody took (a dropped frame)."""
        with self._lock:
            replaced = self._item is not None
            self._item = item
        self._ready.set()
        return replaced

    def take(self) -> Item | None:
        with self._lock:
            item, self._item = self._item, None
            self._ready.clear()
        return item

    def wait(self, timeout: float) -> bool:
        """Whether something was put (or :meth:`wake` called) within ``timeout`` seconds."""
        return self._ready.wait(timeout)

    def wake(self) -> None:
        """Release a waiting worker (at shutdown) without an item."""
        self._ready.set()


@dataclass(frozen=True)
class StatsSnapshot:
    received: int
    processed: int
    dropped: int
    rejected: int
    rate_hz: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    last_error: str


class StreamStats:
    """Shared by the camera callback, the worker and the health timer (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = self.processed = self.dropped = self.rejected = 0
        self._latencies_ms: deque[float] = deque(maxlen=WINDOW)
        self._finished: deque[float] = deque(maxlen=WINDOW)
        self.last_error = ""

    def received_frame(self, replaced_one: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(replaced_one)

    def processed_frame(self, received_at: float, finished_at: float | None = None) -> None:
        """A frame's results were published; times are ``time.monotonic()`` seconds."""
        finished_at = time.monotonic() if finished_at is None else finished_at
        with self._lock:
            self.processed += 1
            self._latencies_ms.append((finished_at - received_at) * 1000.0)
            self._finished.append(finished_at)

    def rejected_frame(self, reason: str) -> None:
        with self._lock:
            self.rejected += 1
            self.last_error = reason

    def snapshot(self, now: float | None = None) -> StatsSnapshot:
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = [t for t in self._finished if t > now - RATE_WINDOW_S]
            latencies = np.asarray(self._latencies_ms, np.float64)
            counts = (self.received, self.processed, self.dropped, self.rejected)
            last_error = self.last_error
        rate = (len(recent) - 1) / (recent[-1] - recent[0]) if len(recent) > 1 and recent[-1] > recent[0] else 0.0
        p50 = float(np.percentile(latencies, 50)) if latencies.size else None
        p95 = float(np.percentile(latencies, 95)) if latencies.size else None
        return StatsSnapshot(*counts, rate, p50, p95, last_error)


OK, WARN, ERROR = 0, 1, 2


class HealthReport:
    """Level, message and values of each health report; WARN while no frame arrived, when frames
    were rejected since the previous report, or while a ``warning`` stands (a stale gallery); ERROR
    while a problem that needs a person stands."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._rejected_before = 0

    def make(self, stats: StatsSnapshot, facts: dict[str, str], problem: str = "",
             warning: str = "") -> tuple[int, str, dict[str, str]]:
        if problem:
            level, message = ERROR, problem
        elif warning:
            level, message = WARN, warning
        elif stats.received == 0:
            level, message = WARN, f"no images yet on {self.source}"
        elif stats.rejected > self._rejected_before:
            level, message = WARN, f"images rejected: {stats.last_error}"
        else:
            level, message = OK, f"processing {stats.rate_hz:.1f} frames/s"
        self._rejected_before = stats.rejected
        values = {
            "processing_rate_hz": f"{stats.rate_hz:.2f}",
            "latency_ms_p50": "" if stats.latency_p50_ms is None else f"{stats.latency_p50_ms:.1f}",
            "latency_ms_p95": "" if stats.latency_p95_ms is None else f"{stats.latency_p95_ms:.1f}",
            "frames_received": str(stats.received),
            "frames_processed": str(stats.processed),
            "frames_dropped": str(stats.dropped),
            "frames_rejected": str(stats.rejected),
        } | facts
        return level, message, values
