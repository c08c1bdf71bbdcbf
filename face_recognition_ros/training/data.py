"""Datasets for training: identity-disjoint split, augmented crops, PK batches and validation pairs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..data_paths import data_root
from ..encoders.base import l2_normalize
from ..encoders.efficientnet import input_template
from .augment import augment_face
from .config import AugmentConfig, DataConfig, DatasetConfig, dataset_list
from .face_cache import CachedFace, DatasetError, FaceCache, build_face_cache, default_cache_dir, packed_crops
from .teacher import expand_path

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


#: the label of a face without a usable identity (it takes part in distillation only)
UNLABELLED = -1


@dataclass
class FaceArrays:
    """Aligned crops at the training size, integer labels, and optional teacher embeddings."""

    crops: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64, 0..C-1, or UNLABELLED
    identities: list[str]  # label -> identity name
    teacher: np.ndarray | None = None  # (N, T) float32: target similarity = dot product - teacher_offset
    teacher_offset: float = 0.0
    teacher_scales: list[float] | None = None  # per teacher (rescaled targets), for an online teacher

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
    """Batches of P identities x K images each, the batch structure metric-learning losses mine,
    plus U faces without identity (label UNLABELLED) when ``unlabelled_per_batch`` is set.

    Identities with fewer than K images are sampled with replacement; the unlabelled faces are
    drawn without replacement from an epoch permutation, so an epoch sees each of them once when
    there are batches enough. An epoch has ``batches_per_epoch`` batches, by default enough to go
    once through the larger of the two pools. Under DDP every rank draws its own batches from the
    same seeded epoch permutation (rank-strided), so ranks never repeat.
    """

    def __init__(self, labels: np.ndarray, identities_per_batch: int, images_per_identity: int, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None, unlabelled_per_batch: int = 0,
                 batches_per_epoch: int | None = None) -> None:
        self.labels = np.asarray(labels)
        self.p, self.k, self.seed = identities_per_batch, images_per_identity, seed
        self.u = unlabelled_per_batch
        labelled = self.labels[self.labels >= 0]
        self.groups = [np.flatnonzero(self.labels == label) for label in np.unique(labelled)]
        self.unlabelled = np.flatnonzero(self.labels < 0)
        if len(self.groups) < self.p:
            raise DatasetError(f"a PK batch needs {self.p} identities but the training set has {len(self.groups)}")
        if self.u and self.unlabelled.size < self.u:
            raise DatasetError(f"{self.u} unlabelled faces per batch, but the training set has {self.unlabelled.size}")
        self.batches_per_epoch = batches_per_epoch
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
        if self.batches_per_epoch:
            return self.batches_per_epoch
        labelled = int(np.sum(self.labels >= 0)) // (self.p * self.k)
        unlabelled = self.unlabelled.size // self.u if self.u else 0
        return max(1, labelled, unlabelled)

    def __len__(self) -> int:
        _, world = self._dist()
        return max(1, self._total_batches() // world)

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self._dist()
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1  # without a set_epoch call, the next epoch still differs
        total = self._total_batches()
        batches: list[list[int]] = []
        while len(batches) < total:
            order = rng.permutation(len(self.groups))
            for start in range(0, len(order) - self.p + 1, self.p):
                batch: list[int] = []
                for group_index in order[start:start + self.p]:
                    group = self.groups[group_index]
                    batch += rng.choice(group, self.k, replace=group.size < self.k).tolist()
                batches.append(batch)
        batches = batches[:total]
        if self.u:
            needed = total * self.u
            pool = np.concatenate([rng.permutation(self.unlabelled) for _ in range(-(-needed // self.unlabelled.size))])
            for i, batch in enumerate(batches):
                batch += pool[i * self.u:(i + 1) * self.u].tolist()
        yield from batches[rank::world][: len(self)]


@dataclass(frozen=True)
class SourcedFace:
    """A cached face with the dataset it came from and its identity key (None: no identity)."""

    dataset: int  # index into the recipe's dataset list
    face: CachedFace
    key: str | None  # "<namespace>/<identity>", shared by datasets of one namespace


@dataclass
class TrainingSelection:
    """Which cached faces train (with or without identity) and which validate, and why others do not."""

    datasets: list[DatasetConfig]
    caches: list[FaceCache]
    train: list[SourcedFace]  # identities with enough images
    unlabelled: list[SourcedFace]  # unlabelled datasets and identities with too few images
    val: list[SourcedFace]
    counts: list[dict[str, int]]  # per dataset: faces, excluded, train, unlabelled, val, unused


def dataset_namespace(config: DatasetConfig) -> str:
    return config.namespace or Path(os.path.expandvars(config.root).rstrip("/")).name


def select_training_faces(datasets: Sequence[DatasetConfig], caches: Sequence[FaceCache], data: DataConfig,
                          seed: int, use_unlabelled: bool) -> TrainingSelection:
    """Split several datasets into training faces with identity, faces without, and validation.

    * Exclusion lists (``exclude_file``) name identities or image sources (relative to the dataset root).
    * Labelled datasets: identities are ``<namespace>/<folder>``; one with ``min_images_per_identity``
      images or more takes part in the metric loss, one with fewer joins the faces without identity.
    * Unlabelled datasets: every face is its own, unnamed identity.
    * Validation identities: a seeded ``val_fraction`` of the eligible identities of the datasets
      marked ``validation`` (the first labelled one when none is); their faces in those datasets
      make the validation set, and their faces anywhere else are left unused (never trained on).
    * Faces without identity are used only when ``use_unlabelled`` (distillation with
      ``unlabelled_per_batch``); otherwise they count as unused.
    """
    validation = [i for i, d in enumerate(datasets) if d.validation and d.labelled]
    if not validation:
        validation = [next(i for i, d in enumerate(datasets) if d.labelled)]
    counts: list[dict[str, int]] = []
    kept: list[list[SourcedFace]] = []
    for index, (config, cache) in enumerate(zip(datasets, caches)):
        excluded = read_identity_list(resolve_repo_path(config.exclude_file)) if config.exclude_file else set()
        faces = [f for f in cache.faces if f.identity not in excluded and f.source not in excluded]
        if config.max_images is not None and len(faces) > config.max_images:
            chosen = np.sort(np.random.default_rng((seed, index)).choice(len(faces), config.max_images, replace=False))
            faces = [faces[i] for i in chosen]
        namespace = dataset_namespace(config)
        kept.append([SourcedFace(index, f, f"{namespace}/{f.identity}" if config.labelled else None) for f in faces])
        counts.append({"faces": len(cache.faces), "excluded": len(cache.faces) - len(faces)})
    by_key: dict[str, list[SourcedFace]] = {}
    for faces in kept:
        for face in faces:
            if face.key is not None:
                by_key.setdefault(face.key, []).append(face)
    enough = {key for key, faces in by_key.items() if len(faces) >= data.min_images_per_identity}
    if data.max_identities is not None:
        enough = set(sorted(enough)[: data.max_identities])
    candidates = sorted({f.key for i in validation for f in kept[i] if f.key in enough})
    _, val_keys = split_identities(candidates, data.val_fraction, seed)
    val_keys = set(val_keys)
    train, unlabelled, val = [], [], []
    for index, faces in enumerate(kept):
        tally = {"train": 0, "unlabelled": 0, "val": 0, "unused": 0}
        for face in faces:
            if face.key in val_keys:
                where = "val" if index in validation else "unused"
            elif face.key in enough:
                where = "train"
            else:
                where = "unlabelled" if use_unlabelled else "unused"
            tally[where] += 1
            {"train": train, "unlabelled": unlabelled, "val": val}.get(where, []).append(face)
        counts[index].update(tally)
    return TrainingSelection(list(datasets), list(caches), train, unlabelled, val, counts)


def arrays_from(selection: TrainingSelection, labelled: Sequence[SourcedFace], unlabelled: Sequence[SourcedFace] = (),
                input_size: int = 112, teacher: np.ndarray | None = None, progress: bool = False) -> FaceArrays:
    """Crops at the encoder template (ARCFACE_112 scaled to ``input_size``) of ``labelled`` then
    ``unlabelled`` faces; labels 0..C-1 by identity key, then UNLABELLED (whatever identity an
    unlabelled face's folder names: too few images to learn it from). Crops come from each cache's
    packed array."""
    faces = list(labelled) + list(unlabelled)
    template = input_template(input_size)
    crops = np.empty((len(faces), input_size, input_size, 3), np.uint8)
    by_dataset: dict[int, list[int]] = {}
    for position, face in enumerate(faces):
        by_dataset.setdefault(face.dataset, []).append(position)
    for dataset, positions in by_dataset.items():
        cache = selection.caches[dataset]
        crops[positions] = packed_crops(cache, [faces[p].face for p in positions], template, progress=progress)
    identities = sorted({face.key for face in labelled})
    index = {identity: i for i, identity in enumerate(identities)}
    labels = np.array([index[face.key] for face in labelled] + [UNLABELLED] * len(unlabelled), np.int64)
    return FaceArrays(crops, labels, identities, teacher)


def dataset_cache_dir(config: DatasetConfig, data: DataConfig, root: Path) -> Path | None:
    """A dataset's own cache_dir; else, in a multi-dataset recipe, its default folder name under
    ``data.cache_dir`` when that is set; else None (the user cache)."""
    if config.cache_dir:
        return Path(expand_path(config.cache_dir, "cache_dir"))
    if data.datasets and data.cache_dir:
        return Path(expand_path(data.cache_dir, "data.cache_dir")) / default_cache_dir(root).name
    return None


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

    def __init__(self, config: DataConfig, seed: int = 0, teacher=None, cache: FaceCache | None = None,
                 progress: bool = True) -> None:
        """``teacher``: a ``teacher.TeacherSpec`` when distilling, else None. ``progress``: bars while
        caching faces, embedding them with the teachers and packing crops (``train --no-progress`` turns them off)."""
        super().__init__()
        self.config = config
        self.seed = seed
        self.teacher = teacher
        self.cache = cache
        self.progress = progress
        self.selection: TrainingSelection | None = None
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
        """Select the faces and load the validation set, and the training set unless ``stage`` is
        ``"validate"`` (an export needs only the validation pairs)."""
        if self.selection is None and self.val is None:
            self._select()
        if self.val is None:
            self.val = arrays_from(self.selection, self.selection.val, input_size=self.config.input_size)
            self.val_pairs = make_val_pairs(self.val.labels, self.config.val_pairs, self.seed)
        if self.train is None and stage != "validate":
            self._load_train()

    def dataset_roots(self) -> list[Path | None]:
        """Every dataset's folder (None for one whose cache was given), all checked before any is
        read: an unset variable or a missing folder is an error now, not after an hour of caching."""
        roots: list[Path | None] = []
        for index, config in enumerate(dataset_list(self.config)):
            if index == 0 and self.cache is not None:
                roots.append(None)
                continue
            what = f"data.datasets[{index}].root" if self.config.datasets else "data.root"
            root = resolve_dataset_root(expand_path(config.root, what))
            if not root.is_dir():
                raise DatasetError(f"{what}: {config.root!r} is no folder ({root})")
            roots.append(root)
        return roots

    def _select(self) -> None:
        datasets = dataset_list(self.config)
        caches = []
        for config, root in zip(datasets, self.dataset_roots()):
            if root is None:
                cache = self.cache
            else:
                cache = build_face_cache(root, dataset_cache_dir(config, self.config, root), progress=self.progress)
            log.info("face cache %s: %s", cache.root, cache.summary())
            caches.append(cache)
        self.cache = caches[0]
        use_unlabelled = self.teacher is not None and self.config.unlabelled_per_batch > 0
        self.selection = select_training_faces(datasets, caches, self.config, self.seed, use_unlabelled)
        for config, counts in zip(datasets, self.selection.counts):
            log.info("dataset %s: %s", config.root, ", ".join(f"{k} {v}" for k, v in counts.items()))

    def _load_train(self) -> None:
        caches = self.selection.caches
        faces = self.selection.train + self.selection.unlabelled
        teacher = None
        if self.teacher is not None:
            from .teacher import ensemble_targets

            groups: dict[int, list[CachedFace]] = {}
            for face in faces:
                groups.setdefault(face.dataset, []).append(face.face)
            # ensemble_targets keeps the order of the (cache, faces) groups: put rows back in face order
            order = [i for dataset in groups for i, f in enumerate(faces) if f.dataset == dataset]
            targets = ensemble_targets(self.teacher, [(caches[d], fs) for d, fs in groups.items()], progress=self.progress)
            teacher = np.empty_like(targets.vectors)
            teacher[np.array(order, np.int64)] = targets.vectors
        self.train = arrays_from(self.selection, self.selection.train, self.selection.unlabelled,
                                 self.config.input_size, teacher, progress=self.progress)
        if self.teacher is not None:
            self.train.teacher_offset = targets.offset
            self.train.teacher_scales = targets.scales

    def pk_sampler(self) -> PKBatchSampler:
        """The recipe's P x K (+ U unlabelled) batches over the training faces."""
        return PKBatchSampler(self.train.labels, self.config.identities_per_batch, self.config.images_per_identity,
                              self.seed, unlabelled_per_batch=self.config.unlabelled_per_batch,
                              batches_per_epoch=self.config.batches_per_epoch)

    def train_dataloader(self) -> DataLoader:
        dataset = AugmentedFaces(self.train, self.config.augment)
        common = {"num_workers": self.config.num_workers, "persistent_workers": self.config.num_workers > 0}
        if self.config.sampler == "pk":
            return DataLoader(dataset, batch_sampler=self.pk_sampler(), **common)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Lightning's own sampler replacement is off (it would shard validation and break PK batches).
            shards = DistributedSampler(dataset, shuffle=True, seed=self.seed, drop_last=True)
            return DataLoader(dataset, batch_size=self.config.batch_size, sampler=shards, drop_last=True, **common)
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=True, drop_last=True, **common)

    def val_dataloader(self) -> DataLoader:
        # Every rank embeds the whole (small) validation set, so pair metrics need no gathering.
        return DataLoader(AugmentedFaces(self.val, None), batch_size=128, shuffle=False, num_workers=0)
