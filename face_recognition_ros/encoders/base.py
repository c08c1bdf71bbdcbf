"""The one interface every face encoder implements."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from ..alignment import AlignmentTemplate
from ..backends.runners import RunnerHolder
from ..errors import ModelError


def file_sha256(path: str | Path, length: int = 16) -> str:
    """Short content hash of a weights file: identifies which weights produced an embedding."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:length]


def l2_normalize(embeddings: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return (embeddings / np.maximum(norms, eps)).astype(np.float32)


class FaceEncoder(RunnerHolder, ABC):
    """Aligned face crops in, L2-normalised embeddings out.

    An encoder owns its alignment template (where the landmarks go, and the crop size), its
    pre-processing and a torch network. The network takes the pre-processed float tensor
    (N, 3, H, W) and returns raw embeddings (N, D); it runs through the encoder's runner
    (``backends``: plain torch on ``device`` until a backend is attached), so a new encoder works
    with every backend for free.
    """

    #: registry name, e.g. ``dlib_resnet``
    name: str = ""
    #: cosine-similarity threshold for "same person", calibrated on LFW (see README)
    default_threshold: float = 0.5
    #: the same, calibrated for embeddings made with ``test_time_flip``; None: not calibrated
    flip_threshold: float | None = None
    #: required lead of the best person over the second best, in the same similarity units
    default_margin: float = 0.05
    #: bump whenever the same weights and template would give different embeddings (a change to
    #: pre-processing or to the network code), so stored embeddings are recomputed, not trusted
    revision: int = 1

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        #: embed each crop and its mirror image and add the two raw embeddings: a little more
        #: accurate, twice the network time (README, "Test-time flip")
        self.test_time_flip = False

    @property
    @abstractmethod
    def embedding_size(self) -> int:
        """Length of one embedding."""

    @property
    @abstractmethod
    def template(self) -> AlignmentTemplate:
        """Alignment template; its size is the network's input size."""

    @property
    @abstractmethod
    def weights_hash(self) -> str:
        """Content hash of the weights: stored with every gallery sample."""

    @property
    @abstractmethod
    def network(self) -> torch.nn.Module:
        """The torch module mapping ``preprocess`` output to raw (unnormalised) embeddings."""

    @abstractmethod
    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB crops at ``template.size`` -> (N, 3, H, W) float32 network input."""

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one network input."""
        width, height = self.template.size
        return (3, height, width)

    @property
    def identity(self) -> str:
        """``name:weights_hash:geometry``: embeddings are comparable only within one identity.

        The last part hashes the alignment template, ``revision`` and ``test_time_flip``: new
        weights, a moved template, changed pre-processing or the flip switched on or off each make a
        gallery (or any embedding cache) stale.
        """
        recipe = f"{self.template.digest()};r{self.revision}" + (";flip" if self.test_time_flip else "")
        geometry = hashlib.sha256(recipe.encode()).hexdigest()[:8]
        return f"{self.name}:{self.weights_hash}:{geometry}"

    @property
    def calibrated_threshold(self) -> float:
        """The LFW-calibrated 1:1 threshold for embeddings as this encoder makes them now.

        Flipped embeddings score higher than plain ones (dlib_resnet's cut moves from 0.908 to
        0.914), so a threshold calibrated without the flip would be too loose with it.
        """
        if not self.test_time_flip:
            return self.default_threshold
        if self.flip_threshold is None:
            raise ModelError(
                f"{self.name} has no threshold calibrated for test_time_flip: give a fixed match threshold, or "
                "calibrate one: `face-recognition-ros eval lfw --test-time-flip` measures it, and with "
                "--record-threshold stores it in an efficientnet_b0 checkpoint"
            )
        return self.flip_threshold

    def embed(self, faces: np.ndarray) -> np.ndarray:
        """Embed a batch of aligned RGB crops.

        Args:
            faces: (N, H, W, 3) uint8 RGB crops at ``template.size``.

        Returns:
            (N, embedding_size) float32, unit L2 norm.
        """
        if faces.ndim != 4 or faces.shape[3] != 3:
            raise ValueError(f"expected (N, H, W, 3) crops, got shape {faces.shape}")
        if faces.shape[0] == 0:
            return np.zeros((0, self.embedding_size), np.float32)
        width, height = self.template.size
        if faces.shape[1:3] != (height, width):
            raise ValueError(
                f"{self.name} needs {width}x{height} crops, got {faces.shape[2]}x{faces.shape[1]}"
            )
        batch = self.preprocess(faces)
        if not self.test_time_flip:
            return l2_normalize(np.asarray(self.run_network(batch), np.float32))
        # One network call for both halves, so a GPU backend runs them as one batch.
        raw = np.asarray(self.run_network(np.concatenate([batch, batch[..., ::-1]])), np.float32)
        count = len(batch)
        return l2_normalize(raw[:count] + raw[count:])
