"""One training run from a recipe: data, module, Lightning Trainer (CPU, GPU or DDP by config), export."""

from __future__ import annotations

import csv
import importlib.util
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from ..encoders.efficientnet import input_template
from ..errors import ModelError
from .config import TrainConfig, TrainingConfigError
from .data import FaceDataModule
from .deploy import export_encoder
from .module import MONITOR, FaceEmbeddingModule, load_network_weights
from .teacher import OnlineTeacher, TeacherSpec

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path | None
    best_score: float | None
    exported: dict | None  # export_encoder's metadata, None when nothing was validated


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


class _AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv when it starts; a resumed run keeps the
    rows of the epochs its checkpoint holds (``epoch <= kept_epoch``) and appends to them."""

    def __init__(self, log_dir: str, kept_epoch: int | None) -> None:
        self.kept_epoch = kept_epoch
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        path = Path(self.metrics_file_path)
        if self.kept_epoch is None or not path.is_file():
            return super()._check_log_dir_exists()
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header = list(reader.fieldnames or [])
            rows = [row for row in reader if _epoch_of(row) is None or _epoch_of(row) <= self.kept_epoch]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(header)  # appended rows keep the columns; a new key rewrites the file


def _epoch_of(row: dict) -> float | None:
    try:
        return float(row.get("epoch") or "")
    except ValueError:
        return None


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that, when ``resumed_epoch`` is given, continues the run's metrics.csv instead of
    replacing it (rows logged after that checkpoint, by an interrupted epoch, are dropped)."""

    def __init__(self, *args, resumed_epoch: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._resumed_epoch = resumed_epoch

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingExperimentWriter(self.log_dir, self._resumed_epoch)
        return self._experiment


class TrainingThroughput(Callback):
    """Logs ``train_images_per_s``: training images per second of wall time over each epoch (the
    figure CPU runs are planned with; validation excluded)."""

    def __init__(self) -> None:
        self._start: float | None = None
        self._images = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images = time.monotonic(), 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += int(batch["image"].shape[0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # A run resumed from a checkpoint written at the end of an epoch ends that epoch without
        # having started it here: there is no figure for it.
        if self._start is None:
            return
        elapsed = time.monotonic() - self._start
        if self._images and elapsed > 0:
            pl_module.log("train_images_per_s", self._images / elapsed)
        self._start = None


def recipe_teacher(config: TrainConfig) -> TeacherSpec | None:
    """The teachers a distilling recipe names; None for the other losses."""
    return TeacherSpec.from_loss(config.loss) if config.loss.kind == "distill" else None


def check_data_sources(datamodule: FaceDataModule, teacher: TeacherSpec | None) -> None:
    """Every teacher weights file and dataset folder, checked before any is read (train, pack-faces)."""
    if teacher is not None:
        teacher.check_weights()
    datamodule.dataset_roots()


def online_teacher(config: TrainConfig, datamodule: FaceDataModule) -> OnlineTeacher:
    """The recipe's teachers, to embed each training view (loss.teacher_online), scaled as the
    clean targets of ``datamodule``'s training faces are."""
    scales = datamodule.train.teacher_scales
    if scales is None:
        raise TrainingConfigError("loss.teacher_online needs each teacher's scale, which is computed from the datasets "
                                  "when the teachers embed them; training faces from a face pack or from arrays "
                                  "come without it")
    spec = recipe_teacher(config)
    return OnlineTeacher.from_spec(spec, scales, datamodule.train.teacher_offset, input_template(config.data.input_size))


def build_module(config: TrainConfig, datamodule: FaceDataModule) -> FaceEmbeddingModule:
    datamodule.setup()
    teacher = datamodule.train.teacher
    module = FaceEmbeddingModule(config.to_dict(), datamodule.num_classes,
                                 teacher.shape[1] if teacher is not None else None, datamodule.train.teacher_offset)
    if config.loss.teacher_online:
        module.online_teacher = online_teacher(config, datamodule)
    if config.model.init_from:
        if config.model.backbone_init != "scratch":
            log.info("model.init_from %s replaces backbone_init %s", config.model.init_from, config.model.backbone_init)
        load_network_weights(module.network, config.model.init_from)
    elif config.model.backbone_init == "efficientnet_lite0":
        from .imagenet_init import init_from_lite0

        report = init_from_lite0(module.network, config.model.backbone_weights)
        log.info("backbone from EfficientNet-Lite0 (%s): %d tensors, %d squeeze-excitations as identity",
                 report["path"], len(report["loaded"]), report["se_modules"])
    return module


def channels_last_enabled(config: TrainConfig) -> bool:
    """trainer.channels_last, or by default on for CPU training (NHWC convolutions are faster there)."""
    if config.trainer.channels_last is not None:
        return bool(config.trainer.channels_last)
    return config.trainer.accelerator == "cpu"


def checkpoint_epoch(path: str | Path) -> int:
    """The epoch a Lightning checkpoint was saved in."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["epoch"])
    except (OSError, KeyError, RuntimeError, EOFError) as error:
        raise ModelError(f"cannot resume from {path}: {error}") from None


def resolve_resume(resume: str | Path | None, run_dir: Path) -> Path | None:
    """``auto``: the run's checkpoints/last.ckpt when there is one (else a fresh start); a path as given."""
    if resume is None:
        return None
    if str(resume) == "auto":
        last = run_dir / "checkpoints" / "last.ckpt"
        return last if last.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise ModelError(f"--resume {path}: no such checkpoint")
    return path


def relocate_checkpoint(resume: Path, checkpoint_dir: Path) -> Path:
    """``resume`` itself, or a copy whose ModelCheckpoint state names ``checkpoint_dir``.

    Lightning restores the best score, the best-k record and the last checkpoint's name only when the
    checkpoint folder is the one it was saved from; a run folder moved to another machine or path would
    otherwise forget its best validation score (the next epoch would count as the best) and keep
    writing last-v1.ckpt beside last.ckpt. The paths it records are mapped into ``checkpoint_dir``.
    """
    state = torch.load(resume, map_location="cpu", weights_only=False)
    target = str(checkpoint_dir.resolve())
    moved = False
    for key, value in state.get("callbacks", {}).items():
        if not key.startswith("ModelCheckpoint") or not isinstance(value, dict) or value.get("dirpath") in (None, target):
            continue

        def inside(path):
            return str(checkpoint_dir.resolve() / Path(path).name) if path else path

        value["dirpath"] = target
        for name in ("best_model_path", "kth_best_model_path", "last_model_path"):
            value[name] = inside(value.get(name))
        value["best_k_models"] = {inside(path): score for path, score in (value.get("best_k_models") or {}).items()}
        moved = True
    if not moved:
        return resume
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    relocated = checkpoint_dir / f".resume-{resume.stem}.ckpt"
    torch.save(state, relocated)
    log.info("checkpoint %s was saved in another folder: resuming from a copy that names %s", resume, checkpoint_dir)
    return relocated


def build_trainer(config: TrainConfig, run_dir: Path, progress: bool = True,
                  resumed_epoch: int | None = None) -> tuple[L.Trainer, ModelCheckpoint]:
    trainer_config = config.trainer
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor=MONITOR, mode="max", save_top_k=1,
                                 filename="best-{epoch:02d}-{val_acc:.4f}", auto_insert_metric_name=False)
    # last.ckpt after every epoch, by a callback of its own: Lightning 2.6's save_last writes it only
    # when the monitored score improved, so resuming would repeat every epoch since the best one.
    # Overwritten, never versioned (last-v1.ckpt), so that "--resume auto" finds it.
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor=None, save_top_k=1, filename="last",
                           every_n_epochs=1, enable_version_counter=False)
    loggers = [ResumableCSVLogger(run_dir, name="csv", version="", resumed_epoch=resumed_epoch,
                                  flush_logs_every_n_steps=trainer_config.log_every_n_steps)]
    if trainer_config.tensorboard and tensorboard_available():
        loggers.append(TensorBoardLogger(run_dir, name="tensorboard", version=""))
    elif trainer_config.tensorboard:
        log.warning("tensorboard is not installed: logging to CSV only (%s)", run_dir / "csv")
    callbacks = [checkpoint, last, LearningRateMonitor(logging_interval="epoch"), TrainingThroughput()]
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=5))
    trainer = L.Trainer(
        accelerator=trainer_config.accelerator,
        devices=trainer_config.devices,
        strategy=trainer_config.strategy,
        precision=trainer_config.precision,
        max_epochs=trainer_config.max_epochs,
        max_steps=trainer_config.max_steps,
        max_time=trainer_config.max_time,
        limit_train_batches=trainer_config.limit_train_batches,
        check_val_every_n_epoch=trainer_config.check_val_every_n_epoch,
        log_every_n_steps=trainer_config.log_every_n_steps,
        logger=loggers,
        callbacks=callbacks,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        # The PK sampler shards itself per rank, and validation runs whole on every rank.
        use_distributed_sampler=False,
        default_root_dir=run_dir,
    )
    return trainer, checkpoint


def train(config: TrainConfig, resume: str | Path | None = None, datamodule: FaceDataModule | None = None,
          progress: bool = True, export: bool = True, minutes: float | None = None) -> TrainResult:
    """Fit the recipe; the best checkpoint (by validation accuracy) is exported beside the run.

    ``resume``: a Lightning checkpoint to continue (weights, optimizer, scheduler, epoch and the
    best-checkpoint record), or ``"auto"`` for the run's own last.ckpt when it has one. A checkpoint
    copied to another machine resumes there too, given the same recipe and datasets: face caches and
    teacher embeddings are rebuilt when missing, and the identity split is a function of the seed.

    ``minutes``: size the run (trainer.max_epochs) to about this much wall time on this machine,
    measured before it starts (``time_budget``); for a fixed device lease.
    """
    L.seed_everything(config.seed, workers=True)
    if config.trainer.num_threads:
        torch.set_num_threads(config.trainer.num_threads)
    run_dir = Path(config.out_dir) / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    resume = resolve_resume(resume, run_dir)
    if resume and config.trainer.max_steps != -1:
        # Measured with Lightning 2.6: a step-bounded run resumed from its end-of-epoch last.ckpt runs
        # one epoch short (or none at all), with its schedule off by as much.
        raise TrainingConfigError("--resume cannot continue a run bounded by trainer.max_steps (Lightning resumes such "
                                  "runs one epoch short); bound it by trainer.max_epochs, with data.batches_per_epoch "
                                  "for the epoch's length, and start it again")
    if resume and minutes is not None:
        raise TrainingConfigError("--minutes sizes a new run; a resumed run keeps the length and schedule it started with")
    teacher = recipe_teacher(config)
    datamodule = datamodule or FaceDataModule(config.data, config.seed, teacher=teacher, progress=progress)
    if datamodule.train is None:  # not built from arrays or a pack: datasets and teachers are read from disk
        check_data_sources(datamodule, teacher)
    elif teacher is not None and datamodule.train.teacher is None:
        raise TrainingConfigError("the recipe distils, but its training faces come without teacher targets "
                                  "(a face pack made from a recipe that does not distil?)")
    module = build_module(config, datamodule)
    module.set_channels_last(channels_last_enabled(config))
    if minutes is not None:
        from .time_budget import fit_epochs_to_minutes

        fit_epochs_to_minutes(config, module, datamodule, minutes)
    resumed_epoch = checkpoint_epoch(resume) if resume else None
    trainer, checkpoint = build_trainer(config, run_dir, progress, resumed_epoch)
    relocated = None
    if resume:
        log.info("resuming %s from %s (epoch %d done)", run_dir, resume, resumed_epoch)
        relocated = relocate_checkpoint(resume, run_dir / "checkpoints")
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(relocated) if relocated else None)
    finally:
        if relocated is not None and relocated != resume:
            relocated.unlink(missing_ok=True)
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    if best is not None and not best.is_file():
        # The best epoch came before the resume and its file did not travel with last.ckpt.
        kept = run_dir / "best.ckpt"
        log.warning("best checkpoint %s is missing%s", best, f"; using {kept}" if kept.is_file() else "; nothing to export")
        best = kept if kept.is_file() else None
    score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
    if best is not None and trainer.is_global_zero and best != run_dir / "best.ckpt":
        # A fixed name, so that a stage-2 recipe can start from "<run>/best.ckpt".
        shutil.copyfile(best, run_dir / "best.ckpt")
    exported = None
    if export and best is not None and trainer.is_global_zero:
        exported = export_encoder(best, run_dir / "efficientnet_b0.pt", datamodule.val, datamodule.val_pairs)
    return TrainResult(run_dir, best, score, exported)
