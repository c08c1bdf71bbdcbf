"""The face gallery: storage, names, re-embedding, concurrency, atomicity and bad files.

Every test that is not about files runs on both implementations: the SQLite file and PostgreSQL
(``location`` is a path or a URL). The PostgreSQL runs skip, saying why, where no test server is
configured (``test/postgres_server.py``; ``scripts/test.sh`` starts one where PostgreSQL is installed).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from face_recognition_ros import gallery as gallery_module
from face_recognition_ros.errors import GalleryError, InvalidNameError
from face_recognition_ros.gallery import (CROP_SHAPE, Gallery, default_gallery_path, default_gallery_setting,
                                          open_gallery, validate_name)
from postgres_server import connect, postgres_url  # noqa: F401 - a fixture

ENCODER = "fake:0123abcd"
OTHER_ENCODER = "fake:ffff0000"
DIM = 8
FORK = multiprocessing.get_context("fork")


def make_samples(count: int, seed: int = 0, dim: int = DIM) -> tuple[np.ndarray, np.ndarray]:
    """Unit embeddings and 256x256 crops: a flat colour with a noisy patch (cheap to PNG, checks losslessness)."""
    rng = np.random.default_rng(seed)
    embeddings = rng.standard_normal((count, dim)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    crops = np.empty((count, 256, 256, 3), np.uint8)
    crops[:] = rng.integers(0, 256, (count, 1, 1, 3), dtype=np.uint8)
    crops[:, 100:116, 100:116] = rng.integers(0, 256, (count, 16, 16, 3), dtype=np.uint8)
    return embeddings, crops


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "galleries" / "gallery.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request, db_path: Path):
    """Where a fresh gallery is: a file path (SQLite), or a URL of an empty schema (PostgreSQL)."""
    return db_path if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.fixture
def gallery(location):
    with open_gallery(location) as opened:
        yield opened


def snapshot(location) -> tuple:
    """Everything stored, read with a plain connection (sqlite3 or psycopg) rather than the gallery's."""
    queries = ("SELECT id, name FROM people ORDER BY id",
               "SELECT id, person_id, embedding, encoder, crop FROM samples ORDER BY id",
               "SELECT value FROM meta WHERE key = 'revision'")
    if isinstance(location, str):
        with connect(location) as conn:
            people, samples = (conn.execute(query).fetchall() for query in queries[:2])
            revision = conn.execute(queries[2]).fetchone()
        return people, samples, revision
    with sqlite3.connect(location) as conn:
        people, samples = (conn.execute(query).fetchall() for query in queries[:2])
        revision = conn.execute(queries[2]).fetchone()
    conn.close()
    return people, samples, revision


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- storage ---------------------------------------------------------------------------------


def test_enrolled_samples_round_trip_exactly(gallery: Gallery):
    embeddings, crops = make_samples(3)
    result = gallery.enroll("Ada", embeddings, crops, ENCODER)
    assert result.created and result.samples_added == 3
    stored = gallery.embeddings(ENCODER)
    np.testing.assert_allclose(stored.embeddings, embeddings, atol=1e-6)
    assert stored.person_ids.tolist() == [result.person_id] * 3
    assert stored.names == {result.person_id: "Ada"}
    np.testing.assert_array_equal(gallery.crops("Ada"), crops)


def test_embeddings_are_stored_with_unit_length(gallery: Gallery):
    embeddings, crops = make_samples(2)
    gallery.enroll("Ada", embeddings * 5.0, crops, ENCODER)
    np.testing.assert_allclose(np.linalg.norm(gallery.embeddings(ENCODER).embeddings, axis=1), 1.0, atol=1e-6)


def test_enrolling_an_existing_name_appends_samples(gallery: Gallery):
    first = gallery.enroll("Ada", *make_samples(2, seed=1), ENCODER)
    second = gallery.enroll("  Ada ", *make_samples(3, seed=2), ENCODER)
    assert not second.created and second.person_id == first.person_id
    assert gallery.get_person("Ada").num_samples == 5
    assert gallery.add_samples(first.person_id, *make_samples(1, seed=3), ENCODER) == 1
    assert gallery.get_person(first.person_id).num_samples == 6


def test_list_people_gives_everyone_by_name_with_sample_counts(gallery: Gallery):
    gallery.enroll("bob", *make_samples(1), ENCODER)
    gallery.enroll("Ada", *make_samples(2), ENCODER)
    gallery.enroll("Cy", *make_samples(3), ENCODER)
    assert [(person.name, person.num_samples) for person in gallery.list_people()] == [
        ("Ada", 2),
        ("bob", 1),
        ("Cy", 3),
    ]


def test_rename_changes_the_name_and_keeps_the_samples(gallery: Gallery):
    person_id = gallery.enroll("Ada", *make_samples(2), ENCODER).person_id
    gallery.rename("Ada", "Ada Lovelace")
    assert gallery.get_person(person_id).name == "Ada Lovelace"
    assert gallery.get_person("Ada Lovelace").num_samples == 2
    with pytest.raises(GalleryError, match="no person named 'Ada'"):
        gallery.get_person("Ada")


def test_rename_onto_an_existing_name_is_refused(gallery: Gallery):
    gallery.enroll("Ada", *make_samples(1), ENCODER)
    gallery.enroll("Bob", *make_samples(1), ENCODER)
    with pytest.raises(GalleryError, match="already a person named 'Bob'"):
        gallery.rename("Ada", "Bob")
    assert [person.name for person in gallery.list_people()] == ["Ada", "Bob"]


def test_forget_removes_the_person_with_all_samples_and_crops(gallery: Gallery, location):
    ada = gallery.enroll("Ada", *make_samples(3), ENCODER).person_id
    bob = gallery.enroll("Bob", *make_samples(2), ENCODER).person_id
    assert gallery.forget("Ada") == 3
    people, samples, _ = snapshot(location)
    assert people == [(bob, "Bob")]
    assert {sample[1] for sample in samples} == {bob} and len(samples) == 2
    with pytest.raises(GalleryError, match="no person with id"):
        gallery.crops(ada)


def test_unknown_person_is_a_clear_error(gallery: Gallery):
    with pytest.raises(GalleryError, match="no person named 'Nobody'"):
        gallery.forget("Nobody")
    with pytest.raises(GalleryError, match="no person with id 42"):
        gallery.rename(42, "Someone")


def test_embeddings_only_include_samples_of_the_requested_encoder(gallery: Gallery):
    gallery.enroll("Ada", *make_samples(2, seed=1), ENCODER)
    gallery.enroll("Ada", *make_samples(3, seed=2, dim=4), OTHER_ENCODER)
    gallery.enroll("Bob", *make_samples(1, seed=3, dim=4), OTHER_ENCODER)
    assert gallery.embeddings(ENCODER).embeddings.shape == (2, DIM)
    other = gallery.embeddings(OTHER_ENCODER)
    assert other.embeddings.shape == (4, 4) and len(set(other.person_ids.tolist())) == 2
    assert gallery.stale_count(ENCODER) == 4 and gallery.stale_count(OTHER_ENCODER) == 2
    assert len(gallery.embeddings("unused:0")) == 0


def _mean_colour(crops: np.ndarray) -> np.ndarray:
    return crops.reshape(len(crops), -1, 3).mean(axis=1).astype(np.float32) + 1.0


def test_reembed_recomputes_stale_samples_from_their_crops(gallery: Gallery, capsys):
    embeddings, crops = make_samples(5)
    gallery.enroll("Ada", embeddings[:3], crops[:3], OTHER_ENCODER)
    gallery.enroll("Bob", embeddings[3:], crops[3:], OTHER_ENCODER)
    assert gallery.reembed(_mean_colour, ENCODER, batch_size=2, progress=True) == 5
    assert "re-embedding" in capsys.readouterr().err
    assert gallery.stale_count(ENCODER) == 0 and len(gallery.embeddings(OTHER_ENCODER)) == 0
    stored = gallery.embeddings(ENCODER)
    expected = _mean_colour(crops)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(stored.embeddings, expected, atol=1e-6)
    assert gallery.reembed(_mean_colour, ENCODER) == 0


def test_reembed_with_a_broken_embed_function_changes_nothing(gallery: Gallery, location):
    gallery.enroll("Ada", *make_samples(2), OTHER_ENCODER)
    before = snapshot(location)
    with pytest.raises(GalleryError, match="expected 2 embeddings"):
        gallery.reembed(lambda crops: np.ones((1, 3), np.float32), ENCODER)
    assert snapshot(location) == before


# -- names and input validation --------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "   ", "a" * 65, "line\nbreak", "tab\tname", "nul\x00", "zero\u200bwidth", "bidi\u202eoverride", "\x1b[31mred"],
)
def test_invalid_names_are_rejected(gallery: Gallery, name: str):
    with pytest.raises(InvalidNameError):
        validate_name(name)
    with pytest.raises(InvalidNameError):
        gallery.enroll(name, *make_samples(1), ENCODER)
    assert gallery.list_people() == []


def test_valid_names_are_stripped_and_normalised():
    assert validate_name("  José Müller\t") == "José Müller"
    assert validate_name("Jose\u0301") == "Jos\u00e9"  # decomposed accent -> composed (NFC)
    assert validate_name("x" * 64) == "x" * 64


@pytest.mark.parametrize(
    "embeddings, crops, message",
    [
        (np.ones((2, DIM), np.float32), np.zeros((1, 256, 256, 3), np.uint8), "2 embeddings but 1 crops"),
        (np.ones((1, DIM), np.float32), np.zeros((1, 128, 128, 3), np.uint8), "crops must be"),
        (np.ones((1, DIM), np.float32), np.zeros((1, 256, 256, 3), np.float32), "crops must be"),
        (np.full((1, DIM), np.nan, np.float32), np.zeros((1, 256, 256, 3), np.uint8), "NaN"),
        (np.zeros((1, DIM), np.float32), np.zeros((1, 256, 256, 3), np.uint8), "zero length"),
        (np.ones((1, DIM), np.int32), np.zeros((1, 256, 256, 3), np.uint8), "floating point"),
        (np.ones(DIM, np.float32), np.zeros((1, 256, 256, 3), np.uint8), r"\(N, D\)"),
        (np.ones((1, DIM + 1), np.float32), np.zeros((1, 256, 256, 3), np.uint8), "dimensional"),
    ],
)
def test_bad_samples_are_rejected_and_leave_the_gallery_unchanged(gallery, location, embeddings, crops, message):
    gallery.enroll("Ada", *make_samples(1), ENCODER)
    before = snapshot(location)
    with pytest.raises(GalleryError, match=message):
        gallery.enroll("Bob", embeddings, crops, ENCODER)
    assert snapshot(location) == before


# -- atomicity -------------------------------------------------------------------------------


def _fail_on_second_crop(replacement):
    """An ``_encode_crop`` stand-in that encodes one crop, then calls ``replacement``."""
    real_encode, calls = gallery_module._encode_crop, []

    def encode(crop):
        calls.append(1)
        if len(calls) >= 2:
            replacement()
        return real_encode(crop)

    return encode


def test_enrollment_failing_half_way_leaves_the_gallery_as_before(gallery, location, monkeypatch):
    gallery.enroll("Ada", *make_samples(2), ENCODER)
    before = snapshot(location)

    def fail():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gallery_module, "_encode_crop", _fail_on_second_crop(fail))
    with pytest.raises(RuntimeError, match="disk on fire"):
        gallery.enroll("Bob", *make_samples(3), ENCODER)
    with pytest.raises(RuntimeError, match="disk on fire"):
        gallery.enroll("Ada", *make_samples(3), ENCODER)
    assert snapshot(location) == before
    monkeypatch.undo()
    gallery.enroll("Bob", *make_samples(1), ENCODER)  # the failed transactions released the lock


def _enroll_then_die(location) -> None:
    gallery_module._encode_crop = _fail_on_second_crop(lambda: os._exit(3))
    open_gallery(location).enroll("Bob", *make_samples(3), ENCODER)


def test_process_killed_during_enrollment_leaves_the_gallery_as_before(gallery, location):
    gallery.enroll("Ada", *make_samples(2), ENCODER)
    before = snapshot(location)
    child = FORK.Process(target=_enroll_then_die, args=(location,))
    child.start()
    child.join(30)
    assert child.exitcode == 3
    assert snapshot(location) == before
    gallery.enroll("Bob", *make_samples(1), ENCODER)
    assert [person.name for person in gallery.list_people()] == ["Ada", "Bob"]


# -- concurrency -----------------------------------------------------------------------------


def _enroll_many(location, worker: int, count: int) -> None:
    with open_gallery(location) as opened:
        for index in range(count):
            opened.enroll(f"worker {worker}", *make_samples(1, seed=worker * 100 + index), ENCODER)


def test_revision_grows_with_writes_from_another_process(gallery, location):
    start = gallery.revision()
    assert gallery.revision() == start  # reads do not count
    child = FORK.Process(target=_enroll_many, args=(location, 0, 2))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert gallery.revision() == start + 2
    gallery.rename("worker 0", "renamed")
    assert gallery.revision() == start + 3


def test_concurrent_writers_in_processes_and_threads_lose_nothing(gallery, location):
    per_worker = 4
    start_revision = gallery.revision()
    processes = [FORK.Process(target=_enroll_many, args=(location, worker, per_worker)) for worker in range(3)]
    for process in processes:
        process.start()
    # Threads share one Gallery object (one connection per thread).
    threads = [threading.Thread(target=_enroll_thread, args=(gallery, worker, per_worker)) for worker in range(3, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for process in processes:
        process.join(60)
    assert [process.exitcode for process in processes] == [0, 0, 0]
    people = gallery.list_people()
    assert sorted(person.name for person in people) == [f"worker {worker}" for worker in range(6)]
    assert all(person.num_samples == per_worker for person in people)
    assert len(gallery.embeddings(ENCODER)) == 6 * per_worker
    assert gallery.revision() == start_revision + 6 * per_worker


def _open_at_once(location, count: int = 8) -> list[str]:
    """``count`` threads opening (and so creating) the gallery at the same moment; their errors."""
    start, errors = threading.Barrier(count, timeout=30), []

    def open_it() -> None:
        start.wait()
        try:
            open_gallery(location).close()
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=open_it, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


def test_first_openings_at_once_make_one_gallery(location, tmp_path):
    assert _open_at_once(location) == []
    if isinstance(location, Path):  # and into missing folders, which they all make
        for trial in range(10):
            assert _open_at_once(tmp_path / f"race{trial}" / "faces" / "gallery.db") == []
    with open_gallery(location, create=False) as opened:
        assert opened.list_people() == [] and opened.revision() == 0


def test_a_gallery_is_created_while_another_opener_holds_the_write_lock(tmp_path):
    """SQLite refuses the switch to WAL at once, without waiting for busy_timeout, while another
    connection holds the write lock of a file still in rollback mode, as another first opener does;
    creating the gallery waits for it instead (a race of first openings, made certain)."""
    path = tmp_path / "gallery.db"
    path.touch()
    other_opener = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other_opener.execute("BEGIN IMMEDIATE")
    finish = threading.Timer(0.3, lambda: other_opener.execute("ROLLBACK"))
    finish.start()
    try:
        with Gallery(path) as created:
            assert created.list_people() == [] and created.revision() == 0
    finally:
        finish.join()
        other_opener.close()
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writers_enrolling_one_new_name_at_once_make_one_person(location):
    """Writers take turns (SQLite: BEGIN IMMEDIATE; PostgreSQL: the revision row's lock), so a name
    checked and inserted by two robots at the same moment is one person with everyone's samples."""
    start = threading.Barrier(4, timeout=30)

    def enroll(seed: int) -> None:
        with open_gallery(location) as opened:  # four first openings at once, too: one creates the gallery
            start.wait()
            opened.enroll("Same Name", *make_samples(2, seed=seed), ENCODER)

    threads = [threading.Thread(target=enroll, args=(seed,), daemon=True) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with open_gallery(location) as opened:
        assert [(p.name, p.num_samples) for p in opened.list_people()] == [("Same Name", 8)]


def _enroll_thread(opened: Gallery, worker: int, count: int) -> None:
    for index in range(count):
        opened.enroll(f"worker {worker}", *make_samples(1, seed=worker * 100 + index), ENCODER)


# -- following changes made elsewhere ------------------------------------------------------------------------------


def test_another_connection_follows_every_kind_of_change_exactly(location, tmp_path):
    """Another process's (robot's) embeddings are brought up to date from the changed samples only; after
    each kind of write they must equal what a fresh full read gives, within the second."""
    writer, follower = open_gallery(location), open_gallery(location)
    rng = np.random.default_rng(5)

    def samples(count: int, dim: int = 16):
        embeddings = rng.standard_normal((count, dim)).astype(np.float32)
        return embeddings, rng.integers(0, 256, (count, *CROP_SHAPE), dtype=np.uint8)

    def in_step(what: str) -> None:
        revision = writer.revision()
        deadline = time.monotonic() + 1.0
        while follower.known_revision() < revision and time.monotonic() < deadline:
            time.sleep(0.005)
        assert follower.known_revision() == revision, what
        with open_gallery(location) as fresh:
            for encoder in ("enc:a:0", "enc:b:0"):
                cached, full = follower.embeddings(encoder), fresh.embeddings(encoder)
                assert cached.person_ids.tolist() == full.person_ids.tolist(), (what, encoder)
                np.testing.assert_array_equal(cached.embeddings, full.embeddings, err_msg=f"{what} {encoder}")
                assert cached.names == full.names and cached.revision == full.revision, (what, encoder)
                assert follower.stale_count(encoder) == fresh.stale_count(encoder), (what, encoder)

    follower.embeddings("enc:a:0"), follower.embeddings("enc:b:0")  # what this robot matches with
    writer.enroll("Ada", *samples(3), "enc:a:0")
    in_step("enroll")
    writer.enroll("Bob", *samples(2), "enc:a:0")
    writer.add_samples("Ada", *samples(2), "enc:a:0")
    in_step("add samples")
    writer.rename("Bob", "Robert")
    in_step("rename")
    writer.enroll("Cy", *samples(2, dim=8), "enc:b:0")
    in_step("another encoder")
    writer.reembed(lambda crops: crops.reshape(len(crops), -1)[:, :8].astype(np.float32) + 1, "enc:b:0", batch_size=3)
    in_step("re-embedded to the other encoder")
    writer.forget("Ada")
    in_step("forget")
    with open_gallery(tmp_path / "other.db") as other:  # ids 1, 2, ... again, with other people and samples
        other.enroll("Dee", *samples(2), "enc:a:0")
        other.enroll("Eve", *samples(1, dim=8), "enc:b:0")
        with other.export_records() as (people, batches):
            records = (people, [batch for batch in batches])
    writer.import_records(records[0], records[1], replace=True)
    in_step("replaced by a copy")
    writer.clear()
    in_step("clear")
    writer.close()
    follower.close()


# -- opening files ---------------------------------------------------------------------------


def fingerprint(location):
    """The file's bytes (SQLite: a read-only gallery must not even checkpoint it), or what PostgreSQL holds."""
    return snapshot(location) if isinstance(location, str) else file_digest(location)


def _assert_reads_work_and_writes_fail(location, **options) -> None:
    digest = fingerprint(location)
    with open_gallery(location, **options) as read_only:
        assert read_only.read_only
        assert [person.name for person in read_only.list_people()] == ["Ada"]
        assert len(read_only.embeddings(ENCODER)) == 2 and read_only.revision() >= 1
        for write in (
            lambda: read_only.enroll("Bob", *make_samples(1), ENCODER),
            lambda: read_only.rename("Ada", "Eve"),
            lambda: read_only.forget("Ada"),
            lambda: read_only.reembed(_mean_colour, OTHER_ENCODER),
        ):
            with pytest.raises(GalleryError, match="read-only"):
                write()
    assert fingerprint(location) == digest


def test_read_only_flag_allows_reads_and_refuses_writes(location):
    with open_gallery(location) as writable:
        writable.enroll("Ada", *make_samples(2), ENCODER)
    _assert_reads_work_and_writes_fail(location, read_only=True)


def test_unwritable_file_opens_read_only(db_path, monkeypatch):
    with Gallery(db_path) as writable:
        writable.enroll("Ada", *make_samples(2), ENCODER)
    monkeypatch.setattr(gallery_module, "_writable", lambda path: False)
    _assert_reads_work_and_writes_fail(db_path)


def _permissions_enforced(tmp_path: Path) -> bool:
    """False for root with CAP_DAC_OVERRIDE, who can write into a read-only directory anyway."""
    probe = tmp_path / "probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "file").touch()
        return False
    except PermissionError:
        return True
    finally:
        probe.chmod(0o755)


def test_gallery_in_a_read_only_directory_can_be_read(db_path, tmp_path):
    if not _permissions_enforced(tmp_path):
        pytest.skip("file permissions are not enforced for this user (root)")
    with Gallery(db_path) as writable:
        writable.enroll("Ada", *make_samples(2), ENCODER)
    db_path.chmod(0o444)
    db_path.parent.chmod(0o555)
    try:
        _assert_reads_work_and_writes_fail(db_path)
    finally:
        db_path.parent.chmod(0o755)


def test_corrupt_file_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "gallery.db"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 8192, dtype=np.uint8).tobytes())
    with pytest.raises(GalleryError, match="not a face gallery"):
        Gallery(path)


def test_another_sqlite_database_is_not_a_gallery(tmp_path: Path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE things (id INTEGER)")
    conn.close()
    with pytest.raises(GalleryError, match="not a face gallery"):
        Gallery(path)


def test_another_postgresql_schema_is_not_a_gallery(postgres_url):
    with connect(postgres_url) as conn:
        conn.execute("CREATE TABLE people (id INTEGER, name TEXT)")
    with pytest.raises(GalleryError, match="no face gallery"):
        open_gallery(postgres_url)


def test_gallery_from_a_newer_version_is_refused(location):
    open_gallery(location).close()
    if isinstance(location, str):
        with connect(location) as conn:
            conn.execute(f"UPDATE meta SET value = {gallery_module.SCHEMA_VERSION + 1} WHERE key = 'schema_version'")
    else:
        with sqlite3.connect(location) as conn:
            conn.execute(f"PRAGMA user_version = {gallery_module.SCHEMA_VERSION + 1}")
        conn.close()
    with pytest.raises(GalleryError, match="newer"):
        open_gallery(location)


def test_a_postgresql_schema_without_gallery_is_not_created_without_create(postgres_url):
    with pytest.raises(GalleryError, match="no gallery in"):
        open_gallery(postgres_url, create=False)
    with pytest.raises(GalleryError, match="no gallery in"):
        open_gallery(postgres_url, read_only=True)
    with connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()").fetchone()[0] == 0


def test_missing_directory_without_create_is_an_error(tmp_path: Path):
    with pytest.raises(GalleryError, match="no gallery at"):
        Gallery(tmp_path / "missing" / "gallery.db", create=False)
    assert not (tmp_path / "missing").exists()
    with pytest.raises(GalleryError, match="no gallery at"):
        Gallery(tmp_path / "gallery.db", read_only=True)


def test_create_makes_the_directory_and_reopening_keeps_the_data(location):
    with open_gallery(location) as created:
        created.enroll("Ada", *make_samples(1), ENCODER)
    with open_gallery(location, create=False) as reopened:
        assert [person.name for person in reopened.list_people()] == ["Ada"]


def test_closed_gallery_cannot_be_used(location):
    opened = open_gallery(location)
    opened.close()
    with pytest.raises(GalleryError, match="closed"):
        opened.list_people()


def test_default_path_follows_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("FACE_RECOGNITION_GALLERY", str(tmp_path / "mine.db"))
    assert default_gallery_path() == tmp_path / "mine.db"
    monkeypatch.delenv("FACE_RECOGNITION_GALLERY")
    assert default_gallery_path().name == "gallery.db"
    assert "face_recognition_ros" in str(default_gallery_path())


def test_the_default_setting_may_be_a_postgresql_url(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("FACE_RECOGNITION_GALLERY", "postgresql://robot@db.example/faces?sslmode=require")
    assert default_gallery_setting() == "postgresql://robot@db.example/faces?sslmode=require"
    monkeypatch.setenv("FACE_RECOGNITION_GALLERY", str(tmp_path / "mine.db"))
    assert default_gallery_setting() == tmp_path / "mine.db"
    assert isinstance(open_gallery(None), Gallery) and open_gallery("").location == str(tmp_path / "mine.db")


@pytest.mark.parametrize("setting, message", [
    ("mysql://robot@db/faces", "unsupported gallery URL scheme 'mysql'"),
    ("host=db dbname=faces", "write it as a URL"),
])
def test_a_setting_that_is_neither_a_path_nor_a_postgresql_url_is_refused(setting, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GalleryError, match=message):
        open_gallery(setting)
    assert list(tmp_path.iterdir()) == []  # no file was made
