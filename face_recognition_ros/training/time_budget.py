"""Fit a run's length to a wall-clock budget: measure training steps per second on this machine, then
choose the number of epochs. The learning-rate schedule spans the epochs, so a run sized this way ends
its cosine on time instead of being cut off half-way by ``trainer.max_time`` (which stays as a guard)."""

from __future__ import annotations

import contextlib
import copy
import logging
import time

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from .config import TrainConfig, TrainingConfigError

log = logging.getLogger(__name__)

#: share of the budget planned for training steps; the rest covers validation, checkpoints and the
#: difference between the probe and Lightning's loop
TRAINING_SHARE = 0.85


def training_device(config: TrainConfig) -> torch.device:
    accelerator = config.trainer.accelerator
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainingConfigError(f"trainer.accelerator is {accelerator!r} but torch sees no CUDA device")
        return torch.device("cuda")
    return torch.device("cpu")


def _autocast(config: TrainConfig, device: torch.device):
    precision = str(config.trainer.precision)
    if "bf16" in precision:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device.type, dtype=torch.float16)
    return contextlib.nullcontext()


def _batches(datamodule):
    while True:
        yield from datamodule.train_dataloader()


def measure_steps_per_second(config: TrainConfig, module, datamodule, steps: int = 20, warmup: int = 5) -> float:
    """Optimizer steps per second of a copy of ``module`` (the run starts from the untouched one) on
    the recipe's device and precision, batches made as the run makes them."""
    device = training_device(config)
    probe = copy.deepcopy(module).to(device).train()
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-7)
    batches = _batches(datamodule)
    start = None
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = datamodule.on_after_batch_transfer(move_data_to_device(next(batches), device), 0)
        with _autocast(config, device):
            loss = probe.training_loss(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    del probe, optimizer
    return steps / max(time.perf_counter() - start, 1e-9)


def format_max_time(seconds: float) -> str:
    seconds = int(round(seconds))
    days, rest = divmod(seconds, 86400)
    return f"{days:02d}:{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"


def fit_epochs_to_minutes(config: TrainConfig, module, datamodule, minutes: float, steps: int = 20) -> dict:
    """Set ``config.trainer.max_epochs`` (and a ``max_time`` guard) so that the run takes about
    ``minutes``; returns what was measured and chosen."""
    if minutes <= 0:
        raise TrainingConfigError(f"--minutes must be positive, got {minutes}")
    rate = measure_steps_per_second(config, module, datamodule, steps=steps)
    per_epoch = len(datamodule.train_dataloader())
    epochs = max(1, int(rate * minutes * 60 * TRAINING_SHARE // per_epoch))
    config.trainer.max_epochs = epochs
    config.trainer.max_steps = -1
    config.trainer.max_time = format_max_time(minutes * 60 * 1.2)
    plan = {"steps_per_second": rate, "batches_per_epoch": per_epoch, "max_epochs": epochs,
            "planned_steps": epochs * per_epoch, "max_time": config.trainer.max_time}
    log.info("time budget %.1f min: %.2f steps/s measured -> %d epochs of %d steps (%d steps), guard max_time %s",
             minutes, rate, epochs, per_epoch, epochs * per_epoch, config.trainer.max_time)
    return plan
