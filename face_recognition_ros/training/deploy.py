"""Turn a training checkpoint into the deploy checkpoint ``create_encoder("efficientnet_b0")`` loads."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import torch

from ..encoders.efficientnet_checkpoint import DEFAULT_WEIGHTS, save_deploy_checkpoint
from ..errors import ModelError
from .data import FaceArrays, FaceDataModule
from .module import FaceEmbeddingModule, pair_metrics

#: the deploy file must stay small enough to live in the repository
MAX_DEPLOY_BYTES = 25 * 1024 * 1024


def load_training_module(lightning_ckpt: str | Path) -> FaceEmbeddingModule:
    path = Path(lightning_ckpt)
    if not path.is_file():
        raise ModelError(f"training checkpoint {path} not found")
    try:
        return FaceEmbeddingModule.load_from_checkpoint(path, map_location="cpu").eval()
    except (KeyError, RuntimeError, TypeError) as error:
        raise ModelError(f"{path} is not a checkpoint of face_recognition_ros.training: {error}") from None


@torch.inference_mode()
def embed_arrays(module: FaceEmbeddingModule, crops: np.ndarray, batch_size: int = 128) -> np.ndarray:
    parts = [module(torch.from_numpy(crops[s:s + batch_size])).cpu().numpy() for s in range(0, len(crops), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def export_encoder(
    lightning_ckpt: str | Path,
    out_path: str | Path = DEFAULT_WEIGHTS,
    val: FaceArrays | None = None,
    val_pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    half: bool | None = None,
) -> dict:
    """Write the deploy checkpoint with its threshold calibrated on validation pairs.

    Validation crops and pairs default to the split recorded in the checkpoint's own recipe. The
    threshold is ``best_threshold`` of cosine similarity on those pairs. Weights are stored as fp16
    when ``half`` is True, or when None and the fp32 file would exceed MAX_DEPLOY_BYTES.
    Returns the metadata written (validation accuracy, threshold, ...).
    """
    module = load_training_module(lightning_ckpt)
    if val is None or val_pairs is None:
        datamodule = FaceDataModule(module.config.data, module.config.seed)
        datamodule.setup("validate")
        val, val_pairs = datamodule.val, datamodule.val_pairs
    metrics = pair_metrics(embed_arrays(module, val.crops), *val_pairs)
    if half is None:
        half = sum(t.numel() * t.element_size() for t in module.network.state_dict().values()) > MAX_DEPLOY_BYTES
    metadata = {
        "recipe": module.config.name,
        "loss": module.config.loss.kind,
        "source_checkpoint": Path(lightning_ckpt).name,
        "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "calibration": f"best-accuracy cosine threshold on {len(val_pairs[2])} validation pairs of "
                       f"{len(val.identities)} held-out identities",
        "val_accuracy": metrics["acc"],
        "val_roc_auc": metrics["auc"],
        "val_tar_at_far_1e-2": metrics["tar_far1e-2"],
        "fp16": bool(half),
    }
    save_deploy_checkpoint(module.network, out_path, metrics["threshold"], module.config.data.input_size,
                           module.preprocessing, half=half, metadata=metadata)
    return metadata | {"threshold": metrics["threshold"], "path": str(out_path)}
