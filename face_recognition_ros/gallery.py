"""The persistent face gallery: people and their face samples, behind one interface with two engines.

:class:`FaceGallery` is what the pipeline, the recognizer and the CLI use. :func:`open_gallery` opens
one from a setting: a file path is the embedded SQLite gallery of this module (:class:`Gallery`, one
robot, no server); a ``postgresql://`` URL is the PostgreSQL gallery that a fleet of robots shares
(``gallery_postgres.PostgresGallery``). Both keep the same things: people, samples with their
embeddings, the encoder identity of each embedding, the aligned crops for re-embedding, and a
revision that grows with every write.

The rest of this docstring is about the SQLite gallery.

Every sample keeps its embedding, the identity of the encoder that made it
(``FaceEncoder.identity``: name, weights hash, alignment geometry) and the aligned face crop it was
made from (256x256 RGB at ``alignment.STORAGE_TEMPLATE``, stored as lossless PNG), so the gallery
can be re-embedded exactly when the encoder changes.

Several threads and processes may read and write one gallery at once: each thread gets its own
connection, the file is in WAL mode (readers never block the writer), every write is one
``BEGIN IMMEDIATE`` transaction that also bumps a ``revision`` counter, and a busy writer is waited
for (``busy_timeout``) rather than failing.

Face data is biometric, so what is forgotten must be gone from disk, not only from queries:
``secure_delete`` is on for every connection (deleted content is overwritten with zeros, whatever
the SQLite build's default), temporary tables stay in memory, and ``forget`` ends with a WAL
checkpoint that truncates the ``-wal`` file, so no old copy of a page survives there either (other
processes' connections never hold a read transaction between calls, so they do not pin old frames).
The folder a gallery creates is 0700 and its files 0600. A small reserve file beside the gallery
(``<gallery>.reserve``) is given up when the disk is full, so that a forget or rename still
succeeds; it is made again once there is room.
"""

from __future__ import annotations

import abc
import os
import re
import sqlite3
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import platformdirs

from .alignment import STORAGE_TEMPLATE
from .errors import GalleryError, InvalidNameError, UnknownPersonError

GALLERY_ENV = "FACE_RECOGNITION_GALLERY"
#: URL schemes that mean a PostgreSQL gallery (libpq accepts both)
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` marking the file as a face gallery ("FRGL")
APPLICATION_ID = 0x4652474C
MAX_NAME_LENGTH = 64
CROP_SHAPE = (STORAGE_TEMPLATE.size[1], STORAGE_TEMPLATE.size[0], 3)
BUSY_TIMEOUT_S = 10.0
#: bytes kept free for forget and rename on a full disk: a forget rewrites about as many bytes as the
#: person's samples hold (a 256x256 PNG crop is 60-120 kB), so this covers a person with ~60 samples
RESERVE_BYTES = 8 * 1024 * 1024
RESERVE_SUFFIX = ".reserve"
FILE_MODE = 0o600
FOLDER_MODE = 0o700

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT UNIQUE NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE samples (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    dim INTEGER NOT NULL,
    encoder TEXT NOT NULL,
    crop BLOB NOT NULL,
    landmarks BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX samples_by_person ON samples(person_id);
CREATE INDEX samples_by_encoder ON samples(encoder, person_id);
"""


@dataclass(frozen=True)
class PersonInfo:
    id: int
    name: str
    created: float  # Unix time
    num_samples: int


@dataclass
class EnrollResult:
    """What an enrollment stored, what it passed over (``skipped``: inputs not used, with the reason)
    and what the caller should know (``warnings``: enrolled people the new samples resemble)."""

    person_id: int
    samples_added: int
    created: bool  # True when the person was new
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # look-alikes among the people already enrolled


@dataclass(frozen=True, eq=False)
class GalleryEmbeddings:
    """All samples of one encoder, ready for matching (rows grouped by person)."""

    embeddings: np.ndarray  # (M, D) float32, unit norm
    person_ids: np.ndarray  # (M,) int64
    names: dict[int, str] = field(default_factory=dict)
    encoder: str = ""
    revision: int = -1  # gallery revision these were read at

    def __len__(self) -> int:
        return int(self.person_ids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


@dataclass(frozen=True)
class PersonRecord:
    """A person as stored, for copying a gallery (``gallery copy``)."""

    id: int
    name: str
    created: float


@dataclass(frozen=True)
class SampleRecord:
    """A sample as stored: the embedding's little-endian float32 bytes and the crop's PNG bytes."""

    id: int
    person_id: int
    embedding: bytes
    dim: int
    encoder: str
    crop: bytes
    landmarks: bytes
    created: float


def default_gallery_path() -> Path:
    """``$FACE_RECOGNITION_GALLERY``, else ``gallery.db`` in the user's data directory (file paths only:
    :func:`default_gallery_setting` also gives a URL)."""
    override = os.environ.get(GALLERY_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("face_recognition_ros")) / "gallery.db"


def default_gallery_setting() -> str | Path:
    """The gallery when none is named: ``$FACE_RECOGNITION_GALLERY`` (a path or a ``postgresql://``
    URL), else ``gallery.db`` in the user's data directory."""
    override = os.environ.get(GALLERY_ENV, "").strip()
    if is_postgres_url(override):
        return override
    return default_gallery_path()


def is_postgres_url(setting: object) -> bool:
    """Whether a gallery setting names a PostgreSQL gallery (a ``postgresql://`` URL) rather than a file."""
    return isinstance(setting, str) and setting.strip().lower().startswith(POSTGRES_SCHEMES)


def mask_url(url: str) -> str:
    """``url`` safe to log and show: any password (in the user part or a ``password=`` parameter) is ``***``."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, hosts = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{hosts}"
    query = re.sub(r"(?i)(^|&)(password)=[^&]*", r"\1\2=***", parts.query)
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    # rebuilt by hand: urlunsplit drops the "//" of an empty host (postgresql://?service=faces)
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "") + \
        (f"#{parts.fragment}" if parts.fragment else "")


def open_gallery(setting: str | os.PathLike | None = None, create: bool = True, read_only: bool = False) -> "FaceGallery":
    """The gallery a setting names: a file path is SQLite, a ``postgresql://`` URL is PostgreSQL, and
    ``None`` or ``""`` is :func:`default_gallery_setting`. ``create`` and ``read_only`` as for
    :class:`Gallery`. Used everywhere a gallery is opened (node parameter, launch argument, CLI
    ``--gallery``, ``$FACE_RECOGNITION_GALLERY``)."""
    if setting is None or (isinstance(setting, str) and not setting.strip()):
        setting = default_gallery_setting()
    if is_postgres_url(setting):
        from .gallery_postgres import PostgresGallery

        return PostgresGallery(setting.strip(), create=create, read_only=read_only)
    text = os.fspath(setting)
    scheme = re.match(r"^\s*([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        raise GalleryError(f"unsupported gallery URL scheme {scheme.group(1)!r}: a gallery is a file path (SQLite) "
                           "or a postgresql:// URL (PostgreSQL)")
    if re.match(r"^\s*(host|hostaddr|dbname|user|port|service|sslmode)\s*=", text) and not os.path.exists(text):
        raise GalleryError("the gallery setting looks like a libpq keyword/value string; write it as a URL, "
                           "e.g. postgresql://robot@db.example/faces?sslmode=verify-full")
    return Gallery(text, create=create, read_only=read_only)


def gallery_location(setting: str | os.PathLike | None) -> str:
    """A gallery setting as it may be logged: the path, or the URL with any password masked."""
    if setting is None or (isinstance(setting, str) and not setting.strip()):
        setting = default_gallery_setting()
    return mask_url(setting.strip()) if is_postgres_url(setting) else str(setting)


def validate_name(name: str) -> str:
    """The name with surrounding whitespace removed; ``InvalidNameError`` if it is unusable."""
    if not isinstance(name, str):
        raise InvalidNameError(f"a person name must be text, got {type(name).__name__}")
    # NFC: the same name typed with composed or decomposed accents is the same person.
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise InvalidNameError("a person name cannot be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"a person name can have at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    for position, char in enumerate(name):
        if unicodedata.category(char) in ("Cc", "Cf"):
            raise InvalidNameError(f"a person name cannot contain control characters (found {char!r} at position {position})")
    return name


class FaceGallery(abc.ABC):
    """What every gallery offers, whatever stores it. Thread-safe; use as a context manager or call ``close``.

    People are given by name or id. Every write is one transaction (all of it happens, or none) and
    bumps :meth:`revision`; embeddings are stored as unit vectors, crops as lossless PNG.
    """

    #: "sqlite" or "postgresql"
    kind = ""
    #: True when every write raises ``GalleryError`` (reads keep working)
    read_only = False

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the gallery is, safe to log and show: the file path, or the URL without a password."""

    # -- people ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def enroll(self, name: str, embeddings: np.ndarray, crops: np.ndarray, encoder: str) -> EnrollResult:
        """Add samples to the person with this exact name, creating the person if needed (one transaction)."""

    @abc.abstractmethod
    def add_samples(self, person: int | str, embeddings: np.ndarray, crops: np.ndarray, encoder: str) -> int:
        """Add samples to an existing person; returns how many were added."""

    @abc.abstractmethod
    def rename(self, person: int | str, new_name: str) -> None:
        """Give a person another name (the old one is erased like a forgotten person)."""

    @abc.abstractmethod
    def forget(self, person: int | str) -> int:
        """Remove the person with every sample and crop; returns how many samples went."""

    @abc.abstractmethod
    def clear(self) -> int:
        """Forget everyone (one transaction); returns how many people went."""

    @abc.abstractmethod
    def list_people(self) -> list[PersonInfo]:
        """Everyone, sorted by name (ASCII letters without regard to case), then id."""

    @abc.abstractmethod
    def get_person(self, person: int | str) -> PersonInfo:
        """One person; ``UnknownPersonError`` when there is none by that name or id."""

    # -- samples --------------------------------------------------------------------------------

    @abc.abstractmethod
    def embeddings(self, encoder: str) -> GalleryEmbeddings:
        """Every sample embedded by this encoder identity, grouped by person."""

    @abc.abstractmethod
    def stale_count(self, encoder: str) -> int:
        """How many samples were embedded by another encoder identity (and need ``reembed``)."""

    @abc.abstractmethod
    def crops(self, person: int | str) -> np.ndarray:
        """The person's stored aligned crops, (N, 256, 256, 3) uint8 RGB, oldest first."""

    def reembed(
        self,
        embed_fn: Callable[[np.ndarray], np.ndarray],
        encoder: str,
        batch_size: int = 32,
        progress: bool = False,
    ) -> int:
        """Re-embed every sample made by another encoder from its stored crop; returns the count.

        ``embed_fn`` maps crops (N, 256, 256, 3) uint8 RGB to embeddings (N, D). Each batch is
        written in its own transaction, after ``embed_fn`` ran (the write lock is not held while
        the network runs), so an interrupted run leaves every sample either old or new.
        """
        from tqdm import tqdm

        encoder = _check_encoder(encoder)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self._require_writable("re-embed")
        stale_ids = self._stale_sample_ids(encoder)
        updated = 0
        with tqdm(total=len(stale_ids), disable=not progress, desc="re-embedding", unit="face") as bar:
            for start in range(0, len(stale_ids), batch_size):
                batch = stale_ids[start : start + batch_size]
                updated += self._reembed_batch(embed_fn, encoder, batch)
                bar.update(len(batch))
        return updated

    @abc.abstractmethod
    def _stale_sample_ids(self, encoder: str) -> list[int]:
        """Ids of the samples another encoder made, in id order."""

    @abc.abstractmethod
    def _reembed_batch(self, embed_fn: Callable[[np.ndarray], np.ndarray], encoder: str, ids: list[int]) -> int:
        """Re-embed these samples (those still stale) in one transaction; returns how many changed."""

    def _require_writable(self, action: str) -> None:
        if self.read_only:
            raise GalleryError(f"cannot {action}: the gallery {self.location} is read-only")

    # -- change detection and health --------------------------------------------------------------

    @abc.abstractmethod
    def revision(self) -> int:
        """A counter that grows with every committed write from any thread, process or robot, read now."""

    def known_revision(self) -> int:
        """The newest revision this process knows of, without waiting on anything: what the pipeline
        checks every frame. SQLite reads it from the file (a few microseconds); PostgreSQL gets it
        pushed (LISTEN/NOTIFY, with a revision check once a second as the fallback), and when the
        server is away it stays at the last one seen while :meth:`health` says why."""
        return self.revision()

    def health(self) -> str:
        """Why the gallery this process sees may be out of date ("" when it is live)."""
        return ""

    def erase_traces(self) -> None:
        """Erase what a forget left outside the tables (SQLite's write-ahead log); nothing to do by default."""

    # -- copying ----------------------------------------------------------------------------------

    @abc.abstractmethod
    @contextmanager
    def export_records(self, batch_size: int = 256) -> Iterator[tuple[list[PersonRecord], Iterator[list[SampleRecord]]]]:
        """Everyone and every sample as stored, from one consistent snapshot: ``(people, sample batches)``,
        samples in id order. The batches must be read inside the ``with`` block."""

    @abc.abstractmethod
    def import_records(self, people: Iterable[PersonRecord], samples: Iterable[list[SampleRecord]],
                       replace: bool = False) -> None:
        """Store these people and samples as they are (ids included) in one transaction. Refused with
        ``GalleryError`` when the gallery holds anyone, unless ``replace``: then everyone is forgotten first."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections (and threads); the object cannot be used afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class Gallery(FaceGallery):
    """A face gallery file; see the module docstring. Use as a context manager or call ``close``.

    ``create``: make the file (and its directory) when missing. ``read_only``: never write; this is
    also chosen automatically when the file or its directory is not writable, and then every write
    raises ``GalleryError`` while reads keep working.
    """

    kind = "sqlite"

    def __init__(self, path: str | os.PathLike, create: bool = True, read_only: bool = False) -> None:
        self.path = Path(path).expanduser()
        if self.path.is_dir():
            raise GalleryError(f"gallery path {self.path} is a directory, not a file")
        if not self.path.exists():
            if read_only or not create:
                raise GalleryError(f"no gallery at {self.path}")
            try:
                _make_private_folders(self.path.parent)
            except OSError as error:
                raise GalleryError(f"cannot create the gallery directory {self.path.parent}: {error}") from None
        self.read_only = read_only or not _writable(self.path)
        if self.read_only and not self.path.exists():
            raise GalleryError(f"cannot create a gallery at {self.path}: the directory is not writable")
        if not self.read_only:
            _create_private_file(self.path)
        self._immutable = False
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []  # (owning process id, connection)
        self._connections_lock = threading.Lock()
        self._closed = False
        self._loaded: dict[str, _Loaded] = {}  # the last embeddings read per encoder, extended after changes
        try:
            self._open_schema()
        except BaseException:
            self.close()
            raise
        if not self.read_only:
            self._keep_private()
            self.ensure_reserve()

    @property
    def location(self) -> str:
        return str(self.path)

    # -- privacy and the disk ------------------------------------------------------------------

    @property
    def reserve_path(self) -> Path:
        return self.path.with_name(self.path.name + RESERVE_SUFFIX)

    def files(self) -> list[Path]:
        """Every file of this gallery on disk: the database, its WAL and index, the reserve."""
        names = [self.path.name + suffix for suffix in ("", "-wal", "-shm", RESERVE_SUFFIX)]
        return [self.path.with_name(name) for name in names if self.path.with_name(name).exists()]

    def _keep_private(self) -> None:
        """0600 for every file of the gallery (a gallery made by an older version was 0644)."""
        for path in self.files():
            try:
                if path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
                    path.chmod(FILE_MODE)
            except OSError:
                pass  # someone else's file in a shared folder: not ours to change

    def ensure_reserve(self) -> bool:
        """Make the reserve file when it is missing and the disk has room; True when it is there."""
        reserve = self.reserve_path
        if reserve.exists() and reserve.stat().st_size >= RESERVE_BYTES:
            return True
        if RESERVE_BYTES <= 0:
            return False
        try:
            opener = lambda path, flags: os.open(path, flags, FILE_MODE)  # noqa: E731 - 0600 from the start
            with open(reserve, "wb", opener=opener) as handle:
                # Real blocks of zeros, not a sparse file: only allocated space can be handed back later.
                handle.write(bytes(RESERVE_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            reserve.unlink(missing_ok=True)  # no room now: the next write that finds room tries again
            return False
        return True

    @property
    def has_reserve(self) -> bool:
        return self.reserve_path.exists()

    def erase_traces(self) -> None:
        """Copy every committed page into the database file and truncate the WAL to zero bytes.

        With secure_delete on, the pages that held forgotten rows are zeros in their newest version;
        the checkpoint writes those into the database and drops the WAL, which still held the old
        versions. Readers in other threads or processes hold no transaction between calls, so the
        busy handler waits at most for one in-flight read.
        """
        conn = self._conn()
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise GalleryError(f"the gallery {self.path} is busy: the forgotten data could not be erased from its "
                               "write-ahead log yet (another process holds a long read transaction); retry")

    def _write_even_when_full(self, action: str, change: Callable[[sqlite3.Connection], object]):
        """Run ``change`` in one write transaction; on a full disk give up the reserve and retry once.

        For erasures (forget, rename) only: a person must be erasable on a full disk. The reserve is
        made again afterwards if the disk has room by then.
        """
        try:
            with self._write(action) as conn:
                return change(conn)
        except GalleryError as error:
            if not _disk_full(error) or not self.reserve_path.exists():
                raise
            self.reserve_path.unlink()
        with self._write(action) as conn:
            return change(conn)

    # -- connections -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            query = "mode=ro&immutable=1" if self._immutable else "mode=ro"
        else:
            query = "mode=rwc"
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?{query}"
        # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE for writes).
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            # Set here, not left to the build: deleted faces are overwritten with zeros, and sorts and
            # temporary tables never go to temporary files.
            conn.execute("PRAGMA secure_delete = ON")
            conn.execute("PRAGMA temp_store = MEMORY")
            if not self.read_only:
                # Still atomic in WAL mode; only the latest commits may be lost on power failure.
                conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _open_error(self, error: sqlite3.Error) -> GalleryError:
        if isinstance(error, sqlite3.OperationalError):
            return GalleryError(f"cannot open the gallery {self.path}: {error}")
        return GalleryError(f"{self.path} is not a face gallery (corrupt or another kind of file: {error})")

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a fork child gets fresh ones: SQLite handles must not cross fork)."""
        if self._closed:
            raise GalleryError(f"the gallery {self.path} is closed")
        local = self._local
        if getattr(local, "conn", None) is None or local.pid != os.getpid():
            try:
                self._adopt(self._connect())
            except sqlite3.Error as error:
                raise self._open_error(error) from None
        return local.conn

    def _adopt(self, conn: sqlite3.Connection) -> None:
        """Make ``conn`` this thread's connection."""
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._connections_lock:
            self._connections.append((os.getpid(), conn))

    def close(self) -> None:
        """Close every thread's connection; the object cannot be used afterwards."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for pid, conn in connections:
            # A connection inherited through fork belongs to the parent: closing it here could
            # checkpoint or delete the parent's WAL file.
            if pid == os.getpid():
                try:
                    conn.close()
                except sqlite3.Error:
                    pass

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({str(self.path)!r}{', read_only=True' if self.read_only else ''})"

    # -- schema --------------------------------------------------------------------------------

    def _open_schema(self) -> None:
        try:
            conn = self._connect()
            try:
                version, app_id, tables = _read_header(conn)
            except sqlite3.Error:
                conn.close()
                raise
        except sqlite3.OperationalError as error:
            if not self.read_only or self._immutable:
                raise self._open_error(error) from None
            # A WAL file in a directory we cannot write: SQLite cannot create the shared-memory
            # index, so read it as an immutable snapshot instead.
            self._immutable = True
            return self._open_schema()
        except sqlite3.Error as error:
            raise self._open_error(error) from None
        self._adopt(conn)
        if version == 0 and not tables:
            if self.read_only:
                raise GalleryError(f"{self.path} is an empty file, not a face gallery")
            self._create_schema()
            return
        if app_id != APPLICATION_ID or "samples" not in tables or "people" not in tables:
            raise GalleryError(f"{self.path} is an SQLite database but not a face gallery")
        if version > SCHEMA_VERSION:
            raise GalleryError(
                f"the gallery {self.path} has schema version {version}, newer than this software "
                f"understands ({SCHEMA_VERSION}); update face_recognition_ros"
            )
        if version < SCHEMA_VERSION:
            raise GalleryError(f"the gallery {self.path} has unknown old schema version {version}")

    def _create_schema(self) -> None:
        conn = self._conn()
        try:
            _switch_to_wal(conn)
            conn.execute("BEGIN IMMEDIATE")
            # Another process may have created it while we waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                # executescript() would commit on its own: run the statements one by one instead.
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?), ('revision', 0)", (SCHEMA_VERSION,))
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise GalleryError(f"cannot create the gallery {self.path}: {error}") from None

    # -- transactions --------------------------------------------------------------------------

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction that also bumps the revision: all of it happens, or none."""
        self._require_writable(action)
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now, waiting up to busy_timeout
        except sqlite3.Error as error:
            raise GalleryError(f"cannot {action}: the gallery {self.path} is busy or not writable ({error})") from None
        try:
            yield conn
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise GalleryError(f"cannot {action} in the gallery {self.path}: {error}") from error
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for several SELECTs."""
        conn = self._conn()
        try:
            conn.execute("BEGIN")
            yield conn
        except sqlite3.Error as error:
            raise GalleryError(f"cannot read the gallery {self.path}: {error}") from error
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    # -- people --------------------------------------------------------------------------------

    def enroll(self, name: str, embeddings: np.ndarray, crops: np.ndarray, encoder: str) -> EnrollResult:
        """Add samples to the person with this exact name, creating the person if needed."""
        name = validate_name(name)
        embeddings, crops = _check_samples(embeddings, crops)
        encoder = _check_encoder(encoder)
        with self._write(f"enroll {name!r}") as conn:
            row = conn.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                cursor = conn.execute("INSERT INTO people (name, created) VALUES (?, ?)", (name, time.time()))
                person_id = int(cursor.lastrowid)
            else:
                person_id = int(row[0])
            _insert_samples(conn, person_id, embeddings, crops, encoder)
        return EnrollResult(person_id, len(embeddings), created=row is None)

    def add_samples(self, person: int | str, embeddings: np.ndarray, crops: np.ndarray, encoder: str) -> int:
        """Add samples to an existing person; returns how many were added."""
        embeddings, crops = _check_samples(embeddings, crops)
        encoder = _check_encoder(encoder)
        with self._write("add samples") as conn:
            person_id, _ = _resolve(conn, person)
            _insert_samples(conn, person_id, embeddings, crops, encoder)
        return len(embeddings)

    def rename(self, person: int | str, new_name: str) -> None:
        """Give a person another name; works on a full disk too (the old name is erased like a forget)."""
        new_name = validate_name(new_name)

        def change(conn: sqlite3.Connection) -> None:
            person_id, _ = _resolve(conn, person)
            other = conn.execute("SELECT id FROM people WHERE name = ?", (new_name,)).fetchone()
            if other is not None and other[0] != person_id:
                raise GalleryError(f"there is already a person named {new_name!r}")
            conn.execute("UPDATE people SET name = ? WHERE id = ?", (new_name, person_id))

        self._write_even_when_full("rename a person", change)
        self.erase_traces()
        self.ensure_reserve()

    def forget(self, person: int | str) -> int:
        """Remove the person with all their samples and crops, from the database file and its WAL;
        returns how many samples went. Works on a full disk (the reserve is given up for it)."""

        def change(conn: sqlite3.Connection) -> int:
            person_id, _ = _resolve(conn, person)
            removed = conn.execute("DELETE FROM samples WHERE person_id = ?", (person_id,)).rowcount
            conn.execute("DELETE FROM people WHERE id = ?", (person_id,))
            return int(removed)

        removed = self._write_even_when_full("forget a person", change)
        self.erase_traces()
        self.ensure_reserve()
        return removed

    def clear(self) -> int:
        """Forget everyone, from the database file and its WAL; returns how many people went."""

        def change(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM samples")
            _bump_generation(conn)
            return int(conn.execute("DELETE FROM people").rowcount)

        removed = self._write_even_when_full("clear the gallery", change)
        self.erase_traces()
        self.ensure_reserve()
        return removed

    @contextmanager
    def export_records(self, batch_size: int = 256):
        with self._read() as conn:
            people = [PersonRecord(*row) for row in conn.execute("SELECT id, name, created FROM people ORDER BY id")]

            yield people, _sample_batches(conn, batch_size)

    def import_records(self, people: Iterable[PersonRecord], samples: Iterable[list[SampleRecord]],
                       replace: bool = False) -> None:
        with self._write("copy into the gallery") as conn:
            present = _people_before_copy(conn, replace, self.path)
            if present:
                conn.execute("DELETE FROM samples")
                conn.execute("DELETE FROM people")
            _bump_generation(conn)
            conn.executemany("INSERT INTO people (id, name, created) VALUES (?, ?, ?)",
                             ((p.id, p.name, p.created) for p in people))
            for batch in samples:
                conn.executemany(
                    "INSERT INTO samples (id, person_id, embedding, dim, encoder, crop, landmarks, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    ((r.id, r.person_id, r.embedding, r.dim, r.encoder, r.crop, r.landmarks, r.created) for r in batch))
        if replace:
            self.erase_traces()

    def list_people(self) -> list[PersonInfo]:
        """Everyone, sorted by name."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT p.id, p.name, p.created, COUNT(s.id) FROM people p "
                "LEFT JOIN samples s ON s.person_id = p.id GROUP BY p.id ORDER BY p.name COLLATE NOCASE, p.id"
            ).fetchall()
        return [PersonInfo(*row) for row in rows]

    def get_person(self, person: int | str) -> PersonInfo:
        with self._read() as conn:
            person_id, name = _resolve(conn, person)
            created, count = conn.execute(
                "SELECT p.created, (SELECT COUNT(*) FROM samples WHERE person_id = p.id) FROM people p WHERE p.id = ?",
                (person_id,),
            ).fetchone()
        return PersonInfo(person_id, name, created, count)

    # -- samples -------------------------------------------------------------------------------

    def embeddings(self, encoder: str) -> GalleryEmbeddings:
        """Every sample embedded by this encoder identity, grouped by person.

        After a change, only the samples added since the previous call are read (the people are read
        again, so forgotten and renamed ones follow), unless the counts do not add up (a re-embedding,
        a replaced gallery): then everything is. A 10,000-person gallery that gains one person is
        reloaded in milliseconds instead of a quarter of a second, on the frame thread that asks.
        """
        encoder = _check_encoder(encoder)
        with self._read() as conn:
            revision = _read_revision(conn)
            generation = _read_generation(conn)
            with self._connections_lock:
                cached = self._loaded.get(encoder)
            if cached is not None and (cached.embeddings.revision, cached.generation) == (revision, generation):
                return cached.embeddings
            names = dict(conn.execute("SELECT id, name FROM people").fetchall())
            count = int(conn.execute("SELECT COUNT(*) FROM samples WHERE encoder = ?", (encoder,)).fetchone()[0])
            loaded = None
            if cached is not None and cached.generation == generation:
                rows = conn.execute("SELECT id, person_id, dim, embedding FROM samples WHERE encoder = ? AND id > ? "
                                    "ORDER BY person_id, id", (encoder, cached.last_id)).fetchall()
                loaded = self._extended(cached, rows, names, count, encoder, revision)
            if loaded is None:
                rows = conn.execute("SELECT id, person_id, dim, embedding FROM samples WHERE encoder = ? "
                                    "ORDER BY person_id, id", (encoder,)).fetchall()
                loaded = self._extended(None, rows, names, count, encoder, revision)
        loaded = _Loaded(loaded[0], loaded[1], generation)
        with self._connections_lock:
            self._loaded[encoder] = loaded
        return loaded.embeddings

    def _extended(self, cached: "_Loaded | None", rows: list, names: dict[int, str], count: int, encoder: str,
                  revision: int) -> "tuple[GalleryEmbeddings, np.ndarray] | None":
        """``cached`` without the people gone, plus ``rows``; None when that does not make ``count`` samples."""
        sample_ids = np.fromiter((row[0] for row in rows), np.int64, len(rows))
        person_ids = np.fromiter((row[1] for row in rows), np.int64, len(rows))
        if rows:
            dims = {row[2] for row in rows}
            blob = b"".join(row[3] for row in rows)
            dim = dims.pop()
            if dims or len(blob) != len(rows) * dim * 4:
                raise GalleryError(f"the gallery {self.path} is corrupt: inconsistent embeddings for encoder {encoder!r}")
            vectors = np.frombuffer(blob, "<f4").reshape(len(rows), dim)
        else:
            vectors = np.zeros((0, 0), np.float32)
        if cached is not None and len(cached.embeddings):
            old = cached.embeddings
            keep = np.isin(old.person_ids, np.fromiter(names, np.int64, len(names)))
            if len(rows) and vectors.shape[1] != old.dim:
                return None
            if len(rows) == 0 and keep.all():
                sample_ids, person_ids, vectors = cached.sample_ids, old.person_ids, old.embeddings
            else:
                sample_ids = np.concatenate([cached.sample_ids[keep], sample_ids])
                person_ids = np.concatenate([old.person_ids[keep], person_ids])
                vectors = np.concatenate([old.embeddings[keep], vectors]) if len(rows) else old.embeddings[keep]
                if len(person_ids) > 1 and np.any(np.diff(person_ids) < 0):  # a known person got more samples
                    order = np.lexsort((sample_ids, person_ids))
                    sample_ids, person_ids, vectors = sample_ids[order], person_ids[order], vectors[order]
        if len(sample_ids) != count:
            return None
        if not len(sample_ids):
            vectors = np.zeros((0, 0), np.float32)
        embeddings = GalleryEmbeddings(np.ascontiguousarray(vectors, np.float32), person_ids, names, encoder, revision)
        return embeddings, sample_ids

    def stale_count(self, encoder: str) -> int:
        """How many samples were embedded by another encoder identity (and need ``reembed``)."""
        encoder = _check_encoder(encoder)
        with self._read() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM samples WHERE encoder != ?", (encoder,)).fetchone()[0])

    def crops(self, person: int | str) -> np.ndarray:
        """The person's stored aligned crops, (N, 256, 256, 3) uint8 RGB, oldest first."""
        with self._read() as conn:
            person_id, _ = _resolve(conn, person)
            rows = conn.execute("SELECT crop FROM samples WHERE person_id = ? ORDER BY id", (person_id,))
            blobs = [row[0] for row in rows]
        if not blobs:
            return np.zeros((0, *CROP_SHAPE), np.uint8)
        return np.stack([_decode_crop(blob) for blob in blobs])

    def _stale_sample_ids(self, encoder: str) -> list[int]:
        with self._read() as conn:
            rows = conn.execute("SELECT id FROM samples WHERE encoder != ? ORDER BY id", (encoder,))
            return [row[0] for row in rows]

    def _reembed_batch(self, embed_fn: Callable[[np.ndarray], np.ndarray], encoder: str, ids: list[int]) -> int:
        placeholders = ",".join("?" * len(ids))
        with self._read() as conn:
            # Samples forgotten or re-embedded by someone else since the list was made drop out here.
            rows = conn.execute(
                f"SELECT id, crop FROM samples WHERE id IN ({placeholders}) AND encoder != ? ORDER BY id",
                (*ids, encoder),
            ).fetchall()
        if not rows:
            return 0
        crops = np.stack([_decode_crop(row[1]) for row in rows])
        embeddings = _check_embeddings(np.asarray(embed_fn(crops)), expected_count=len(rows))
        dim = embeddings.shape[1]
        with self._write("re-embed") as conn:
            _check_dimension(conn, encoder, dim)
            cursor = conn.executemany(
                "UPDATE samples SET embedding = ?, dim = ?, encoder = ? WHERE id = ? AND encoder != ?",
                ((_embedding_blob(emb), dim, encoder, row[0], encoder) for emb, row in zip(embeddings, rows)),
            )
            return int(cursor.rowcount)

    # -- change detection ----------------------------------------------------------------------

    def revision(self) -> int:
        """A counter that grows with every committed write from any thread or process.

        One indexed SELECT (a few microseconds): cheap enough to poll every frame.
        """
        try:
            return _read_revision(self._conn())
        except sqlite3.Error as error:
            raise GalleryError(f"cannot read the gallery {self.path}: {error}") from None


# -- helpers -----------------------------------------------------------------------------------


def _disk_full(error: BaseException) -> bool:
    cause = error.__cause__ or error
    return isinstance(cause, sqlite3.OperationalError) and "full" in str(cause)


def _make_private_folders(folder: Path) -> None:
    """Create ``folder`` and any missing parents as 0700 (existing folders are left as they are)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            continue  # another thread or process made it just now: it is theirs to have made private
        path.chmod(FOLDER_MODE)  # mkdir's mode is masked by the umask


def _create_private_file(path: Path) -> None:
    """Create the (empty) database file 0600 before SQLite does; SQLite gives -wal and -shm its mode."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(descriptor)


def _writable(path: Path) -> bool:
    # WAL mode writes -wal and -shm files beside the database: the directory must be writable too.
    directory_ok = os.access(path.parent, os.W_OK)
    return directory_ok and (not path.exists() or os.access(path, os.W_OK))


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (persistent: stored in the file).

    The switch needs every other connection out of the file, and SQLite answers "database is locked"
    at once instead of waiting for ``busy_timeout`` when one is reading, as the other openers of a
    gallery being created are; so wait here, as long as any other write would.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) and "busy" not in str(error):
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"the file stayed in journal mode {mode!r}, not WAL")
        return


def _read_header(conn: sqlite3.Connection) -> tuple[int, int, set[str]]:
    """Schema version, application id and table names, from one snapshot (another process may be
    creating the gallery at this very moment)."""
    conn.execute("BEGIN")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        conn.execute("COMMIT")
    return version, app_id, tables


def _read_revision(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])


def _read_generation(conn: sqlite3.Connection) -> int:
    """Grows when the whole gallery is replaced (clear, ``gallery copy --replace``); 0 in older galleries."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return int(row[0]) if row else 0


def _bump_generation(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO meta VALUES ('generation', 1) ON CONFLICT(key) DO UPDATE SET value = value + 1")


@dataclass(frozen=True)
class _Loaded:
    embeddings: GalleryEmbeddings
    sample_ids: np.ndarray  # (M,) the rows' sample ids

    generation: int

    @property
    def last_id(self) -> int:
        return int(self.sample_ids.max()) if len(self.sample_ids) else -1


def _sample_batches(conn, batch_size: int, placeholder: str = "?") -> Iterator[list[SampleRecord]]:
    """Every sample as stored, in id order, ``batch_size`` at a time (``gallery copy``); by id ranges,
    so each batch is one indexed read. ``placeholder`` as for :func:`_resolve`."""
    last = -1
    while True:
        rows = conn.execute(
            "SELECT id, person_id, embedding, dim, encoder, crop, landmarks, created FROM samples "
            f"WHERE id > {placeholder} ORDER BY id LIMIT {placeholder}", (last, batch_size)).fetchall()
        if not rows:
            return
        # bytes(): psycopg returns BYTEA as memoryview
        yield [SampleRecord(int(r[0]), int(r[1]), bytes(r[2]), int(r[3]), r[4], bytes(r[5]), bytes(r[6]), float(r[7]))
               for r in rows]
        last = rows[-1][0]


def _people_before_copy(conn, replace: bool, location: object) -> int:
    """How many people a copy's destination holds; a non-empty one is refused unless ``replace``."""
    present = int(conn.execute("SELECT COUNT(*) FROM people").fetchone()[0])
    if present and not replace:
        raise GalleryError(f"the gallery {location} is not empty ({present} people); "
                           "copying into it would mix two galleries")
    return present


def _resolve(conn, person: int | str, placeholder: str = "?") -> tuple[int, str]:
    """(id, name) of a person given by id or name; ``placeholder`` is the driver's parameter marker
    (``?`` for sqlite3, ``%s`` for psycopg), so both galleries share this one rule."""
    if isinstance(person, (int, np.integer)) and not isinstance(person, (bool, np.bool_)):
        row = conn.execute(f"SELECT id, name FROM people WHERE id = {placeholder}", (int(person),)).fetchone()
        if row is None:
            raise UnknownPersonError(f"no person with id {int(person)}")
    elif isinstance(person, str):
        name = unicodedata.normalize("NFC", person.strip())
        row = conn.execute(f"SELECT id, name FROM people WHERE name = {placeholder}", (name,)).fetchone()
        if row is None:
            raise UnknownPersonError(f"no person named {person.strip()!r}")
    else:
        raise GalleryError(f"a person is given by name or id, got {type(person).__name__}")
    return int(row[0]), row[1]


def _check_encoder(encoder: str) -> str:
    if not isinstance(encoder, str) or not encoder.strip():
        raise GalleryError(f"the encoder identity must be a non-empty string like 'name:weightshash:geometry', got {encoder!r}")
    return encoder


def _check_embeddings(embeddings: np.ndarray, expected_count: int | None = None) -> np.ndarray:
    """Unit-norm float32 (N, D) embeddings, or ``GalleryError``."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0 or embeddings.shape[1] == 0:
        raise GalleryError(f"embeddings must be a non-empty (N, D) array, got shape {embeddings.shape}")
    if not np.issubdtype(embeddings.dtype, np.floating):
        raise GalleryError(f"embeddings must be floating point, got {embeddings.dtype}")
    if expected_count is not None and embeddings.shape[0] != expected_count:
        raise GalleryError(f"expected {expected_count} embeddings, got {embeddings.shape[0]}")
    embeddings = embeddings.astype(np.float32)
    if not np.all(np.isfinite(embeddings)):
        raise GalleryError("embeddings contain NaN or infinite values")
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if np.any(norms < 1e-6):
        raise GalleryError("an embedding has (almost) zero length and no direction")
    # Matching is cosine similarity: store unit vectors so it is a plain dot product.
    return embeddings / norms


def _check_samples(embeddings: np.ndarray, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    embeddings = _check_embeddings(embeddings)
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != CROP_SHAPE:
        raise GalleryError(
            f"crops must be (N, {CROP_SHAPE[0]}, {CROP_SHAPE[1]}, 3) uint8 RGB aligned at "
            f"STORAGE_TEMPLATE, got {crops.dtype} {crops.shape}"
        )
    if len(crops) != len(embeddings):
        raise GalleryError(f"got {len(embeddings)} embeddings but {len(crops)} crops")
    return embeddings, crops


def _check_dimension(conn: sqlite3.Connection, encoder: str, dim: int) -> None:
    row = conn.execute("SELECT dim FROM samples WHERE encoder = ? LIMIT 1", (encoder,)).fetchone()
    if row is not None and row[0] != dim:
        raise GalleryError(f"encoder {encoder!r} made {row[0]}-dimensional embeddings before, now {dim}")


def _insert_samples(
    conn: sqlite3.Connection, person_id: int, embeddings: np.ndarray, crops: np.ndarray, encoder: str
) -> None:
    _check_dimension(conn, encoder, embeddings.shape[1])
    landmarks = STORAGE_TEMPLATE.landmarks.astype("<f4").tobytes()
    now = time.time()
    dim = embeddings.shape[1]
    # Crops are encoded one by one as rows are inserted: a failure rolls back the whole enrollment.
    rows = (
        (person_id, _embedding_blob(embedding), dim, encoder, _encode_crop(crop), landmarks, now)
        for embedding, crop in zip(embeddings, crops)
    )
    conn.executemany(
        "INSERT INTO samples (person_id, embedding, dim, encoder, crop, landmarks, created) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


def _embedding_blob(embedding: np.ndarray) -> bytes:
    return embedding.astype("<f4").tobytes()


def _encode_crop(crop: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    if not ok:
        raise GalleryError("could not PNG-encode a face crop")
    return buffer.tobytes()


def _decode_crop(blob: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape != CROP_SHAPE:
        raise GalleryError("the gallery holds a corrupt face crop")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
