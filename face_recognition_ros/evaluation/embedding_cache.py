"""Embeddings of a dataset's images, computed once per encoder and reused by later evaluations.

``eval identify`` embeds every image of a dataset (the largest face of each); a second run with the
same encoder, detector settings and unchanged files reads the vectors back instead. The key of an
entry is the file's absolute path, size and modification time, so an edited image is embedded again;
the cache file's name holds the encoder identity and the detector settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import platformdirs

from ..atomic_file import atomic_path

#: what an embedding function returns for one image: the vector, or None when no face was found
Embedder = Callable[[Path], "np.ndarray | None"]


def default_cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir("face_recognition_ros")) / "eval"


def _file_key(path: Path) -> str:
    stat = path.stat()
    return f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"


def cache_file(cache_dir: Path, settings: dict) -> Path:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"embeddings-{digest}.npz"


class EmbeddingCache:
    """Vectors (or "no face") per image file, for one encoder identity and detector setting."""

    def __init__(self, settings: dict, cache_dir: str | Path | None = None) -> None:
        self.path = cache_file(Path(cache_dir) if cache_dir is not None else default_cache_dir(), settings)
        self._vectors: dict[str, np.ndarray | None] = {}
        self._dirty = False
        if self.path.is_file():
            try:
                stored = np.load(self.path, allow_pickle=False)
                keys, found, vectors = stored["keys"].tolist(), stored["found"], stored["vectors"]
            except (OSError, ValueError, KeyError):
                return  # a broken cache is rebuilt, never trusted
            self._vectors = {key: (vector if hit else None) for key, hit, vector in zip(keys, found, vectors)}

    def embed(self, embedder: Embedder, path: Path) -> np.ndarray | None:
        """The cached result for ``path``, else ``embedder(path)`` (then cached; errors are not)."""
        key = _file_key(path)
        if key in self._vectors:
            return self._vectors[key]
        vector = embedder(path)
        self._vectors[key] = None if vector is None else np.asarray(vector, np.float32).reshape(-1)
        self._dirty = True
        return self._vectors[key]

    def save(self) -> None:
        if not self._dirty:
            return
        keys = list(self._vectors)
        dims = {v.size for v in self._vectors.values() if v is not None}
        dim = dims.pop() if len(dims) == 1 else 0
        vectors = np.zeros((len(keys), dim), np.float32)
        found = np.zeros(len(keys), bool)
        for row, key in enumerate(keys):
            vector = self._vectors[key]
            if vector is not None and vector.size == dim:
                vectors[row], found[row] = vector, True
        with atomic_path(self.path) as partial:
            with open(partial, "wb") as handle:
                np.savez(handle, keys=np.array(keys), found=found, vectors=vectors)
        self._dirty = False


def cached_embedder(embedder: Embedder, cache: EmbeddingCache | None) -> Embedder:
    """``embedder`` going through ``cache`` (or itself when there is no cache)."""
    if cache is None:
        return embedder
    return lambda path: cache.embed(embedder, path)
