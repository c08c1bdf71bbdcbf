"""The LightningModule: EfficientNet-B0 embedder + the recipe's objective + pair-verification validation."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from ..encoders.efficientnet_checkpoint import load_deploy_checkpoint
from ..encoders.efficientnet_network import EfficientNetEmbedder, Preprocessing
from ..errors import ModelError
from ..evaluation.metrics import accuracy, best_threshold, roc_auc, tar_at_far
from .augment_torch import blend_faces
from .config import TrainConfig, config_from_dict
from .losses import DistillationLoss, NeighbourDistillation, build_label_loss

#: the metric ModelCheckpoint keeps the best of
MONITOR = "val_acc"


def pair_metrics(embeddings: np.ndarray, index_a: np.ndarray, index_b: np.ndarray, same: np.ndarray) -> dict[str, float]:
    """Verification metrics of cosine similarities of unit ``embeddings`` over the given pairs."""
    scores = np.sum(embeddings[index_a] * embeddings[index_b], axis=1)
    threshold = best_threshold(scores, same)
    return {
        "acc": accuracy(scores, same, threshold),
        "threshold": threshold,
        "auc": roc_auc(scores, same),
        "tar_far1e-2": tar_at_far(scores, same, 1e-2),
    }


class FaceEmbeddingModule(L.LightningModule):
    """Trains ``network`` (the part that is exported); heads used only for training live beside it."""

    def __init__(self, config: dict, num_classes: int, teacher_dim: int | None = None, teacher_offset: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config: TrainConfig = config_from_dict(config)
        model, loss = self.config.model, self.config.loss
        self.network = EfficientNetEmbedder(model.embedding_dim, model.dropout, model.stochastic_depth)
        self.preprocessing = Preprocessing()
        label_kind = loss.supervised if loss.kind == "distill" else loss.kind
        self.label_loss = build_label_loss(label_kind, loss, model.embedding_dim, num_classes) if label_kind else None
        self.distill = None
        if loss.kind == "distill":
            if not teacher_dim:
                raise ValueError("distillation needs teacher embeddings (teacher_dim)")
            self.distill = DistillationLoss(loss.distill_method, model.embedding_dim, teacher_dim, teacher_offset,
                                            loss.projection_weight)
        self.neighbours = None
        if self.distill is not None and loss.neighbour_weight:
            self.neighbours = NeighbourDistillation(model.embedding_dim, teacher_dim, teacher_offset,
                                                    loss.neighbour_temperature, loss.neighbour_memory)
        self._val_embeddings: list[torch.Tensor] = []
        self.channels_last = False  # set_channels_last (the runner, from trainer.channels_last)
        # teacher.OnlineTeacher when loss.teacher_online (set by the runner): not a submodule, so
        # the teachers' weights stay out of checkpoints and the optimiser
        self.online_teacher = None

    def network_input(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 crops -> the pre-processed network input, NHWC in memory when channels_last."""
        batch = self.preprocessing.torch(images)
        return batch.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 crops -> unit embeddings."""
        return F.normalize(self.network(self.network_input(images)), dim=1)

    def distillation_inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch's images and teacher targets; with an online teacher, the faces without
        identity blended (``loss.distill_mixup``) and every target computed from the image itself."""
        images, targets = batch["image"], batch.get("teacher")
        if self.online_teacher is None:
            return images, targets
        if self.config.loss.distill_mixup:
            images = blend_faces(images, batch["label"] < 0, self.config.loss.distill_mixup)
        targets = torch.from_numpy(self.online_teacher.targets(images.cpu().numpy())).to(images.device)
        return images, targets

    def training_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        images, targets = self.distillation_inputs(batch)
        raw = self.network(self.network_input(images))
        terms: dict[str, torch.Tensor] = {}
        loss = self.config.loss
        if self.label_loss is not None:
            weight = loss.supervised_weight if self.distill is not None else 1.0
            # Faces without identity (UNLABELLED, -1) take part in distillation only.
            labelled = batch["label"] >= 0
            if bool(labelled.all()):
                terms["label"] = weight * self.label_loss(raw, batch["label"])
            else:
                terms["label"] = weight * self.label_loss(raw[labelled], batch["label"][labelled])
        if self.distill is not None:
            terms["distill"] = loss.distill_weight * self.distill(raw, targets)
        if self.neighbours is not None:
            terms["neighbours"] = loss.neighbour_weight * self.neighbours(raw, targets)
        terms["loss"] = sum(terms.values())
        return terms

    def set_channels_last(self, enabled: bool) -> "FaceEmbeddingModule":
        """Weights and inputs in NHWC memory format (same numbers; faster convolutions on CPU)."""
        self.channels_last = bool(enabled)
        self.network.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
        return self

    def training_step(self, batch: dict, batch_index: int) -> torch.Tensor:
        terms = self.training_loss(batch)
        size = batch["label"].numel()
        for name, value in terms.items():
            self.log(f"train_{name}", value, prog_bar=name == "loss", batch_size=size)
        return terms["loss"]

    def validation_step(self, batch: dict, batch_index: int) -> None:
        self._val_embeddings.append(self(batch["image"]).float().cpu())

    def on_validation_epoch_end(self) -> None:
        embeddings = torch.cat(self._val_embeddings).numpy() if self._val_embeddings else None
        self._val_embeddings.clear()
        datamodule = getattr(self.trainer, "datamodule", None)
        pairs = getattr(datamodule, "val_pairs", None)
        if embeddings is None or pairs is None or embeddings.shape[0] <= int(max(pairs[0].max(), pairs[1].max())):
            return  # sanity check with a partial validation set
        for name, value in pair_metrics(embeddings, *pairs).items():
            self.log(f"val_{name}", value, prog_bar=name == "acc", sync_dist=False)

    def configure_optimizers(self):
        optim = self.config.optim
        if optim.optimizer == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=optim.lr, momentum=optim.momentum,
                                        weight_decay=optim.weight_decay, nesterov=True)
        else:
            optimizer = torch.optim.AdamW(self.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        per_epoch = self.trainer.num_training_batches  # known once estimated_stepping_batches has run
        if not isinstance(per_epoch, int) or per_epoch <= 0:
            per_epoch = total / epochs
        warmup = min(total - 1, int(per_epoch * optim.warmup_epochs)) if optim.warmup_epochs else 0

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if optim.scheduler == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_network_weights(network: EfficientNetEmbedder, path: str | Path) -> None:
    """Initialise ``network`` from a Lightning checkpoint of this module or a deploy checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"init_from checkpoint {path} not found")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(blob, dict) and "config" in blob and "format" in blob.get("config", {}):
        state = load_deploy_checkpoint(path)[0].state_dict()
    elif isinstance(blob, dict) and "state_dict" in blob:
        state = {k[len("network."):]: v for k, v in blob["state_dict"].items() if k.startswith("network.")}
    else:
        raise ModelError(f"{path} is neither a training nor a deploy checkpoint")
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ModelError(f"init_from {path} does not fit this network: {str(error).splitlines()[0]}") from None
