"""Datasets for training: identity-disjoint split, augmented crops, PK batches and validation pairs."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..alignment import ARCFACE_112
from ..data_paths import data_root
from ..encoders.base import l2_normalize
from .augment import augment_face
from .config import AugmentConfig, DataConfig
from .face_cache import CachedFace, DatasetError, FaceCache, build_face_cache, recrop

log = logging.getLogger(__name__)


def read_identity_list(path: str | Path) -> set[str]:
    """Identities listed one per line; text after '#' is a comment."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(f"cannot read identity list {path}: {error}") from None
    return {line.split("#", 1)[0].strip() for line in lines} - {""}


def split_identities(identities: Sequence[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Seeded identity-disjoint (train, val) split; at least two identities on each side."""
    identities = sorted(identities)
    if len(identities) < 4:
        raise DatasetError(f"need at least 4 identities to split into train and validation, got {len(identities)}")
    order = np.random.default_rng(seed).permutation(len(identities))
    val_count = min(max(2, round(len(identities) * val_fraction)), len(identities) - 2)
    val = sorted(identities[i] for i in order[:val_count])
    train = sorted(identities[i] for i in order[val_count:])
    return train, val


def make_val_pairs(labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Up to ``count`` (index_a, index_b, same) pairs, half same-identity and half different, seeded."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    groups = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    same = [(a, b) for group in groups for i, a in enumerate(group) for b in group[i + 1:]]
    if not same or len(groups) < 2:
        raise DatasetError("validation needs two identities and one identity with two images")
    half = max(1, count // 2)
    chosen = [same[i] for i in rng.choice(len(same), min(half, len(same)), replace=False)]
    different: set[tuple[int, int]] = set()
    while len(different) < len(chosen):
        a, b = rng.choice(labels.size, 2, replace=False)
        if labels[a] != labels[b]:
            different.add((int(min(a, b)), int(max(a, b))))
    pairs = np.array(chosen + sorted(different), np.int64)
    same_flags = np.r_[np.ones(len(chosen), bool), np.zeros(len(different), bool)]
    return pairs[:, 0], pairs[:, 1], same_flags


@dataclass
class FaceArrays:
    """Aligned crops at the training size, integer labels, and optional teacher embeddings."""

    crops: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64, 0..C-1
    identities: list[str]  # label -> identity name
    teacher: np.ndarray | None = None  # (N, T) float32 unit vectors

    def __len__(self) -> int:
        return int(self.labels.size)


class AugmentedFaces(Dataset):
    """Items ``{"image": (H, W, 3) uint8, "label", "index"}``; augmented when ``augment`` is given."""

    def __init__(self, arrays: FaceArrays, augment: AugmentConfig | None) -> None:
        self.arrays = arrays
        self.augment = augment
        self._rng: np.random.Generator | None = None
        self._rng_seed: int | None = None

    def __len__(self) -> int:
        return len(self.arrays)

    def _generator(self) -> np.random.Generator:
        # torch gives every DataLoader worker (and every epoch with workers) its own initial seed.
        seed = torch.initial_seed()
        if self._rng is None or seed != self._rng_seed:
            self._rng, self._rng_seed = np.random.default_rng(seed % 2**63), seed
        return self._rng

    def __getitem__(self, index: int) -> dict:
        crop = self.arrays.crops[index]
        if self.augment is not None:
            crop = augment_face(crop, self._generator(), self.augment)
        item = {"image": torch.from_numpy(np.ascontiguousarray(crop)), "label": int(self.arrays.labels[index]), "index": index}
        if self.arrays.teacher is not None:
            item["teacher"] = torch.from_numpy(self.arrays.teacher[index])
        return item


class PKBatchSampler(Sampler[list[int]]):
    """Batches of P identities x K images each, the batch structure metric-learning losses mine.

    Identities with fewer than K images are sampled with replacement. Under DDP every rank draws
    its own batches from the same seeded epoch permutation (rank-strided), so ranks never repeat.
    """

    def __init__(self, labels: np.ndarray, identities_per_batch: int, images_per_identity: int, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None) -> None:
        self.labels = np.asarray(labels)
        self.p, self.k, self.seed = identities_per_batch, images_per_identity, seed
        self.groups = [np.flatnonzero(self.labels == label) for label in np.unique(self.labels)]
        if len(self.groups) < self.p:
            raise DatasetError(f"a PK batch needs {self.p} identities but the training set has {len(self.groups)}")
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _dist(self) -> tuple[int, int]:
        if self.rank is not None and self.world_size is not None:
            return self.rank, self.world_size
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def _total_batches(self) -> int:
        return max(1, self.labels.size // (self.p * self.k))

    def __len__(self) -> int:
        _, world = self._dist()
        return max(1, self._total_batches() // world)

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self._dist()
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1  # without a set_epoch call, the next epoch still differs
        batches: list[list[int]] = []
        while len(batches) < self._total_batches():
            order = rng.permutation(len(self.groups))
            for start in range(0, len(order) - self.p + 1, self.p):
                batch: list[int] = []
                for group_index in order[start:start + self.p]:
                    group = self.groups[group_index]
                    batch += rng.choice(group, self.k, replace=group.size < self.k).tolist()
                batches.append(batch)
        yield from batches[rank::world][: len(self)]


def _select_faces(cache: FaceCache, config: DataConfig) -> list[CachedFace]:
    excluded = read_identity_list(resolve_repo_path(config.exclude_file)) if config.exclude_file else set()
    by_identity: dict[str, list[CachedFace]] = {}
    for face in cache.faces:
        if face.identity not in excluded:
            by_identity.setdefault(face.identity, []).append(face)
    kept = sorted(i for i, faces in by_identity.items() if len(faces) >= config.min_images_per_identity)
    if config.max_identities is not None:
        kept = kept[: config.max_identities]
    return [face for identity in kept for face in by_identity[identity]]


def arrays_for(cache: FaceCache, faces: Sequence[CachedFace], input_size: int,
               teacher: np.ndarray | None = None) -> FaceArrays:
    """Crops at the encoder template (ARCFACE_112 scaled to ``input_size``) with labels 0..C-1."""
    identities = sorted({face.identity for face in faces})
    index = {identity: i for i, identity in enumerate(identities)}
    crops = recrop(cache.load_storage_crops(faces), ARCFACE_112.scaled(input_size, input_size))
    labels = np.array([index[face.identity] for face in faces], np.int64)
    return FaceArrays(crops, labels, identities, teacher)


def resolve_dataset_root(root: str) -> Path:
    path = Path(root)
    return path if path.is_absolute() or path.exists() else data_root() / root


def resolve_repo_path(path: str | Path) -> Path:
    """A path as given if it exists, else relative to the source checkout (recipes name config/train/...)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return Path(__file__).resolve().parents[2] / path


class FaceDataModule(L.LightningDataModule):
    """Cache -> identity-disjoint split -> augmented PK (or random) training batches + validation pairs."""

    def __init__(self, config: DataConfig, seed: int = 0, teacher_name: str | None = None,
                 cache: FaceCache | None = None) -> None:
        super().__init__()
        self.config = config
        self.seed = seed
        self.teacher_name = teacher_name
        self.cache = cache
        self.train: FaceArrays | None = None
        self.val: FaceArrays | None = None
        self.val_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @staticmethod
    def from_arrays(config: DataConfig, train: FaceArrays, val: FaceArrays, seed: int = 0) -> "FaceDataModule":
        """A data module over crops already in memory (tests, custom datasets)."""
        module = FaceDataModule(config, seed)
        module.train, module.val = train, val
        module.val_pairs = make_val_pairs(val.labels, config.val_pairs, seed)
        return module

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.train.identities)

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        if self.cache is None:
            root = resolve_dataset_root(self.config.root)
            self.cache = build_face_cache(root, self.config.cache_dir)
        log.info("face cache %s: %s", self.cache.root, self.cache.summary())
        faces = _select_faces(self.cache, self.config)
        train_ids, val_ids = split_identities(sorted({f.identity for f in faces}), self.config.val_fraction, self.seed)
        val_set = set(val_ids)
        train_faces = [f for f in faces if f.identity not in val_set]
        val_faces = [f for f in faces if f.identity in val_set]
        teacher = None
        if self.teacher_name is not None:
            from .teacher import teacher_embeddings

            teacher = teacher_embeddings(self.cache, train_faces, self.teacher_name)
            # Centred: dlib_resnet's raw vectors share a large common component (unrelated faces at
            # cosine ~0.88), which a similarity-matching student would otherwise have to copy.
            teacher = l2_normalize(teacher - teacher.mean(axis=0))
        self.train = arrays_for(self.cache, train_faces, self.config.input_size, teacher)
        self.val = arrays_for(self.cache, val_faces, self.config.input_size)
        self.val_pairs = make_val_pairs(self.val.labels, self.config.val_pairs, self.seed)

    def train_dataloader(self) -> DataLoader:
        dataset = AugmentedFaces(self.train, self.config.augment)
        common = {"num_workers": self.config.num_workers, "persistent_workers": self.config.num_workers > 0}
        if self.config.sampler == "pk":
            sampler = PKBatchSampler(self.train.labels, self.config.identities_per_batch,
                                     self.config.images_per_identity, self.seed)
            return DataLoader(dataset, batch_sampler=sampler, **common)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Lightning's own sampler replacement is off (it would shard validation and break PK batches).
            shards = DistributedSampler(dataset, shuffle=True, seed=self.seed, drop_last=True)
            return DataLoader(dataset, batch_size=self.config.batch_size, sampler=shards, drop_last=True, **common)
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=True, drop_last=True, **common)

    def val_dataloader(self) -> DataLoader:
        # Every rank embeds the whole (small) validation set, so pair metrics need no gathering.
        return DataLoader(AugmentedFaces(self.val, None), batch_size=128, shuffle=False, num_workers=0)
