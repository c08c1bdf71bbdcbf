"""The PostgreSQL gallery against a real server: a fleet's gallery across processes, faults, security.

Needs the test server of ``test/postgres_server.py`` (``scripts/test.sh`` starts a throw-away
cluster where PostgreSQL is installed); skips, saying why, where there is none. The gallery's own
behaviour (storage, names, atomicity, concurrency) is tested on both implementations by
``test_gallery.py``; this file holds what only a server has.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from face_recognition_ros.errors import GalleryError, GalleryUnavailableError
from face_recognition_ros.gallery import CROP_SHAPE, mask_url, open_gallery
from face_recognition_ros.stream import WARN
from postgres_server import (ROOTCERT_ENV, connect, postgres_url, server_control, start_server,  # noqa: F401
                             stop_server, with_params)
from stub_models import IDENTITY, crops_of, embedding_of

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
CHILD_ENV = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)]), "OMP_NUM_THREADS": "1"}
#: how fast a change made by one process must be used by another (the issue's fleet requirement)
VISIBLE_WITHIN_S = 1.0


def distinctive_samples(seed: int, count: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (count, *CROP_SHAPE), dtype=np.uint8)
    embeddings = rng.standard_normal((count, 128)).astype(np.float32)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), crops


# -- URLs, credentials, TLS (some need no server) -----------------------------------------------------


def test_a_password_in_the_url_is_refused_and_never_repeated():
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed")
    for url in ("postgresql://robot:s3cret-pw@db.example/faces", "postgresql://robot@db.example/faces?password=s3cret-pw"):
        with pytest.raises(GalleryError) as caught:
            open_gallery(url)
        assert "s3cret-pw" not in str(caught.value) and ".pgpass" in str(caught.value)


def test_urls_are_shown_with_the_password_masked():
    assert mask_url("postgresql://robot:secret@db.example:5433/faces?sslmode=require") == \
        "postgresql://robot:***@db.example:5433/faces?sslmode=require"
    assert mask_url("postgresql://robot@db/faces?password=secret&sslmode=verify-full") == \
        "postgresql://robot@db/faces?password=***&sslmode=verify-full"
    assert mask_url("postgresql://robot@db/faces") == "postgresql://robot@db/faces"
    assert mask_url("postgresql://?service=faces") == "postgresql://?service=faces"
    assert mask_url("postgresql://:pw@/faces?host=/run/postgresql") == "postgresql://:***@/faces?host=/run/postgresql"


def test_an_unreachable_server_is_a_clear_error_at_once():
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nobody listens there once it is closed
    start = time.monotonic()
    with pytest.raises(GalleryUnavailableError, match=r"unreachable.*(refused|failed)"):
        open_gallery(f"postgresql://robot@127.0.0.1:{port}/faces")
    assert time.monotonic() - start < 5


def test_sslmode_require_against_a_server_without_tls_fails_with_a_clear_message():
    """A server without TLS answers the client's SSLRequest with 'N'; this one does exactly that."""
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(10)

    def answer_no_tls() -> None:
        for _ in range(4):  # libpq may try more than once
            try:
                client, _ = server.accept()
            except OSError:
                return
            with client:
                client.recv(8)  # the SSLRequest packet
                client.sendall(b"N")
                client.recv(1024)

    threading.Thread(target=answer_no_tls, daemon=True).start()
    try:
        with pytest.raises(GalleryUnavailableError, match="server does not support SSL, but SSL was required"):
            open_gallery(f"postgresql://robot@127.0.0.1:{server.getsockname()[1]}/faces?sslmode=require")
    finally:
        server.close()


def test_tls_is_used_when_asked_for_and_the_certificate_is_checked(postgres_url):
    rootcert = os.environ.get(ROOTCERT_ENV)
    if not rootcert:
        pytest.skip(f"the test server has no TLS certificate ({ROOTCERT_ENV} unset: openssl was missing)")
    for url in (with_params(postgres_url, sslmode="require"),
                with_params(postgres_url.replace("127.0.0.1", "localhost"), sslmode="verify-full", sslrootcert=rootcert)):
        with open_gallery(url) as gallery:
            gallery.enroll("Ada", *distinctive_samples(1), "enc:0:0")
            with gallery._conn().execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") as cursor:
                assert cursor.fetchone()[0] is True
    wrong = Path(rootcert).with_name("wrong-root.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(wrong.with_suffix(".key")), "-out", str(wrong)], check=True, capture_output=True)
    with pytest.raises(GalleryUnavailableError, match="certificate verify failed"):
        open_gallery(with_params(postgres_url.replace("127.0.0.1", "localhost"), sslmode="verify-full",
                                 sslrootcert=str(wrong)))


def test_a_service_file_and_the_password_file_are_all_a_gallery_url_needs(postgres_url, tmp_path, monkeypatch):
    """``postgresql://?service=NAME``: host, database, user and options from libpq's service file, the
    password from the password file ($PGPASSFILE, as the test server's); the URL names neither."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(postgres_url)
    service = tmp_path / "pg_service.conf"
    service.write_text("[face_gallery_test]\n" + "".join(f"{key}={value}\n" for key, value in params.items()))
    monkeypatch.setenv("PGSERVICEFILE", str(service))
    with open_gallery("postgresql://?service=face_gallery_test") as gallery:
        assert gallery.location == "postgresql://?service=face_gallery_test"
        gallery.enroll("Ada", *distinctive_samples(1), "enc:0:0")
    with open_gallery(postgres_url) as same:
        assert [p.name for p in same.list_people()] == ["Ada"]


def test_a_role_that_may_only_read_opens_the_gallery_read_only(postgres_url):
    admin = os.environ.get("FACE_RECOGNITION_TEST_POSTGRES_ADMIN_URL")
    if not admin:
        pytest.skip("FACE_RECOGNITION_TEST_POSTGRES_ADMIN_URL is not set: no superuser to make a reading role with")
    with open_gallery(postgres_url) as gallery:
        gallery.enroll("Ada", *distinctive_samples(1), "enc:0:0")
        schema = gallery.schema
    reader = "face_reader_" + schema
    with connect(admin) as conn:
        conn.execute(f"CREATE ROLE {reader} NOLOGIN")
        conn.execute(f"GRANT {reader} TO face_robot")
        conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {reader}")
        conn.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {schema} TO {reader}")
    try:
        # the robot's login, acting as the reading role (what a robot given only SELECT is)
        with open_gallery(postgres_url.replace("search_path%3D", f"role%3D{reader}%20-c%20search_path%3D")) as seen:
            assert seen.read_only and [p.name for p in seen.list_people()] == ["Ada"]
            assert len(seen.embeddings("enc:0:0")) == 3
            with pytest.raises(GalleryError, match="read-only"):
                seen.enroll("Bob", *distinctive_samples(2), "enc:0:0")
            with pytest.raises(GalleryError, match="read-only"):
                seen.forget("Ada")
    finally:
        with connect(admin) as conn:
            conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {reader}")
            conn.execute(f"REVOKE USAGE ON SCHEMA {schema} FROM {reader}")
            conn.execute(f"DROP ROLE {reader}")


# -- forget means forgotten ------------------------------------------------------------------------


def rows_mentioning(url: str, needles: list[str]) -> dict[str, int]:
    """Rows of every table in the gallery's schema whose text form (bytea as hex) holds any needle."""
    found = {}
    with connect(url) as conn:
        tables = [row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        assert {"meta", "people", "samples"} <= set(tables)
        for table in tables:
            texts = [row[0] for row in conn.execute(f"SELECT t::text FROM {table} t")]
            hits = sum(1 for text in texts if any(needle in text for needle in needles))
            if hits:
                found[table] = hits
    return found


def test_a_forgotten_person_is_in_no_table_and_no_notification(postgres_url):
    name = "Forgotten Person Zyx"
    gallery = open_gallery(postgres_url)
    gallery.enroll("Someone Else", *distinctive_samples(1), "enc:0:0")
    embeddings, crops = distinctive_samples(2)
    person = gallery.enroll(name, embeddings, crops, "enc:0:0").person_id
    with connect(postgres_url) as conn:
        stored = conn.execute("SELECT crop, embedding FROM samples WHERE person_id = %s", (person,)).fetchall()
    needles = [name] + [bytes(blob)[offset:offset + 24].hex() for crop, embedding in stored
                        for blob in (crop, embedding) for offset in (100, len(blob) // 2)]
    assert rows_mentioning(postgres_url, needles), "the person should be stored before the forget"

    other = open_gallery(postgres_url)  # another robot, connected and listening
    other.embeddings("enc:0:0")
    with connect(postgres_url) as listener:
        listener.execute(f'LISTEN "{gallery._channel}"')
        assert gallery.forget(name) == 3
        payloads = [note.payload for note in listener.notifies(timeout=1.0, stop_after=1)]
    assert payloads == [""]  # notifications carry nothing about anyone
    assert rows_mentioning(postgres_url, needles) == {}
    deadline = time.monotonic() + VISIBLE_WITHIN_S
    while person in other.embeddings("enc:0:0").names and time.monotonic() < deadline:
        time.sleep(0.01)
    assert person not in other.embeddings("enc:0:0").names
    assert [p.name for p in other.list_people()] == ["Someone Else"]
    gallery.rename("Someone Else", "Renamed")
    assert rows_mentioning(postgres_url, ["Someone Else"]) == {}
    other.close()
    gallery.close()


# -- two processes, one gallery ---------------------------------------------------------------------


class RecognizerProcess:
    """``stub_models.recognise_forever`` in a child process; its JSON lines, as they come."""

    def __init__(self, url: str, people: list[int], period_s: float = 0.01) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "stub_models.py"), url, ",".join(map(str, people)), str(period_s)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CHILD_ENV)
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(lambda line: line.get("ready"), timeout=60, what="the recognizer process to start")

    def _read(self) -> None:
        for text in self.process.stdout:
            self.lines.append(json.loads(text))

    def wait_for(self, predicate, timeout: float, what: str, since: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[since:]:
                if predicate(line):
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.005)
        stderr = "" if self.process.poll() is None else self.process.stderr.read()
        raise AssertionError(f"timed out waiting for {what}; last lines {self.lines[-3:]}; {stderr}")

    def frames(self, since: int = 0) -> list[dict]:
        return [line for line in self.lines[since:] if "names" in line]

    def close(self) -> None:
        self.process.kill()
        self.process.wait(10)


def test_an_enrollment_in_one_process_is_recognised_by_another_within_a_second(postgres_url):
    enroller = open_gallery(postgres_url)
    enroller.enroll("Someone", embedding_of(3)[None], crops_of(3, 1), IDENTITY)
    child = RecognizerProcess(postgres_url, [7])
    try:
        seen = child.wait_for(lambda line: "names" in line, 10, "a first frame")
        assert seen["names"] == [None] and seen["state"] == "live"  # person 7 is nobody yet

        start = time.time()
        enroller.enroll("Seven", embedding_of(7)[None], crops_of(7, 1), IDENTITY)
        committed = time.time()
        seen = child.wait_for(lambda line: line.get("names") == ["Seven"], 5, "Seven to be recognised")
        print(f"enroll-to-recognised: {seen['t'] - start:.3f} s (commit took {committed - start:.3f} s)")
        assert seen["t"] - start < VISIBLE_WITHIN_S

        mark = len(child.lines)
        start = time.time()
        enroller.forget("Seven")
        gone = child.wait_for(lambda line: line.get("names") == [None], 5, "Seven to be forgotten", since=mark)
        print(f"forget-to-unknown: {gone['t'] - start:.3f} s")
        assert gone["t"] - start < VISIBLE_WITHIN_S
        assert not any(line["error"] for line in child.frames())
    finally:
        child.close()
        enroller.close()


# -- faults -----------------------------------------------------------------------------------------

KILLER = """
import sys, time
import numpy as np
from face_recognition_ros.gallery import CROP_SHAPE, open_gallery
gallery = open_gallery(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
crops = rng.integers(0, 256, (8, *CROP_SHAPE), dtype=np.uint8)  # noise: slow to encode, large to send
embeddings = rng.standard_normal((8, 16)).astype(np.float32)
def say(line):
    # One write per line: with PYTHONUNBUFFERED, print("done", name) is four writes, and a kill
    # between them leaves "done " without the name for the parent to read.
    sys.stdout.write(line + "\\n")
    sys.stdout.flush()
for index in range(10000):
    name = f"run {sys.argv[2]} person {index}"
    say(f"begin {name}")
    gallery.enroll(name, embeddings, crops, "enc:0:0")
    say(f"done {name}")
"""


def test_sigkill_during_enrollment_twenty_times_leaves_every_person_absent_or_complete(postgres_url):
    open_gallery(postgres_url).close()
    script = [sys.executable, "-c", KILLER, postgres_url]
    interrupted = 0
    rng = random.Random(0)
    for run in range(20):
        child = subprocess.Popen(script + [str(run)], stdout=subprocess.PIPE, text=True, env=CHILD_ENV)
        lines = [child.stdout.readline()]  # the first "begin": the gallery is open and enrolling
        assert lines[0].startswith("begin"), lines
        time.sleep(rng.uniform(0.0, 0.25))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        lines += child.stdout.read().splitlines()
        interrupted += lines[-1].startswith("begin")  # killed between "begin" and "done"
        with connect(postgres_url) as conn:
            counts = dict(conn.execute("SELECT p.name, COUNT(s.id) FROM people p LEFT JOIN samples s "
                                       "ON s.person_id = p.id GROUP BY p.name").fetchall())
            orphans = conn.execute("SELECT COUNT(*) FROM samples WHERE person_id NOT IN (SELECT id FROM people)"
                                   ).fetchone()[0]
        assert set(counts.values()) <= {8}, f"run {run}: a partial person: {counts}"
        assert orphans == 0
        done = {line.split(" ", 1)[1] for line in lines if line.startswith("done")}
        assert done <= set(counts), f"run {run}: a confirmed enrollment is missing"
    print(f"{interrupted} of 20 kills landed inside an enrollment")
    assert interrupted >= 10  # the test must actually interrupt enrollments


def test_recognition_goes_on_while_the_server_is_down_and_the_gallery_reconnects(postgres_url):
    server_control()  # skips when the server cannot be restarted from here
    enroller = open_gallery(postgres_url)
    enroller.enroll("Seven", embedding_of(7)[None], crops_of(7, 1), IDENTITY)
    child = RecognizerProcess(postgres_url, [7, 8], period_s=0.02)
    try:
        child.wait_for(lambda line: line.get("names") == ["Seven"], 10, "Seven to be recognised")
        mark = len(child.lines)
        stop_server()
        try:
            stale = child.wait_for(lambda line: line.get("state", "").startswith("stale"), 15,
                                   "the gallery to be reported stale", since=mark)
            assert stale["level"] == WARN and stale["message"].startswith("gallery stale: database unreachable")
            outage = len(child.lines)
            time.sleep(1.5)
            with pytest.raises(GalleryUnavailableError, match="unreachable.*nothing is queued"):
                enroller.enroll("Ghost", embedding_of(9)[None], crops_of(9, 1), IDENTITY)
            with pytest.raises(GalleryUnavailableError, match="unreachable"):
                enroller.forget("Seven")
            during = child.frames(outage)
        finally:
            start_server()
        assert len(during) > 20, "the recognizer stopped processing frames while the server was down"
        assert all(not line["error"] for line in during)
        assert {line["names"][0] for line in during if line["person"] == 7} == {"Seven"}  # still recognised
        assert all(line["level"] == WARN and line["state"].startswith("stale") for line in during)

        mark = len(child.lines)
        child.wait_for(lambda line: line.get("state") == "live", 20, "the gallery to reconnect", since=mark)
        enroller.enroll("Eight", embedding_of(8)[None], crops_of(8, 1), IDENTITY)  # the enroller reconnects too
        start = time.time()
        seen = child.wait_for(lambda line: line.get("names") == ["Eight"], 5, "Eight after the restart", since=mark)
        assert seen["t"] - start < VISIBLE_WITHIN_S
        assert [p.name for p in enroller.list_people()] == ["Eight", "Seven"]  # nothing queued: no Ghost
        assert not any(line["error"] for line in child.frames())
    finally:
        child.close()
        enroller.close()
