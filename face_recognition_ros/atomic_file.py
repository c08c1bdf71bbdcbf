"""Write a file so that readers see either the old content or the complete new one, never a part."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write to; it replaces ``target`` when the block succeeds.

    The name carries the process id, so concurrent writers never share a partial file; on an
    exception the partial file is removed and ``target`` is left as it was. The new file and the
    folder entry are fsynced before the block returns.
    """
    target = Path(target)
    for folder in (target.parent, *target.parent.parents):
        if folder.exists() and not folder.is_dir():  # mkdir would say "File exists", which misleads
            raise NotADirectoryError(errno.ENOTDIR, "a file is where a folder should be", str(folder))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield partial
        # Durable before visible: the data reaches the disk before the rename, and the rename itself
        # is made durable by syncing the folder, so a power cut leaves the old file or the whole new
        # one, never an empty one.
        _fsync(partial)
        os.replace(partial, target)
        _fsync(target.parent)
    finally:
        partial.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
