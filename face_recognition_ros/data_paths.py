"""Where the datasets live: a path argument, else ``FACE_RECOGNITION_DATA``, else ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "FACE_RECOGNITION_DATA"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder holding ``lfw/``, ``celeba-subset/`` and ``media/``.

    Order: the explicit path, the ``FACE_RECOGNITION_DATA`` environment variable, then
    ``../shared/data`` beside the source checkout (the development layout).
    """
    if explicit:
        return Path(explicit)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    return Path(__file__).resolve().parents[2] / "shared" / "data"
