"""dlib's face-recognition ResNet (dlib_face_recognition_resnet_model_v1) as a torch module.

The weights are parsed at load time from the ``.dat`` file shipped by the ``face_recognition_models``
package (see ``dlib_format``); dlib itself is not needed at run time. The layers reproduce dlib's
arithmetic (checked against ``dlib.face_recognition_model_v1`` in test/test_dlib_resnet.py):

* ``con``: cross-correlation with bias; padding 0 when strided, else ``size // 2``;
* ``affine``: per-channel ``gamma * x + beta`` (dlib's frozen batch norm);
* ``max_pool<3,3,2,2>`` / ``avg_pool<2,2,2,2>``: no padding, output ``1 + (n - window) // stride``;
* ``add_prev``: the output takes the larger channel count and spatial size of its two inputs and
  entries missing from one input count as zero (dlib/cuda/cpu_dlib.cpp ``add``). This matters:
  two down-sampling blocks add a 3x3 residual to a 4x4 shortcut and a 1x1 one to a 2x2 one;
* ``avg_pool_everything`` then ``fc_no_bias<128>``;
* input: ``(pixel - channel mean) / 256`` with the means stored in the file.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..alignment import AlignmentTemplate
from ..errors import ModelError
from . import register_encoder
from .base import FaceEncoder, file_sha256
from .dlib_format import INPUT_SIZE, DlibNetwork, read_anet

WEIGHTS_FILE = "dlib_face_recognition_resnet_model_v1.dat"

# Where RetinaFace's five landmarks (order types.LANDMARK_NAMES: eye centres, nose tip, mouth
# corners) land in dlib's 150x150 face chip, i.e. ``dlib.get_face_chip(img, shape, 150, 0.25)`` with
# ``shape`` from the 5-point shape predictor. Fitted by scripts/fit_dlib_template.py on 627 LFW faces
# found by both dlib's frontal detector and RetinaFace: each face's RetinaFace landmarks were mapped
# through dlib's own image->chip transform and averaged (the least-squares template). On held-out
# faces our chips then give embeddings with mean cosine 0.9935 (LFW) / 0.9918 (CelebA) to dlib's
# own chips. (Fitting the template to match dlib's per-face transforms instead of the points did no
# better.) The residual comes from the two landmark sets disagreeing face by face (RetinaFace's
# nose tip and mouth corners vary 4-7 px around the mean in the chip frame), not from the warp:
# warping with dlib's exact transform gives cosine 0.9999.
DLIB_CHIP_150 = AlignmentTemplate(
    landmarks=np.array(
        [
            [46.59, 45.47],
            [102.07, 45.18],
            [73.13, 76.89],
            [50.53, 103.42],
            [97.26, 103.29],
        ],
        np.float32,
    ),
    size=(INPUT_SIZE, INPUT_SIZE),
)


class Affine(nn.Module):
    """dlib's ``affine`` layer in CONV_MODE: one scale and one shift per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: sum over the union of both shapes, missing entries counting as zero.

    Both tensors are anchored at channel 0 and the top-left pixel, so padding goes at the end.
    """
    channels = max(a.shape[1], b.shape[1])
    height = max(a.shape[2], b.shape[2])
    width = max(a.shape[3], b.shape[3])

    def grow(t: torch.Tensor) -> torch.Tensor:
        if t.shape[1:] == (channels, height, width):
            return t
        return F.pad(t, (0, width - t.shape[3], 0, height - t.shape[2], 0, channels - t.shape[1]))

    return grow(a) + grow(b)


def _conv(in_channels: int, out_channels: int, size: int, stride: int) -> nn.Conv2d:
    padding = 0 if stride != 1 else size // 2  # dlib's default padding rule
    return nn.Conv2d(in_channels, out_channels, size, stride, padding, bias=True)


class ResidualBlock(nn.Module):
    """dlib's ``ares`` (identity shortcut) or ``ares_down`` (stride 2, 2x2 average-pooled shortcut)."""

    def __init__(self, in_channels: int, out_channels: int, downsample: bool) -> None:
        super().__init__()
        # definition order = dlib's evaluation order, which the weight loader relies on
        self.conv1 = _conv(in_channels, out_channels, 3, 2 if downsample else 1)
        self.affine1 = Affine(out_channels)
        self.conv2 = _conv(out_channels, out_channels, 3, 1)
        self.affine2 = Affine(out_channels)
        self.shortcut = nn.AvgPool2d(2, 2) if downsample else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        return F.relu(add_zero_padded(residual, self.shortcut(x)))


# (out channels, downsample) per block, input side first: alevel4 .. alevel0 of anet_type
_BLOCKS = (
    [(32, False)] * 3
    + [(64, True)] + [(64, False)] * 3
    + [(128, True)] + [(128, False)] * 2
    + [(256, True)] + [(256, False)] * 2
    + [(256, True)]
)  # fmt: skip


class DlibResNet(nn.Module):
    """(N, 3, 150, 150) pre-processed input -> (N, 128) raw descriptors, as dlib's ``anet_type``."""

    def __init__(self, embedding_size: int = 128) -> None:
        super().__init__()
        self.conv = _conv(3, 32, 7, 2)
        self.affine = Affine(32)
        self.pool = nn.MaxPool2d(3, 2)
        blocks = []
        channels = 32
        for out_channels, downsample in _BLOCKS:
            blocks.append(ResidualBlock(channels, out_channels, downsample))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(channels, embedding_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.affine(self.conv(x))))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


def state_dict_from_dlib(network: DlibNetwork, model: DlibResNet) -> dict[str, torch.Tensor]:
    """Map the parsed layers onto ``model``'s parameters, pairing them in evaluation order."""
    kinds = {nn.Conv2d: "con", Affine: "affine", nn.Linear: "fc"}
    slots = [(name, module) for name, module in model.named_modules() if type(module) in kinds]
    layers = [layer for layer in network.layers if layer.params]
    if len(slots) != len(layers):
        raise ModelError(f"dlib file has {len(layers)} weighted layers, the model {len(slots)}")
    state: dict[str, torch.Tensor] = {}
    for (name, module), layer in zip(slots, layers):
        if kinds[type(module)] != layer.kind:
            raise ModelError(f"dlib layer {layer.kind} where the model has {name} ({type(module).__name__})")
        for key, value in layer.params.items():
            # dlib's fc weights are (inputs, outputs); torch's Linear stores (outputs, inputs)
            tensor = torch.from_numpy(value.T.copy() if layer.kind == "fc" else value)
            expected = getattr(module, key).shape
            if tensor.shape != expected:
                raise ModelError(
                    f"dlib {layer.kind} {key} of shape {tuple(tensor.shape)} for {name} {tuple(expected)}"
                )
            state[f"{name}.{key}"] = tensor
    return state


def default_weights_path() -> Path:
    """The .dat file of the installed ``face_recognition_models`` package."""
    # find_spec locates the package without importing it: its __init__ imports the deprecated
    # pkg_resources only to build this same path.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "dlib_resnet needs weights: install face_recognition_models or pass weights=PATH to "
            f"{WEIGHTS_FILE}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / WEIGHTS_FILE


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, dict[str, torch.Tensor], str]:
    # keyed on mtime and size too, so a replaced file is parsed again
    network = read_anet(path)
    state = state_dict_from_dlib(network, DlibResNet())
    return network.input_mean_rgb, state, file_sha256(path)


def load_dlib_weights(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, torch.Tensor], str]:
    """Parse a dlib model file once per process: (RGB input means, state_dict, weights hash)."""
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except OSError as error:
        raise ModelError(f"dlib weights not found at {resolved}: {error.strerror or error}") from error
    if not resolved.is_file():
        raise ModelError(f"dlib weights path {resolved} is not a file")
    return _load_cached(str(resolved), stat.st_mtime_ns, stat.st_size)


@register_encoder("dlib_resnet")
class DlibResNetEncoder(FaceEncoder):
    """dlib's 128-d face descriptor (99.38% LFW with jitter, 99.13% without), in torch."""

    name = "dlib_resnet"
    # dlib's descriptors all point roughly the same way (different people still score ~0.8), so
    # the cut is high: dlib's own rule, Euclidean distance < 0.6 on raw descriptors of norm ~1.38,
    # is cosine ~0.905. Calibrated: the mean of the ten per-fold thresholds of the LFW View 2
    # protocol (`face-recognition-ros eval lfw`, RetinaFace + DLIB_CHIP_150 chips), 98.90% accuracy.
    default_threshold = 0.908
    # The same for test_time_flip embeddings, which score higher (`eval lfw --test-time-flip`: 99.20%).
    flip_threshold = 0.914
    # Same-person and different-person scores are close for dlib, so the lead over the runner-up
    # is small too: 0.01 gave the best F1 of `eval identify` on celeba-subset (K=5, 20% unknown)
    # at the threshold above; 0.02 trades recall for fewer false accepts (README table).
    default_margin = 0.01

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu") -> None:
        super().__init__()
        path = Path(weights) if weights is not None else default_weights_path()
        mean_rgb, state, self._weights_hash = load_dlib_weights(path)
        self._mean = mean_rgb.reshape(1, 3, 1, 1).astype(np.float32)
        try:
            self.device = torch.device(device)
        except RuntimeError as error:
            raise ModelError(f"invalid device {device!r}: {error}") from error
        self._network = DlibResNet()
        self._network.load_state_dict(state)
        self._network.eval().to(self.device)

    @property
    def embedding_size(self) -> int:
        return 128

    @property
    def template(self) -> AlignmentTemplate:
        return DLIB_CHIP_150

    @property
    def weights_hash(self) -> str:
        return self._weights_hash

    @property
    def network(self) -> nn.Module:
        return self._network

    @property
    def input_mean_rgb(self) -> np.ndarray:
        """Per-channel means subtracted by dlib's input layer (from the weights file)."""
        return self._mean.reshape(3).copy()

    def preprocess(self, faces: np.ndarray) -> np.ndarray:
        """dlib's ``input_rgb_image_sized``: (pixel - channel mean) / 256, NHWC uint8 -> NCHW float32."""
        if faces.ndim != 4 or faces.shape[3] != 3:
            raise ValueError(f"expected (N, H, W, 3) RGB crops, got shape {faces.shape}")
        batch = faces.transpose(0, 3, 1, 2).astype(np.float32)
        # exact in float32 like dlib's: integer minus float, then a power-of-two division
        return np.ascontiguousarray((batch - self._mean) / np.float32(256.0))
