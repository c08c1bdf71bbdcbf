"""Training from a face pack with the faces on the accelerator: batches of indices, gathered and
augmented on the device (``augment_torch``), so that a GPU is not held back by per-face CPU work."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from .augment_torch import augment_batch
from .config import DataConfig
from .data import FaceDataModule
from .face_cache import DatasetError
from .face_pack import read_pack


class _Indices(Dataset):
    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


def _index_batch(indices: list[int]) -> dict:
    return {"index": torch.as_tensor(indices, dtype=torch.int64)}


class PackedFaceDataModule(FaceDataModule):
    """``FaceDataModule`` over a face pack. Training batches leave the loader as ``{"index"}`` and
    become ``{"image", "label", "teacher", "index"}`` on the device, after the transfer; validation is
    the pack's validation faces and pairs, as from the caches."""

    def __init__(self, pack_dir: str, config: DataConfig, seed: int = 0) -> None:
        super().__init__(config, seed)
        pack = read_pack(pack_dir)
        if pack.meta["input_size"] != config.input_size:
            raise DatasetError(f"face pack {pack_dir} holds {pack.meta['input_size']}px faces; the recipe trains at "
                               f"{config.input_size}px (pack it again with this recipe)")
        self.pack_meta = pack.meta
        self.train, self.val, self.val_pairs = pack.train, pack.val, pack.val_pairs
        self._on_device: dict[str, torch.Tensor] = {}
        self._generator: torch.Generator | None = None

    def train_dataloader(self) -> DataLoader:
        if self.config.sampler == "pk":
            return DataLoader(_Indices(len(self.train)), batch_sampler=self.pk_sampler(), collate_fn=_index_batch)
        return DataLoader(_Indices(len(self.train)), batch_size=self.config.batch_size, shuffle=True, drop_last=True,
                          collate_fn=_index_batch)

    def _device_arrays(self, device: torch.device) -> dict[str, torch.Tensor]:
        if not self._on_device or self._on_device["image"].device != device:
            arrays = {"image": torch.from_numpy(self.train.crops), "label": torch.from_numpy(self.train.labels)}
            if self.train.teacher is not None:
                arrays["teacher"] = torch.from_numpy(self.train.teacher)
            self._on_device = {name: value.to(device) for name, value in arrays.items()}
            rank = getattr(getattr(self, "trainer", None), "global_rank", 0) or 0
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed * 1000 + rank)
        return self._on_device

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if not isinstance(batch, dict) or "image" in batch:
            return batch  # validation: decoded crops, as from the caches
        index = batch["index"]
        arrays = self._device_arrays(index.device)
        batch = {name: value[index] for name, value in arrays.items()}
        batch["image"] = augment_batch(batch["image"], self.config.augment, self._generator)
        batch["index"] = index
        return batch
