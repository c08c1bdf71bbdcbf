"""Forget means forgotten, on the real files: no byte of a forgotten face anywhere the gallery wrote.

Also: the gallery's folder and files are private (0700 / 0600), and a person can be forgotten or
renamed on a full disk (a real, small tmpfs in a private mount namespace).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from face_recognition_ros import gallery as gallery_module
from face_recognition_ros.gallery import CROP_SHAPE, FILE_MODE, FOLDER_MODE, Gallery

ENCODER = "test_encoder:0123456789abcdef:00000000"
NAME = "Forgotten Person Zyx"


def distinctive_samples(seed: int, count: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    crops = rng.integers(0, 256, (count, *CROP_SHAPE), dtype=np.uint8)  # noise: incompressible, unmistakable
    embeddings = rng.standard_normal((count, 128)).astype(np.float32)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True), crops


@pytest.fixture()
def build_without_secure_delete(monkeypatch):
    """Every SQLite connection starts as a build without SQLITE_SECURE_DELETE would: off."""
    real_connect = sqlite3.connect

    def connect(*args, **kwargs):
        connection = real_connect(*args, **kwargs)
        connection.execute("PRAGMA secure_delete = OFF")
        return connection

    monkeypatch.setattr(gallery_module.sqlite3, "connect", connect)


def snippets(blob: bytes, size: int = 48, count: int = 12) -> list[bytes]:
    """Slices from across a blob's compressed pixels: any surviving fragment of it contains some.

    The first and last 200 bytes are left out: every 256x256 PNG starts and ends with the same
    header and trailer, which the people who stay enrolled share.
    """
    start, stop = 200, len(blob) - 200
    step = max(1, (stop - start - size) // count)
    return [blob[offset:offset + size] for offset in range(start, stop - size, step)][:count]


def traces(folder: Path, needles: list[bytes]) -> dict[str, int]:
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits = sum(data.count(needle) for needle in needles)
            if hits:
                found[path.name] = hits
    return found


HOLDER = textwrap.dedent("""
    import sys, time
    from face_recognition_ros.gallery import Gallery
    gallery = Gallery(sys.argv[1])
    gallery.list_people()
    print("open", flush=True)
    sys.stdin.readline()   # stays open, idle, like a running node between frames
    print(len(gallery.list_people()), flush=True)
""")


def test_a_forgotten_person_leaves_no_byte_on_disk_while_other_connections_are_open(tmp_path,
                                                                                      build_without_secure_delete):
    folder = tmp_path / "gallery"
    path = folder / "gallery.db"
    gallery = Gallery(path)
    gallery.enroll("Someone Else", *distinctive_samples(1), ENCODER)
    embeddings, crops = distinctive_samples(2)
    gallery.enroll(NAME, embeddings, crops, ENCODER)
    with sqlite3.connect(path) as raw:
        stored = raw.execute("SELECT s.crop, s.embedding FROM samples s JOIN people p ON p.id = s.person_id "
                             "WHERE p.name = ?", (NAME,)).fetchall()
    raw.close()
    needles = [NAME.encode()] + [piece for crop, embedding in stored for piece in snippets(crop) + [embedding]]
    assert traces(folder, needles), "the person's bytes should be on disk before the forget"

    same_process = Gallery(path)  # a second connection, as the node's worker thread would hold
    same_process.list_people()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert gallery.forget(NAME) == 3
        assert traces(folder, needles) == {}
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "1"  # the other process sees the forget
    finally:
        holder.kill()
        holder.wait()
    assert [p.name for p in same_process.list_people()] == ["Someone Else"]
    same_process.close()
    gallery.close()
    assert traces(folder, needles) == {}


def test_a_renamed_persons_old_name_is_erased_too(tmp_path, build_without_secure_delete):
    gallery = Gallery(tmp_path / "gallery.db")
    gallery.enroll(NAME, *distinctive_samples(3), ENCODER)
    gallery.rename(NAME, "Someone New")
    assert traces(tmp_path, [NAME.encode()]) == {}
    gallery.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_gallery_is_private_folder_and_files(tmp_path):
    path = tmp_path / "robot" / "faces" / "gallery.db"
    gallery = Gallery(path)
    gallery.enroll(NAME, *distinctive_samples(4), ENCODER)
    assert mode(path.parent) == FOLDER_MODE and mode(path.parent.parent) == FOLDER_MODE
    files = gallery.files()
    assert {p.name for p in files} >= {"gallery.db", "gallery.db-wal", "gallery.db-shm", "gallery.db.reserve"}
    assert {p.name: mode(p) for p in files} == {p.name: FILE_MODE for p in files}
    gallery.forget(NAME)  # the WAL is truncated and written again: still private
    assert {p.name: mode(p) for p in gallery.files()} == {p.name: FILE_MODE for p in gallery.files()}
    gallery.close()


def test_an_old_world_readable_gallery_is_made_private_when_opened(tmp_path):
    path = tmp_path / "gallery.db"
    Gallery(path).close()
    for file in tmp_path.iterdir():
        file.chmod(0o644)
    with Gallery(path) as gallery:
        assert all(mode(p) == FILE_MODE for p in gallery.files())


FULL_DISK = textwrap.dedent("""
    import numpy as np, sys
    from face_recognition_ros.errors import GalleryError
    from face_recognition_ros.gallery import CROP_SHAPE, Gallery
    rng = np.random.default_rng(0)
    def samples(count):
        crops = rng.integers(0, 256, (count, *CROP_SHAPE), dtype=np.uint8)
        e = rng.standard_normal((count, 128)).astype(np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True), crops
    import face_recognition_ros.gallery as module
    if sys.argv[2] == "no-reserve":
        module.RESERVE_BYTES = 0
    gallery = Gallery(sys.argv[1] + "/gallery.db")
    gallery.enroll("Keep", *samples(2), "enc:0:0")
    gallery.enroll("Erase Me", *samples(8), "enc:0:0")
    filled = 0
    try:
        while True:   # fill the disk with a file of our own, then with enrollments
            with open(sys.argv[1] + "/filler", "ab") as handle:
                handle.write(bytes(1 << 20))
            filled += 1
    except OSError:
        pass
    try:
        gallery.enroll("Too Much", *samples(8), "enc:0:0")
        print("enroll on a full disk succeeded?!")
    except GalleryError as error:
        print("enroll refused:", "full" in str(error))
    try:
        gallery.rename("Keep", "Kept")
        removed = gallery.forget("Erase Me")
        print("forgot", removed, [p.name for p in gallery.list_people()])
    except GalleryError as error:
        print("failed:", "full" in str(error))
""")


def on_a_full_disk(tmp_path: Path, reserve: str) -> list[str]:
    """Run FULL_DISK on a 24 MB tmpfs of a private mount namespace; its output lines."""
    if not (shutil.which("unshare") and shutil.which("mount")) or os.geteuid() != 0:
        pytest.skip("needs root and unshare to mount a small tmpfs in a private mount namespace")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK)
    command = f"mount -t tmpfs -o size=24m tmpfs {disk} && {sys.executable} {script} {disk} {reserve}"
    done = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"this machine refuses a private tmpfs: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_forget_and_rename_succeed_on_a_full_disk(tmp_path):
    assert on_a_full_disk(tmp_path, "with-reserve") == ["enroll refused: True", "forgot 8 ['Kept']"]


def test_without_the_reserve_a_full_disk_would_block_the_forget(tmp_path):
    """The control: what the reserve is for (a gallery made without one cannot erase on a full disk)."""
    assert on_a_full_disk(tmp_path, "no-reserve") == ["enroll refused: True", "failed: True"]
