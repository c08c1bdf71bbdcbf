"""The efficientnet_b0 deploy checkpoint: weights, input size, normalisation and thresholds in one file.

``save_deploy_checkpoint`` writes it (with a JSON model card beside it), ``load_deploy_checkpoint``
reads it back into an :class:`EfficientNetEmbedder`; the training package exports its best
checkpoint this way (``training/deploy.py``) and the encoder loads nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..atomic_file import atomic_path
from ..errors import ModelError
from .efficientnet_network import EfficientNetEmbedder, Preprocessing

CHECKPOINT_FORMAT = "face_recognition_ros/efficientnet_b0/v1"
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "efficientnet_b0.pt"


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
            "export a training checkpoint with face_recognition_ros.training.deploy)"
        )
    return blob


def record_lfw_threshold(path: str | Path, threshold: float, description: str, flip: bool = False) -> dict:
    """Store an LFW-calibrated threshold in a deploy checkpoint (and its JSON card); returns the config.

    The encoder then uses it as its default instead of the validation-pair threshold; with ``flip``
    it is the threshold for test-time-flip embeddings (``lfw_threshold_flip``). Each file is
    replaced atomically, so an interrupted write never leaves a half-written checkpoint.
    """
    path = Path(path)
    if not -1.0 <= threshold <= 1.0:
        raise ModelError(f"an LFW threshold is a cosine similarity in [-1, 1], got {threshold}")
    blob = _read_deploy_checkpoint(path)
    config = blob["config"]
    suffix = "_flip" if flip else ""
    config["lfw_threshold" + suffix] = round(float(threshold), 4)
    config.setdefault("metadata", {})["lfw_calibration" + suffix] = description
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
