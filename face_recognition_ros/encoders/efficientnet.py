"""The ``efficientnet_b0`` encoder: the Siamese EfficientNet-B0 trained in this project.

The network is ``efficientnet_network``, its file format ``efficientnet_checkpoint``; this module
only ties them to the encoder interface (alignment template, pre-processing, default threshold).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..alignment import ARCFACE_112, AlignmentTemplate
from ..errors import ModelError
from . import register_encoder
from .base import FaceEncoder, file_sha256
from .efficientnet_checkpoint import DEFAULT_WEIGHTS, load_deploy_checkpoint
from .efficientnet_network import Preprocessing


def input_template(input_size: int) -> AlignmentTemplate:
    """The alignment of an ``input_size`` network: ARCFACE_112 scaled to it. Training crops its faces
    with the same template, so a trained checkpoint sees at run time what it learned from."""
    return ARCFACE_112.scaled(input_size, input_size)


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
                "(face-recognition-ros train, then face-recognition-ros export-checkpoint) and pass weights=PATH"
            )
        self.device = torch.device(device)
        self._network, self.config = load_deploy_checkpoint(path, self.device)
        size = int(self.config["input_size"])
        self._template = input_template(size)
        self._preprocessing = Preprocessing(tuple(self.config["mean"]), tuple(self.config["std"]))
        # The recognizer's default cut is the LFW-calibrated one, as for every encoder; checkpoints
        # not yet evaluated on LFW fall back to the threshold calibrated on their validation pairs.
        self.default_threshold = float(self.config.get("lfw_threshold", self.config["threshold"]))
        flip_threshold = self.config.get("lfw_threshold_flip")
        self.flip_threshold = None if flip_threshold is None else float(flip_threshold)
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
