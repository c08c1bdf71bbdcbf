"""A recipe's selected faces, packed small enough to travel to a GPU machine.

A recipe's training set lives in face caches (256x256 storage crops, ~1 GB for the ~35k faces of
``b0_ensemble_112``) and needs the teachers (dlib's weights, MobileFace's) to compute its
distillation targets. A pack holds only what a run reads: every training and validation face at the
recipe's input size as a WebP image, its label, its teacher target quantised to int8 per row, and the
validation pairs. The recipe's ~35k faces at quality 85 take ~75 MB, in parts of at most
``part_mib`` each, so that each part can travel in a call of its own to a machine that caps a call's
files (64 MiB on this project's GPU lender). ``meta.json`` lists the parts with their SHA-256, so an
incomplete or damaged pack is an error before any training, not a silently smaller data set.

    face-recognition-ros pack-faces --config config/train/b0_ensemble_112.yaml --out .gpu/pack
    face-recognition-ros train --config config/train/b0_ensemble_112_gpu.yaml --pack .gpu/pack --minutes 7
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..atomic_file import atomic_path
from ..encoders.base import file_sha256
from .data import FaceArrays
from .face_cache import DatasetError

log = logging.getLogger(__name__)

PACK_FORMAT = "face_recognition_ros/face_pack/v1"
META = "meta.json"
VALIDATION_PART = "val.npz"


@dataclass
class FacePack:
    train: FaceArrays
    val: FaceArrays
    val_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    meta: dict


def quantise_rows(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, T) float -> int8 codes and one float32 scale per row; ``dequantise_rows`` inverts it to
    within half a step (1/254 of the row's largest magnitude)."""
    vectors = np.asarray(vectors, np.float32)
    scale = np.abs(vectors).max(axis=1) / 127.0 if vectors.size else np.zeros(len(vectors), np.float32)
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.round(vectors / scale[:, None]).astype(np.int8), scale


def dequantise_rows(codes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return codes.astype(np.float32) * scale[:, None].astype(np.float32)


def encode_images(crops: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W, 3) uint8 RGB crops -> one byte buffer of WebP images and N + 1 offsets into it."""
    def encode(crop: np.ndarray) -> bytes:
        ok, data = cv2.imencode(".webp", np.ascontiguousarray(crop[..., ::-1]), [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
        if not ok:
            raise DatasetError("OpenCV could not encode a face as WebP (an OpenCV build without WebP?)")
        return data.tobytes()

    with ThreadPoolExecutor() as pool:
        encoded = list(pool.map(encode, crops))
    offsets = np.zeros(len(encoded) + 1, np.int64)
    offsets[1:] = np.cumsum([len(item) for item in encoded])
    return np.frombuffer(b"".join(encoded), np.uint8), offsets


def decode_images(blob: np.ndarray, offsets: np.ndarray, size: int, where: str) -> np.ndarray:
    def decode(index: int) -> np.ndarray:
        image = cv2.imdecode(blob[offsets[index]:offsets[index + 1]], cv2.IMREAD_COLOR)
        if image is None or image.shape != (size, size, 3):
            raise DatasetError(f"{where}: face {index} does not decode to a {size}x{size} colour image")
        return image[..., ::-1]

    crops = np.empty((len(offsets) - 1, size, size, 3), np.uint8)
    with ThreadPoolExecutor() as pool:
        for index, image in enumerate(pool.map(decode, range(len(crops)))):
            crops[index] = image
    return crops


def _save(path: Path, **arrays: np.ndarray) -> dict:
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path, 64)}


def write_pack(train: FaceArrays, val: FaceArrays, val_pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
               out_dir: str | Path, recipe: str = "", quality: int = 85, part_mib: float = 40.0) -> dict:
    """Write the pack to ``out_dir`` (which must not hold another pack) and return its meta."""
    out_dir = Path(out_dir)
    if (out_dir / META).exists():
        raise DatasetError(f"{out_dir} already holds a face pack; give an empty or new folder")
    if not 1 <= quality <= 100:
        raise DatasetError(f"WebP quality must be 1..100, got {quality}")
    if part_mib <= 0:
        raise DatasetError(f"part size must be positive, got {part_mib} MiB")
    size = int(train.crops.shape[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    blob, offsets = encode_images(train.crops, quality)
    teacher_codes = teacher_scale = None
    if train.teacher is not None:
        teacher_codes, teacher_scale = quantise_rows(train.teacher)
    # bytes per face in a part: its image, offset and label (int64 each), teacher codes and scale
    per_face = np.diff(offsets) + 16 + (teacher_codes.shape[1] + 4 if teacher_codes is not None else 0)
    limit = part_mib * (1 << 20) - 4096  # the .npz container's own headers
    parts, start = [], 0
    while start < len(train):
        stop, used = start, 0
        while stop < len(train) and (stop == start or used + per_face[stop] <= limit):
            used += per_face[stop]
            stop += 1
        arrays = {"images": blob[offsets[start]:offsets[stop]], "offsets": offsets[start:stop + 1] - offsets[start],
                  "labels": train.labels[start:stop].astype(np.int64)}
        if teacher_codes is not None:
            arrays.update(teacher_codes=teacher_codes[start:stop], teacher_scale=teacher_scale[start:stop])
        entry = _save(out_dir / f"part-{len(parts):02d}.npz", **arrays)
        parts.append({**entry, "first": start, "count": stop - start})
        start = stop
    val_blob, val_offsets = encode_images(val.crops, quality)
    validation = _save(out_dir / VALIDATION_PART, images=val_blob, offsets=val_offsets,
                       labels=val.labels.astype(np.int64), pair_a=val_pairs[0], pair_b=val_pairs[1], same=val_pairs[2])
    meta = {
        "format": PACK_FORMAT,
        "recipe": recipe,
        "input_size": size,
        "quality": int(quality),
        "faces": len(train),
        "labelled_faces": int(np.sum(train.labels >= 0)),
        "identities": list(train.identities),
        "val_faces": len(val),
        "val_identities": list(val.identities),
        "teacher_dim": int(teacher_codes.shape[1]) if teacher_codes is not None else None,
        "teacher_offset": float(train.teacher_offset),
        "parts": parts,
        "validation": validation,
    }
    with atomic_path(out_dir / META) as temporary:
        Path(temporary).write_text(json.dumps(meta, indent=1))
    return meta


def _load_part(out_dir: Path, entry: dict) -> dict:
    path = out_dir / entry["file"]
    if not path.is_file():
        raise DatasetError(f"face pack {out_dir}: {entry['file']} is missing (every part listed in {META} must be there)")
    if path.stat().st_size != entry["bytes"] or file_sha256(path, 64) != entry["sha256"]:
        raise DatasetError(f"face pack {out_dir}: {entry['file']} is damaged or from another pack (its SHA-256 "
                           f"differs from {META}'s)")
    with np.load(path, allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}


def read_pack(out_dir: str | Path) -> FacePack:
    """Every part, checked against ``meta.json`` and decoded: the training and validation faces."""
    out_dir = Path(out_dir)
    try:
        meta = json.loads((out_dir / META).read_text())
    except FileNotFoundError:
        raise DatasetError(f"{out_dir} is no face pack (no {META}); make one with face-recognition-ros pack-faces") from None
    except (OSError, ValueError) as error:
        raise DatasetError(f"face pack {out_dir}: {META} is unreadable: {error}") from None
    if meta.get("format") != PACK_FORMAT:
        raise DatasetError(f"face pack {out_dir}: format {meta.get('format')!r}, expected {PACK_FORMAT!r}")
    size = int(meta["input_size"])
    crops, labels, codes, scales = [], [], [], []
    for entry in meta["parts"]:
        part = _load_part(out_dir, entry)
        crops.append(decode_images(part["images"], part["offsets"], size, f"{out_dir}/{entry['file']}"))
        labels.append(part["labels"])
        if meta["teacher_dim"]:
            codes.append(part["teacher_codes"])
            scales.append(part["teacher_scale"])
    teacher = dequantise_rows(np.concatenate(codes), np.concatenate(scales)) if meta["teacher_dim"] else None
    train = FaceArrays(np.concatenate(crops), np.concatenate(labels), list(meta["identities"]), teacher,
                       float(meta["teacher_offset"]))
    if len(train) != meta["faces"]:
        raise DatasetError(f"face pack {out_dir}: {len(train)} faces in its parts, {META} says {meta['faces']}")
    part = _load_part(out_dir, meta["validation"])
    val = FaceArrays(decode_images(part["images"], part["offsets"], size, f"{out_dir}/{VALIDATION_PART}"),
                     part["labels"], list(meta["val_identities"]))
    log.info("face pack %s: %d training faces (%d with identity), %d validation faces, %d pairs", out_dir,
             len(train), meta["labelled_faces"], len(val), len(part["same"]))
    return FacePack(train, val, (part["pair_a"], part["pair_b"], part["same"]), meta)
