"""Where the datasets live: a path argument, else ``FACE_RECOGNITION_DATA``, else ``../shared/data``."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "FACE_RECOGNITION_DATA"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder holding ``lfw/``, ``celeba-subset/`` and ``media/``.

    Order: the explicit path, the ``FACE_RECOGNITION_DATA`` environment variable, then
    ``../shared/data`` beside the source checkout (the development layout), then beside the
    current directory (a colcon install space is not inside the checkout).
    """
    if explicit:
        return Path(explicit)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    beside_checkout = Path(__file__).resolve().parents[2] / "shared" / "data"
    beside_cwd = Path.cwd().parent / "shared" / "data"
    if not beside_checkout.exists() and beside_cwd.exists():
        return beside_cwd
    return beside_checkout
