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
