"""atomic_path: readers see the old file or the whole new one, and a failed write leaves nothing behind."""

from __future__ import annotations

import pytest

from face_recognition_ros.atomic_file import atomic_path


def test_a_successful_block_replaces_the_target(tmp_path):
    target = tmp_path / "sub" / "model.bin"
    with atomic_path(target) as partial:
        assert partial.parent == target.parent and partial != target
        partial.write_bytes(b"new")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["model.bin"]


def test_a_failing_block_keeps_the_old_target_and_removes_the_partial_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as partial:
            partial.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]


def test_the_new_file_and_its_folder_entry_are_synced_before_the_block_returns(tmp_path, monkeypatch):
    import os

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b))
    target = tmp_path / "model.bin"
    with atomic_path(target) as partial:
        partial.write_bytes(b"new")
    assert events == [("fsync", str(partial)), ("replace", str(target)), ("fsync", str(tmp_path))]


def test_a_file_where_a_folder_should_be_is_named_and_left_alone(tmp_path):
    blocker = tmp_path / "models"
    blocker.write_bytes(b"keep me")
    with pytest.raises(NotADirectoryError, match="a file is where a folder should be") as raised:
        with atomic_path(blocker / "deeper" / "model.bin"):
            pytest.fail("the block must not run")
    assert raised.value.filename == str(blocker)
    assert blocker.read_bytes() == b"keep me"
