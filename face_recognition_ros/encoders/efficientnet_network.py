"""The EfficientNet-B0 embedding network and the pre-processing it is trained with.

The backbone is written out here rather than imported because neither torchvision (its PyPI wheels do
not import beside the torch build this project pins) nor timm (which needs torchvision) is usable. It
follows Tan & Le, "EfficientNet" (2019), B0: a 3x3 stride-2 stem, seven stages of MBConv blocks
(inverted residual, depthwise conv, squeeze-and-excitation with a quarter of the block's input
channels, SiLU) per the B0 stage table below, a 1x1 head conv to 1280 channels, and stochastic depth
growing linearly with block index. The face embedding head (global average pool, dropout, linear,
BatchNorm1d) replaces the ImageNet classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

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
