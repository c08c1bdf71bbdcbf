"""Teacher embeddings for distillation, computed once per cache and encoder weights, then reused.

The teacher sees each cached face once, un-augmented (its own template cut from the storage crop),
while the student trains on augmented views of the same face: the augmentations preserve identity,
so the clean teacher vector is the target every view should match.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from ..encoders import create_encoder
from ..encoders.base import FaceEncoder
from .face_cache import CachedFace, FaceCache, recrop


def embed_storage_crops(encoder: FaceEncoder, storage_crops: np.ndarray, batch_size: int = 64,
                        progress: bool = False) -> np.ndarray:
    """Unit embeddings of STORAGE_TEMPLATE crops under ``encoder`` (re-aligned to its template)."""
    out = np.empty((storage_crops.shape[0], encoder.embedding_size), np.float32)
    starts = range(0, storage_crops.shape[0], batch_size)
    for start in tqdm(starts, desc=f"embed ({encoder.name})", disable=not progress):
        out[start:start + batch_size] = encoder.embed(recrop(storage_crops[start:start + batch_size], encoder.template))
    return out


def teacher_embeddings(cache: FaceCache, faces: Sequence[CachedFace], teacher_name: str,
                       encoder: FaceEncoder | None = None, progress: bool = True) -> np.ndarray:
    """(len(faces), T) teacher embeddings, read from / added to ``cache.root/teacher-<identity>.npz``."""
    encoder = encoder or create_encoder(teacher_name)
    path = cache.root / f"teacher-{encoder.identity.replace(':', '-')}.npz"
    known: dict[str, np.ndarray] = {}
    if path.is_file():
        stored = np.load(path)
        known = dict(zip(stored["sources"].tolist(), stored["embeddings"]))
    missing = [face for face in faces if face.source not in known]
    if missing:
        vectors = embed_storage_crops(encoder, cache.load_storage_crops(missing), progress=progress)
        known.update(zip((face.source for face in missing), vectors))
        sources = sorted(known)
        np.savez(path, sources=np.array(sources), embeddings=np.stack([known[s] for s in sources]))
    return np.stack([known[face.source] for face in faces]).astype(np.float32)
