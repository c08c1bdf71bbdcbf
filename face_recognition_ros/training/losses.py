"""Training objectives: pytorch-metric-learning losses and miners, the pair classifier, distillation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from torch import nn

from .config import LossConfig


class ClassificationLoss(nn.Module):
    """Identity classifier on the embedding: linear + cross-entropy, or ArcFace (additive angular margin)."""

    def __init__(self, config: LossConfig, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"classification needs at least 2 identities, got {num_classes}")
        self.arcface = config.classifier == "arcface"
        if self.arcface:
            self.loss = losses.ArcFaceLoss(num_classes, embedding_dim, margin=config.arcface_margin_deg,
                                           scale=config.arcface_scale)
        else:
            self.classifier = nn.Linear(embedding_dim, num_classes)
            self.label_smoothing = config.label_smoothing

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.arcface:
            return self.loss(embeddings, labels)
        return F.cross_entropy(self.classifier(embeddings), labels, label_smoothing=self.label_smoothing)


class MetricLoss(nn.Module):
    """Contrastive (Hadsell et al. 2006) over all batch pairs, or triplet (FaceNet) with online mining."""

    def __init__(self, kind: str, config: LossConfig) -> None:
        super().__init__()
        self.miner = None
        if kind == "contrastive":
            self.loss = losses.ContrastiveLoss(pos_margin=config.pos_margin, neg_margin=config.neg_margin)
        elif kind == "triplet":
            self.loss = losses.TripletMarginLoss(margin=config.margin)
            if config.mining in ("semihard", "hard"):
                self.miner = miners.TripletMarginMiner(margin=config.margin, type_of_triplets=config.mining)
            elif config.mining == "batch_hard":
                self.miner = miners.BatchHardMiner()
        else:
            raise ValueError(f"unknown metric loss {kind!r}")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        tuples = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, tuples)


class PairClassifierLoss(nn.Module):
    """The seeds' Siamese head: |f(a) - f(b)| of unit embeddings -> small MLP -> same/different, BCE.

    Pairs come from the batch: every same-identity pair and as many different-identity pairs.
    """

    def __init__(self, embedding_dim: int, hidden: int) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Linear(embedding_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def logits(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.head((F.normalize(a, dim=1) - F.normalize(b, dim=1)).abs()).squeeze(1)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        rows, cols = torch.triu_indices(labels.numel(), labels.numel(), 1, device=labels.device)
        same = labels[rows] == labels[cols]
        positives, negatives = torch.nonzero(same).squeeze(1), torch.nonzero(~same).squeeze(1)
        count = min(positives.numel(), negatives.numel())
        if count == 0:
            return embeddings.sum() * 0.0
        picked = negatives[torch.randperm(negatives.numel(), device=labels.device)[:count]]
        chosen = torch.cat([positives[:count], picked])
        targets = same[chosen].float()
        return F.binary_cross_entropy_with_logits(self.logits(embeddings[rows[chosen]], embeddings[cols[chosen]]), targets)


class DistillationLoss(nn.Module):
    """Student embeddings follow a teacher's (dimensions may differ).

    ``relational``: the student's batch cosine-similarity matrix matches the teacher's target
    similarities (MSE), which transfers the teacher's notion of "how similar" without fixing the
    student's coordinates. Targets are ``teacher @ teacher.T - offset`` (``teacher.TeacherTargets``).
    ``projection``: a linear map of the student embedding matches the teacher vector (cosine).
    ``relational+projection``: relational + ``projection_weight`` x projection.
    """

    def __init__(self, method: str, embedding_dim: int, teacher_dim: int, offset: float = 0.0,
                 projection_weight: float = 1.0) -> None:
        super().__init__()
        self.method = method
        self.offset = float(offset)
        self.projection_weight = float(projection_weight) if method == "relational+projection" else 1.0
        self.relational = "relational" in method.split("+")
        self.projection = nn.Linear(embedding_dim, teacher_dim) if "projection" in method.split("+") else None

    def forward(self, embeddings: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        teacher = teacher.float()
        loss = embeddings.new_zeros(())
        if self.projection is not None:
            loss = loss + self.projection_weight * (1.0 - F.cosine_similarity(self.projection(embeddings), teacher, dim=1)).mean()
        if self.relational:
            student = F.normalize(embeddings, dim=1)
            loss = loss + F.mse_loss(student @ student.T, teacher @ teacher.T - self.offset)
        return loss


class NeighbourDistillation(nn.Module):
    """Each face's ranking of the others follows the teacher's, most of all among its nearest.

    For every face of the batch, the teacher's target similarities to the other faces of the batch
    and to the ``memory`` faces of recent batches, divided by ``temperature``, give a softmax
    distribution over them; the student's cosines give another; the loss is their KL divergence,
    teacher to student (the relational-similarity losses of CompRess, Abbasi Koohpayegani et al.
    2020, and SEED, Fang et al. 2021). Unlike the relational MSE, whose pairs of strangers near 0
    dominate a batch, the softmax weighs the look-alikes and the same person most, which is where
    verification is decided. The memory holds the teacher vectors and the (detached, so slightly
    stale) student embeddings of the last ``memory`` faces; it is not saved with checkpoints.
    """

    def __init__(self, embedding_dim: int, teacher_dim: int, offset: float = 0.0, temperature: float = 0.05,
                 memory: int = 4096) -> None:
        super().__init__()
        if temperature <= 0 or memory < 0:
            raise ValueError(f"temperature must be positive and memory >= 0, got {temperature}, {memory}")
        self.offset = float(offset)
        self.temperature = float(temperature)
        self.memory = int(memory)
        self.register_buffer("memory_student", torch.zeros(self.memory, embedding_dim), persistent=False)
        self.register_buffer("memory_teacher", torch.zeros(self.memory, teacher_dim), persistent=False)
        self.filled = 0
        self.position = 0

    def forward(self, embeddings: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student = F.normalize(embeddings.float(), dim=1)
        teacher = teacher.float()
        others_student = torch.cat([student, self.memory_student[:self.filled]])
        others_teacher = torch.cat([teacher, self.memory_teacher[:self.filled]])
        if others_student.shape[0] < 2:  # one face and no memory: nobody to rank (and no NaN)
            self._remember(student.detach(), teacher.detach())
            return embeddings.sum() * 0.0
        itself = torch.zeros(student.shape[0], others_student.shape[0], dtype=torch.bool, device=student.device)
        itself[:, :student.shape[0]] = torch.eye(student.shape[0], dtype=torch.bool, device=student.device)
        student_logits = (student @ others_student.T / self.temperature).masked_fill(itself, float("-inf"))
        teacher_logits = ((teacher @ others_teacher.T - self.offset) / self.temperature).masked_fill(itself, float("-inf"))
        target = F.softmax(teacher_logits, dim=1)
        log_student = F.log_softmax(student_logits, dim=1).masked_fill(itself, 0.0)
        log_target = F.log_softmax(teacher_logits, dim=1).masked_fill(itself, 0.0)
        loss = (target * (log_target - log_student)).sum(dim=1).mean()
        self._remember(student.detach(), teacher.detach())
        return loss

    @torch.no_grad()
    def _remember(self, student: torch.Tensor, teacher: torch.Tensor) -> None:
        if not self.training or self.memory == 0:
            return
        count = min(student.shape[0], self.memory)
        rows = (self.position + torch.arange(count, device=student.device)) % self.memory
        self.memory_student[rows] = student[-count:]
        self.memory_teacher[rows] = teacher[-count:]
        self.position = int((self.position + count) % self.memory)
        self.filled = min(self.memory, self.filled + count)


def build_label_loss(kind: str, config: LossConfig, embedding_dim: int, num_classes: int) -> nn.Module:
    if kind == "classification":
        return ClassificationLoss(config, embedding_dim, num_classes)
    if kind in ("contrastive", "triplet"):
        return MetricLoss(kind, config)
    if kind == "pair_classifier":
        return PairClassifierLoss(embedding_dim, config.pair_hidden)
    raise ValueError(f"unknown loss kind {kind!r}")
