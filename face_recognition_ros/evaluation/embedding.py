"""Run a caller's embedding function over image files, timing it and checking what it returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from face_recognition_ros.errors import EvaluationError, ImageError

#: returns the face's embedding, None when no face was found, or raises ImageError for an unreadable file
EmbedImage = Callable[[Path], "np.ndarray | None"]


def embed_images(
    embed_image: EmbedImage, paths: Sequence[Path], progress: bool = True, description: str = "embedding",
    unreadable: list[str] | None = None,
) -> tuple[list[np.ndarray | None], float]:
    """Unit float32 embeddings (None where no face was found) and the mean seconds per image.

    Embeddings are re-normalised so a caller returning a nearly-unit vector still gives exact
    cosine similarities; a vector of the wrong shape, with NaNs, or of zero length is an error.
    A file ``embed_image`` cannot read (``ImageError``) gives None too, and its error message is
    added to ``unreadable``, so that a broken file is reported as such and not as a missed face.
    """
    embeddings: list[np.ndarray | None] = []
    dimension: int | None = None
    started = time.perf_counter()
    for path in tqdm(paths, desc=description, unit="img", disable=not progress):
        try:
            raw = embed_image(path)
        except ImageError as error:
            if unreadable is None:
                raise
            unreadable.append(str(error))
            embeddings.append(None)
            continue
        if raw is None:
            embeddings.append(None)
            continue
        vector = np.asarray(raw, dtype=np.float32)
        if vector.ndim == 2 and vector.shape[0] == 1:  # a batch of one, as encoders return
            vector = vector[0]
        if vector.ndim != 1 or vector.size == 0:
            raise EvaluationError(f"embed_image returned an array of shape {np.shape(raw)} for {path}, expected (D,)")
        if dimension is not None and vector.size != dimension:
            raise EvaluationError(f"embed_image returned {vector.size} values for {path} but {dimension} before")
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise EvaluationError(f"embed_image returned a zero or non-finite embedding for {path}")
        dimension = vector.size
        embeddings.append(vector / norm)
    elapsed = time.perf_counter() - started
    return embeddings, elapsed / len(paths) if paths else 0.0
