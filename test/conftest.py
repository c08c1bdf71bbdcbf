"""Shared fixtures. Tests needing the datasets skip, saying why, when the data folder is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from face_recognition_ros.data_paths import DATA_ENV, data_root

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"dataset not found at {path} (set {DATA_ENV} to the folder holding lfw/, media/)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(data_root())


@pytest.fixture(scope="session")
def media_dir(data_dir: Path) -> Path:
    return _require(data_dir / "media")


@pytest.fixture(scope="session")
def lfw_dir(data_dir: Path) -> Path:
    return _require(data_dir / "lfw")


@pytest.fixture(scope="session")
def celeba_dir(data_dir: Path) -> Path:
    return _require(data_dir / "celeba-subset")
