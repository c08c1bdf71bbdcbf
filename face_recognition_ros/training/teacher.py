"""Teacher embeddings for distillation, computed once per cache and encoder weights, then reused.

The teacher sees each cached face once, un-augmented (its own template cut from the storage crop),
while the student trains on augmented views of the same face: the augmentations preserve identity,
so the clean teacher vector is the target every view should match. With ``loss.teacher_online``
the teachers embed each augmented view instead, every step (``OnlineTeacher``).

A teacher can be an ensemble (``loss.teacher: [dlib_resnet, mobileface]``): the target similarity
of two faces is the weighted mean (``loss.teacher_mix``, normalised to sum 1) of the teachers'
similarities, each rescaled (or centred, the older recipes' way) as ``combine_teachers`` describes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..alignment import AlignmentTemplate
from ..encoders import create_encoder
from ..encoders.base import FaceEncoder, l2_normalize
from .face_cache import CachedFace, DatasetError, FaceCache, recrop


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


def expand_path(path: str, what: str) -> str:
    """``path`` with ``$VAR`` / ``${VAR}`` and ``~`` expanded; an unset variable is a clear error."""
    expanded = os.path.expanduser(os.path.expandvars(str(path)))
    if "$" in expanded:
        raise DatasetError(f"{what}: {path!r} names an environment variable that is not set")
    return expanded


@dataclass
class TeacherSpec:
    """The teacher of a recipe: encoder names, their weight files (None: built in) and mix weights."""

    names: list[str]
    weights: dict[str, str | None] = field(default_factory=dict)
    mix: list[float] | None = None  # normalised in ``normalised_mix``; None: equal
    similarity: str = "rescaled"  # how each teacher's cosines become targets (combine_teachers)

    @staticmethod
    def from_loss(loss) -> "TeacherSpec":
        from .config import teacher_names

        return TeacherSpec(teacher_names(loss), dict(loss.teacher_weights), loss.teacher_mix, loss.teacher_similarity)

    def normalised_mix(self) -> list[float]:
        weights = self.mix or [1.0] * len(self.names)
        total = float(sum(weights))
        return [float(w) / total for w in weights]

    def check_weights(self) -> None:
        """Every teacher's weight file exists (checked before the datasets are cached and embedded)."""
        for name in self.names:
            path = self.weights.get(name)
            if path and not Path(expanded := expand_path(path, f"loss.teacher_weights.{name}")).is_file():
                raise DatasetError(f"loss.teacher_weights.{name}: no file {expanded}")

    def create(self, name: str) -> FaceEncoder:
        path = self.weights.get(name)
        return create_encoder(name, **({"weights": expand_path(path, f"loss.teacher_weights.{name}")} if path else {}))


TEACHER_SIMILARITIES = ("centred", "rescaled")


@dataclass
class TeacherTargets:
    """Per-face teacher vectors whose dot products, minus ``offset``, are the target similarities."""

    vectors: np.ndarray  # (N, T) float32
    offset: float = 0.0
    # rescaled: the factor of each teacher's unit embedding, sqrt(w / (1 - mu)); None when centred
    scales: list[float] | None = None

    def similarities(self, rows: np.ndarray | None = None) -> np.ndarray:
        vectors = self.vectors if rows is None else self.vectors[rows]
        return vectors @ vectors.T - self.offset


def mean_pair_cosine(unit: np.ndarray) -> float:
    """The mean cosine over all pairs of distinct rows of unit vectors, exactly: (|sum|^2 - n) / (n(n-1))."""
    n = unit.shape[0]
    if n < 2:
        return 0.0
    total = np.asarray(unit, np.float64).sum(axis=0)
    return float((total @ total - n) / (n * (n - 1)))


def combine_teachers(vectors: Sequence[np.ndarray], mix: Sequence[float], similarity: str = "rescaled") -> TeacherTargets:
    """One target per face from several teachers' embeddings (rows: faces; one block per teacher).

    ``rescaled``: each teacher's cosine is mapped affinely so that a face scores 1 with itself and 0
    on average with the others, ``(cos - mu) / (1 - mu)`` with ``mu`` the mean cosine over all pairs
    of rows; the target is the ``mix``-weighted mean of those. Monotone per teacher, so a single
    teacher keeps its ranking (and its LFW accuracy), while dlib_resnet's cosines, all within
    0.75..1 because its raw vectors share a large common component, are spread over the range the
    student's cosines use. As vectors: ``sqrt(w / (1 - mu))`` times the unit embedding, side by
    side, with ``offset = sum(w mu / (1 - mu))``.
    ``centred``: each teacher's embeddings minus their mean over the rows, unit-normalised, scaled
    by ``sqrt(w)`` (offset 0); the older recipes' targets. Centring distorts dlib_resnet's geometry
    (LFW 98.70% raw, 98.07% centred), which is why ``rescaled`` exists.
    """
    if similarity not in TEACHER_SIMILARITIES:
        raise ValueError(f"teacher similarity must be one of {TEACHER_SIMILARITIES}, got {similarity!r}")
    parts, offset, scales = [], 0.0, []
    for block, weight in zip(vectors, mix):
        block = np.asarray(block, np.float64)
        if similarity == "centred":
            parts.append(np.sqrt(weight) * l2_normalize(block - block.mean(axis=0)))
            continue
        unit = l2_normalize(block).astype(np.float64)
        mu = min(mean_pair_cosine(unit), 0.99)
        scales.append(float(np.sqrt(weight / (1.0 - mu))))
        parts.append(scales[-1] * unit)
        offset += weight * mu / (1.0 - mu)
    return TeacherTargets(np.concatenate(parts, axis=1).astype(np.float32), float(offset),
                          scales if similarity == "rescaled" else None)


def ensemble_targets(spec: TeacherSpec, groups: Sequence[tuple[FaceCache, Sequence[CachedFace]]],
                     progress: bool = True) -> TeacherTargets:
    """Distillation targets of the faces of every (cache, faces) group, rows in group order: every
    teacher's embeddings (computed once per face and cached) combined by ``combine_teachers``
    over all the rows."""
    per_teacher = []
    for name in spec.names:
        encoder = spec.create(name)
        per_teacher.append(np.concatenate([
            teacher_embeddings(cache, faces, name, encoder=encoder, progress=progress) for cache, faces in groups
        ]))
    return combine_teachers(per_teacher, spec.normalised_mix(), spec.similarity)


@dataclass
class OnlineTeacher:
    """Consistent teaching: the teachers embed, at every step, the very views the student trains on.

    Targets computed once from the clean faces ask every augmented view to match the clean face;
    a view the augmentation changed more than identity allows (heavy blur, a blend of two faces)
    then gets a target it does not deserve, and after many passes the student learns the training
    faces rather than the teacher's function. Here each teacher is shown the student's own
    augmented crop, re-aligned to the teacher's template (``recrop``; on LFW 10-fold, dlib_resnet
    scores 98.58% from re-aligned 112x112 crops against 98.68% from its own, MobileFace 98.75%
    from both), and its unit embedding is scaled as in the clean targets (``scales`` and
    ``offset`` of ``combine_teachers``, rescaled), so target similarities keep their meaning.
    """

    encoders: list[FaceEncoder]
    scales: list[float]
    offset: float
    source: AlignmentTemplate  # the template of the crops ``targets`` is given: the student's

    @staticmethod
    def from_spec(spec: TeacherSpec, scales: Sequence[float] | None, offset: float,
                  source: AlignmentTemplate) -> "OnlineTeacher":
        if spec.similarity != "rescaled" or scales is None or len(scales) != len(spec.names):
            raise ValueError("an online teacher needs the rescaled targets' scale of every teacher")
        return OnlineTeacher([spec.create(name) for name in spec.names], list(scales), float(offset), source)

    def targets(self, crops: np.ndarray) -> np.ndarray:
        """(N, T) float32 target vectors of (N, H, W, 3) uint8 crops aligned to ``source``."""
        parts = [scale * encoder.embed(recrop(crops, encoder.template, self.source))
                 for encoder, scale in zip(self.encoders, self.scales)]
        return np.concatenate(parts, axis=1).astype(np.float32)
