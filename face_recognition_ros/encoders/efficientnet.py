"""EfficientNet-B0 face encoder: the network, its deploy checkpoint format, and the encoder.

The backbone is written out here rather than imported because neither torchvision (its PyPI wheels do
not import beside the torch build this project pins) nor timm (which needs torchvision) is usable. It
follows Tan & Le, "EfficientNet" (2019), B0: a 3x3 stride-2 stem, seven stages of MBConv blocks
(inverted residual, depthwise conv, squeeze-and-excitation with a quarter of the block's input
channels, SiLU) per the B0 stage table below, a 1x1 head conv to 1280 channels, and stochastic depth
growing linearly with block index. The face embedding head (global average pool, dropout, linear,
BatchNorm1d) replaces the ImageNet classifier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..alignment import ARCFACE_112, AlignmentTemplate
from ..atomic_file import atomic_path
from ..errors import ModelError
from . import register_encoder
from .base import FaceEncoder, file_sha256

CHECKPOINT_FORMAT = "face_recognition_ros/efficientnet_b0/v1"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "efficientnet_b0.pt"
# The pre-processing every efficientnet_b0 checkpoint is trained with, unless it records another.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# B0 stages: (expand ratio, kernel, stride, output channels, repeats).
B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# eps as in the TensorFlow reference; momentum at torch's 0.1, not TF's 0.01 (decay 0.99): with the short
# training runs here, running statistics that lag hundreds of steps made eval-mode outputs constant.
_BN = {"eps": 1e-3, "momentum": 0.1}


def conv_bn_act(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch, **_BN),
    ]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        scale = torch.sigmoid(self.expand(self.act(self.reduce(scale))))
        return x * scale


class StochasticDepth(nn.Module):
    """Drops the whole residual branch per sample during training (Huang et al., 2016)."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0], 1, 1, 1)).bernoulli_(keep)
        return x * mask / keep


class MBConv(nn.Module):
    """Inverted residual block: expand 1x1, depthwise kxk, squeeze-excitation, project 1x1."""

    def __init__(self, in_ch: int, out_ch: int, expand: int, kernel: int, stride: int, drop_prob: float) -> None:
        super().__init__()
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn_act(in_ch, hidden, 1))
        layers += [
            conv_bn_act(hidden, hidden, kernel, stride, groups=hidden),
            SqueezeExcitation(hidden, max(1, in_ch // 4)),
            conv_bn_act(hidden, out_ch, 1, act=False),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch
        self.drop = StochasticDepth(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + self.drop(out) if self.use_residual else out


class EfficientNetB0(nn.Module):
    """Feature extractor: (N, 3, H, W) -> (N, 1280, H/32, W/32)."""

    def __init__(self, stochastic_depth: float = 0.2) -> None:
        super().__init__()
        total_blocks = sum(stage[4] for stage in B0_STAGES)
        layers: list[nn.Module] = [conv_bn_act(3, STEM_CHANNELS, 3, stride=2)]
        in_ch, index = STEM_CHANNELS, 0
        for expand, kernel, stride, out_ch, repeats in B0_STAGES:
            for repeat in range(repeats):
                drop = stochastic_depth * index / total_blocks
                layers.append(MBConv(in_ch, out_ch, expand, kernel, stride if repeat == 0 else 1, drop))
                in_ch, index = out_ch, index + 1
        layers.append(conv_bn_act(in_ch, HEAD_CHANNELS, 1))
        self.features = nn.Sequential(*layers)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class EmbeddingHead(nn.Module):
    """Global average pool, dropout, linear to the embedding, BatchNorm1d without affine (raw, unnormalised)."""

    def __init__(self, in_channels: int = HEAD_CHANNELS, embedding_dim: int = 64, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_channels, embedding_dim)
        # No affine part: a learnable shift lets metric losses collapse every face onto one vector
        # (the shift), while zero-mean unit-variance features over the batch cannot collapse.
        self.norm = nn.BatchNorm1d(embedding_dim, affine=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.mean((2, 3))
        return self.norm(self.linear(self.dropout(pooled)))


class EfficientNetEmbedder(nn.Module):
    """Backbone + embedding head: pre-processed faces (N, 3, H, W) -> raw embeddings (N, D)."""

    def __init__(self, embedding_dim: int = 64, dropout: float = 0.2, stochastic_depth: float = 0.2) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.backbone = EfficientNetB0(stochastic_depth)
        self.head = EmbeddingHead(HEAD_CHANNELS, embedding_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


@dataclass(frozen=True)
class Preprocessing:
    """uint8 RGB -> (x / 255 - mean) / std, channels first: the one place it is defined."""

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def numpy(self, faces: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 -> (N, 3, H, W) float32."""
        scaled = faces.astype(np.float32) / 255.0
        normalised = (scaled - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))

    def torch(self, faces: torch.Tensor) -> torch.Tensor:
        """(N, H, W, 3) uint8 tensor -> (N, 3, H, W) float32 on the same device."""
        mean = torch.tensor(self.mean, device=faces.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=faces.device).view(1, 3, 1, 1)
        return (faces.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def save_deploy_checkpoint(
    network: EfficientNetEmbedder,
    path: str | Path,
    threshold: float,
    input_size: int = 112,
    preprocessing: Preprocessing = Preprocessing(),
    half: bool = False,
    metadata: dict | None = None,
) -> Path:
    """Write the checkpoint ``EfficientNetEncoder`` loads, plus a JSON model card beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in network.state_dict().items()}
    config = {
        "format": CHECKPOINT_FORMAT,
        "embedding_dim": network.embedding_dim,
        "input_size": input_size,
        "mean": list(preprocessing.mean),
        "std": list(preprocessing.std),
        "threshold": float(threshold),
        "metadata": metadata or {},
    }
    torch.save({"config": config, "state_dict": state}, path)
    path.with_suffix(".json").write_text(_model_card(config), encoding="utf-8")
    return path


def _read_deploy_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise ModelError(f"efficientnet_b0 weights not found at {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a corrupt or foreign file
        raise ModelError(f"cannot read efficientnet_b0 weights {path}: {error}") from None
    if not isinstance(blob, dict) or blob.get("config", {}).get("format") != CHECKPOINT_FORMAT:
        raise ModelError(
            f"{path} is not an efficientnet_b0 deploy checkpoint (expected format {CHECKPOINT_FORMAT}; "
            "export a training checkpoint with face_recognition_ros.training.export)"
        )
    return blob


def record_lfw_threshold(path: str | Path, threshold: float, description: str) -> dict:
    """Store an LFW-calibrated threshold in a deploy checkpoint (and its JSON card); returns the config.

    The encoder then uses it as its default instead of the validation-pair threshold. Each file is
    replaced atomically, so an interrupted write never leaves a half-written checkpoint.
    """
    path = Path(path)
    if not -1.0 <= threshold <= 1.0:
        raise ModelError(f"an LFW threshold is a cosine similarity in [-1, 1], got {threshold}")
    blob = _read_deploy_checkpoint(path)
    config = blob["config"]
    config["lfw_threshold"] = round(float(threshold), 4)
    config.setdefault("metadata", {})["lfw_calibration"] = description
    with atomic_path(path) as partial:
        torch.save(blob, partial)
    with atomic_path(path.with_suffix(".json")) as partial:
        partial.write_text(_model_card(config), encoding="utf-8")
    return config


def _model_card(config: dict) -> str:
    return json.dumps(config, indent=2) + "\n"


def load_deploy_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[EfficientNetEmbedder, dict]:
    """The network (eval mode) and config of a checkpoint written by ``save_deploy_checkpoint``."""
    blob = _read_deploy_checkpoint(Path(path))
    config = blob["config"]
    network = EfficientNetEmbedder(embedding_dim=int(config["embedding_dim"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        first_line = str(error).splitlines()[0]
        raise ModelError(f"weights in {path} do not fit EfficientNet-B0: {first_line}") from None
    return network.to(device).eval(), config


@register_encoder("efficientnet_b0")
class EfficientNetEncoder(FaceEncoder):
    """EfficientNet-B0 trained in this project (``face_recognition_ros.training``), ArcFace alignment."""

    name = "efficientnet_b0"

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu") -> None:
        super().__init__()
        path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        if weights is None and not path.is_file():
            raise ModelError(
                f"no trained weights for efficientnet_b0 at {path}; train and export one "
                "(face-recognition-ros train, then training.export) and pass weights=PATH"
            )
        self.device = torch.device(device)
        self._network, self.config = load_deploy_checkpoint(path, self.device)
        size = int(self.config["input_size"])
        self._template = ARCFACE_112.scaled(size, size)
        self._preprocessing = Preprocessing(tuple(self.config["mean"]), tuple(self.config["std"]))
        # The recognizer's default cut is the LFW-calibrated one, as for every encoder; checkpoints
        # not yet evaluated on LFW fall back to the threshold calibrated on their validation pairs.
        self.default_threshold = float(self.config.get("lfw_threshold", self.config["threshold"]))
        self._hash = file_sha256(path)

    @property
    def embedding_size(self) -> int:
        return self._network.embedding_dim

    @property
    def template(self) -> AlignmentTemplate:
        return self._template

    @property
    def weights_hash(self) -> str:
        return self._hash

    @property
    def network(self) -> torch.nn.Module:
        return self._network

    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        return self._preprocessing.numpy(faces)
