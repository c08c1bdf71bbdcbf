"""A gallery whose server is away: recognition goes on from the cache, and the health report says so.

Runs everywhere (no server): a SQLite gallery is made to behave as a PostgreSQL one with its
server gone would (``health`` gives a reason, reads raise ``GalleryUnavailableError``). The real
thing, a stopped server, is ``test_gallery_postgres.py``.
"""

from __future__ import annotations

from pathlib import Path

from face_recognition_ros.errors import GalleryUnavailableError
from face_recognition_ros.gallery import Gallery
from face_recognition_ros.recognizer import Recognizer
from face_recognition_ros.stream import ERROR, OK, WARN, HealthReport, StreamStats
from stub_models import IDENTITY, crops_of, embedding_of, frame_of, stub_pipeline


class ServerGone(Gallery):
    """The cached state stays; every read of new state fails, as with a PostgreSQL server out of reach."""

    down = False

    def known_revision(self) -> int:
        return super().known_revision() + (1000 if self.down else 0)  # "something changed", unreadable now

    def embeddings(self, encoder: str):
        if self.down:
            raise GalleryUnavailableError("cannot read the gallery: the gallery database is unreachable")
        return super().embeddings(encoder)

    def health(self) -> str:
        return "database unreachable for 3 s (connection refused)" if self.down else ""


def report(recognizer: Recognizer, stats: StreamStats, health: HealthReport):
    return health.make(stats.snapshot(), recognizer.status(), recognizer.problem, recognizer.warning)


def test_a_stale_gallery_keeps_recognising_and_is_a_warning_with_its_reason(tmp_path: Path):
    gallery = ServerGone(tmp_path / "gallery.db")
    gallery.enroll("Seven", embedding_of(7)[None], crops_of(7, 1), IDENTITY)
    recognizer = Recognizer(stub_pipeline(gallery), track=False)
    stats, health = StreamStats(), HealthReport("camera")
    stats.received_frame(False)
    stats.processed_frame(0.0, 0.01)
    assert recognizer.status()["gallery_state"] == "live" and report(recognizer, stats, health)[0] == OK

    gallery.down = True
    for _ in range(3):
        assert [face.match.name for face in recognizer.process(frame_of(7)).faces] == ["Seven"]
    assert recognizer.status()["gallery_state"] == "stale: database unreachable for 3 s (connection refused)"
    level, message, values = report(recognizer, stats, health)
    assert level == WARN and message.startswith("gallery stale: database unreachable")
    assert values["gallery_state"].startswith("stale") and values["gallery"] == str(tmp_path / "gallery.db")

    recognizer.problem = "forget failed: the gallery database is unreachable"
    assert report(recognizer, stats, health)[0] == ERROR  # a person left unerased outranks a stale gallery

    recognizer.problem = ""
    gallery.down = False
    assert report(recognizer, stats, health)[0] == OK and recognizer.warning == ""
    gallery.close()
