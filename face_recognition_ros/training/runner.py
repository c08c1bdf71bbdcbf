"""One training run from a recipe: data, module, Lightning Trainer (CPU, GPU or DDP by config), export."""

from __future__ import annotations

import importlib.util
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from .config import TrainConfig
from .data import FaceDataModule
from .deploy import export_encoder
from .module import MONITOR, FaceEmbeddingModule, load_network_weights

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_checkpoint: Path | None
    best_score: float | None
    exported: dict | None  # export_encoder's metadata, None when nothing was validated


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None


def build_module(config: TrainConfig, datamodule: FaceDataModule) -> FaceEmbeddingModule:
    datamodule.setup()
    teacher = datamodule.train.teacher
    module = FaceEmbeddingModule(config.to_dict(), datamodule.num_classes,
                                 teacher.shape[1] if teacher is not None else None)
    if config.model.init_from:
        load_network_weights(module.network, config.model.init_from)
    return module


def build_trainer(config: TrainConfig, run_dir: Path, progress: bool = True) -> tuple[L.Trainer, ModelCheckpoint]:
    trainer_config = config.trainer
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", monitor=MONITOR, mode="max", save_top_k=1,
                                 save_last=True, filename="best-{epoch:02d}-{val_acc:.4f}", auto_insert_metric_name=False)
    loggers = [CSVLogger(run_dir, name="csv", version="")]
    if trainer_config.tensorboard and tensorboard_available():
        loggers.append(TensorBoardLogger(run_dir, name="tensorboard", version=""))
    elif trainer_config.tensorboard:
        log.warning("tensorboard is not installed: logging to CSV only (%s)", run_dir / "csv")
    callbacks = [checkpoint, LearningRateMonitor(logging_interval="epoch")]
    if progress:
        callbacks.append(TQDMProgressBar(refresh_rate=5))
    trainer = L.Trainer(
        accelerator=trainer_config.accelerator,
        devices=trainer_config.devices,
        strategy=trainer_config.strategy,
        precision=trainer_config.precision,
        max_epochs=trainer_config.max_epochs,
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
          progress: bool = True, export: bool = True) -> TrainResult:
    """Fit the recipe; the best checkpoint (by validation accuracy) is exported beside the run."""
    L.seed_everything(config.seed, workers=True)
    if config.trainer.num_threads:
        torch.set_num_threads(config.trainer.num_threads)
    run_dir = Path(config.out_dir) / config.name
    run_dir.mkdir(parents=True, exist_ok=True)
    teacher = config.loss.teacher if config.loss.kind == "distill" else None
    datamodule = datamodule or FaceDataModule(config.data, config.seed, teacher_name=teacher)
    module = build_module(config, datamodule)
    trainer, checkpoint = build_trainer(config, run_dir, progress)
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume) if resume else None)
    best = Path(checkpoint.best_model_path) if checkpoint.best_model_path else None
    score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
    if best is not None and trainer.is_global_zero:
        # A fixed name, so that a stage-2 recipe can start from "<run>/best.ckpt".
        shutil.copyfile(best, run_dir / "best.ckpt")
    exported = None
    if export and best is not None and trainer.is_global_zero:
        exported = export_encoder(best, run_dir / "efficientnet_b0.pt", datamodule.val, datamodule.val_pairs)
    return TrainResult(run_dir, best, score, exported)
