"""Training recipe: a YAML file mapped onto typed dataclasses (unknown keys are errors, not ignored)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import FaceRecognitionError

LOSS_KINDS = ("classification", "contrastive", "triplet", "pair_classifier", "distill")


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


@dataclass
class ModelConfig:
    embedding_dim: int = 64
    dropout: float = 0.2
    stochastic_depth: float = 0.2
    init_from: str | None = None  # Lightning or deploy checkpoint whose backbone+embedding start this run


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
    teacher: str = "dlib_resnet"
    distill_method: str = "relational"  # relational (similarity matrices) or projection (cosine to teacher)
    distill_weight: float = 1.0
    supervised: str | None = "triplet"  # extra label loss beside distillation (None: teacher only)
    supervised_weight: float = 1.0


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
    num_threads: int | None = None  # torch intra-op threads on CPU (None: torch default)
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


def _build(cls: type, values: dict, where: str):
    if not isinstance(values, dict):
        raise TrainingConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TrainingConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, f"{where}.{key}")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def validate(config: TrainConfig) -> TrainConfig:
    loss, data = config.loss, config.data
    if loss.kind not in LOSS_KINDS:
        raise TrainingConfigError(f"loss.kind must be one of {', '.join(LOSS_KINDS)}, got {loss.kind!r}")
    if loss.classifier not in ("softmax", "arcface"):
        raise TrainingConfigError(f"loss.classifier must be softmax or arcface, got {loss.classifier!r}")
    if loss.mining not in ("semihard", "hard", "batch_hard", "all"):
        raise TrainingConfigError(f"loss.mining must be semihard, hard, batch_hard or all, got {loss.mining!r}")
    if loss.distill_method not in ("relational", "projection"):
        raise TrainingConfigError(f"loss.distill_method must be relational or projection, got {loss.distill_method!r}")
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


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Parse and validate a recipe, with ``overrides`` (``KEY=VALUE``) applied first; raises
    TrainingConfigError naming the file and key."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise TrainingConfigError(f"cannot read training config {path}: {error}") from None
    if values is not None and not isinstance(values, dict):
        raise TrainingConfigError(f"{path}: a recipe is a mapping of sections, got {type(values).__name__}")
    values = apply_overrides(values or {}, overrides or [])
    return config_from_dict(values, str(path))
