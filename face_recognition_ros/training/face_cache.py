"""Detect and align every face of a folder-per-identity dataset once, and keep the crops on disk.

Crops are stored at ``alignment.STORAGE_TEMPLATE`` (loose 256x256), so any encoder's template is one
cheap warp away (``recrop``). The manifest (``manifest.json``) lists, per kept image, its identity,
source path (relative to the dataset root), crop file and the detected landmarks; images with no face
or that cannot be read are listed too, so a rebuild skips nothing silently and the counts are reported.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import logging

import cv2
import numpy as np
import platformdirs
from tqdm import tqdm

from ..alignment import STORAGE_TEMPLATE, AlignmentTemplate, align_faces, estimate_similarity_transforms
from ..atomic_file import atomic_path
from ..errors import FaceRecognitionError, ImageError
from ..image_files import find_images, load_image

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


class DatasetError(FaceRecognitionError, ValueError):
    """A training dataset or its cache is missing, empty or malformed."""


@dataclass(frozen=True)
class CachedFace:
    identity: str
    source: str  # relative to the dataset root
    crop: str  # relative to the cache folder
    landmarks: tuple[tuple[float, float], ...]  # (5, 2) in source pixels
    score: float


@dataclass
class FaceCache:
    """The manifest of one cache folder."""

    root: Path
    dataset: str
    faces: list[CachedFace] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def identities(self) -> list[str]:
        return sorted({face.identity for face in self.faces})

    def load_storage_crops(self, faces: Sequence[CachedFace] | None = None) -> np.ndarray:
        """(N, 256, 256, 3) uint8 RGB crops of ``faces`` (default all)."""
        faces = self.faces if faces is None else faces
        crops = np.empty((len(faces), STORAGE_TEMPLATE.size[1], STORAGE_TEMPLATE.size[0], 3), np.uint8)
        for i, face in enumerate(faces):
            crops[i] = load_image(self.root / face.crop)
        return crops

    def summary(self) -> str:
        return (f"{len(self.faces)} faces of {len(self.identities())} identities; "
                f"{len(self.no_face)} images without a face, {len(self.unreadable)} unreadable")

    def save(self) -> None:
        payload = {
            "version": MANIFEST_VERSION,
            "dataset": self.dataset,
            "storage_template": {"size": list(STORAGE_TEMPLATE.size), "landmarks": STORAGE_TEMPLATE.landmarks.tolist()},
            "faces": [face.__dict__ | {"landmarks": [list(p) for p in face.landmarks]} for face in self.faces],
            "no_face": self.no_face,
            "unreadable": self.unreadable,
        }
        with atomic_path(self.root / MANIFEST) as partial:
            partial.write_text(json.dumps(payload), encoding="utf-8")

    @staticmethod
    def open(root: str | Path) -> "FaceCache":
        root = Path(root)
        try:
            payload = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise DatasetError(f"no readable face cache at {root}: {error}") from None
        if payload.get("version") != MANIFEST_VERSION:
            raise DatasetError(f"face cache {root} has manifest version {payload.get('version')}, expected {MANIFEST_VERSION}")
        faces = [
            CachedFace(f["identity"], f["source"], f["crop"], tuple(tuple(p) for p in f["landmarks"]), f["score"])
            for f in payload["faces"]
        ]
        return FaceCache(root, payload["dataset"], faces, payload["no_face"], payload["unreadable"])


def absolute(path: str | Path) -> Path:
    """The absolute, normalised path without following symbolic links.

    A dataset may be a folder of links to images elsewhere: resolving each image would take it out
    of the dataset folder, so sources are named relative to the folder as the user gave it.
    """
    return Path(os.path.abspath(path))


def source_name(path: str | Path, dataset_root: Path) -> str:
    """An image's name in the manifest: its path relative to the dataset root, with '/' separators."""
    return absolute(path).relative_to(dataset_root).as_posix()


def default_cache_dir(dataset_root: str | Path) -> Path:
    """A per-dataset folder under the user cache: ``<name>-<hash of the absolute path>``."""
    dataset_root = absolute(dataset_root)
    digest = hashlib.sha1(str(dataset_root).encode()).hexdigest()[:8]
    return Path(platformdirs.user_cache_dir("face_recognition_ros")) / "faces" / f"{dataset_root.name}-{digest}"


def list_identity_images(dataset_root: str | Path, skipped: list[Path] | None = None) -> list[Path]:
    """Image files one folder deep (``root/<identity>/<image>``), sorted; an image is known by its content.

    Files in identity folders that are not images are added to ``skipped`` when a list is given.
    """
    dataset_root = Path(dataset_root)
    if not dataset_root.is_dir():
        raise DatasetError(f"dataset folder {dataset_root} does not exist")
    folders = sorted(p for p in dataset_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths: list[Path] = []
    for folder in folders:
        listing = find_images([folder], recursive=False)
        paths += listing.images
        if skipped is not None:
            skipped += [path for path, _ in listing.skipped]
    if not paths:
        raise DatasetError(f"no images found in {dataset_root} (expected <identity>/<image> folders)")
    return paths


def build_face_cache(
    dataset_root: str | Path,
    cache_dir: str | Path | None = None,
    paths: Iterable[Path] | None = None,
    detector=None,
    progress: bool = True,
    save_every: int = 500,
) -> FaceCache:
    """Detect, align (largest face per image) and store every image not yet in the cache.

    ``paths`` restricts the work to some images (e.g. those LFW pairs name); default all images of
    the dataset. Re-running resumes where a previous run stopped.
    """
    dataset_root = absolute(dataset_root)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir(dataset_root)
    root.mkdir(parents=True, exist_ok=True)
    cache = FaceCache.open(root) if (root / MANIFEST).is_file() else FaceCache(root, str(dataset_root))
    done = {face.source for face in cache.faces} | set(cache.no_face) | set(cache.unreadable)
    not_images: list[Path] = []
    todo = [Path(p) for p in (paths if paths is not None else list_identity_images(dataset_root, not_images))]
    new_not_images = [path for path in not_images if source_name(path, dataset_root) not in done]
    for path in new_not_images:
        # Listed, so that the summary counts it instead of the file vanishing without a word.
        log.warning("%s: not an image, left out of the dataset", path)
        cache.unreadable.append(source_name(path, dataset_root))
    todo = [p for p in todo if source_name(p, dataset_root) not in done]
    if not todo:
        if new_not_images:
            cache.save()
        return cache
    if detector is None:
        from ..detection import RetinaFaceDetector

        detector = RetinaFaceDetector(score_threshold=0.7, min_face_size=16)
    for count, path in enumerate(tqdm(todo, desc="detect+align", unit="img", disable=not progress), start=1):
        source = source_name(path, dataset_root)
        try:
            image = load_image(path)
        except ImageError:
            cache.unreadable.append(source)
            continue
        detections = detector.detect(image)
        if len(detections) == 0:
            cache.no_face.append(source)
            continue
        largest = detections.largest_index()
        landmarks = detections.landmarks[largest]
        crop = align_faces(image, landmarks[None], STORAGE_TEMPLATE)[0]
        crop_path = Path("crops") / Path(source).with_suffix(".jpg")
        (root / crop_path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / crop_path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        cache.faces.append(CachedFace(
            Path(source).parts[0], source, crop_path.as_posix(),
            tuple((float(x), float(y)) for x, y in landmarks), float(detections.scores[largest]),
        ))
        if count % save_every == 0:
            cache.save()
    cache.save()
    return cache


def packed_crops(cache: FaceCache, faces: Sequence[CachedFace], template: AlignmentTemplate,
                 chunk: int = 1024, progress: bool = False) -> np.ndarray:
    """(len(faces), H, W, 3) uint8 crops at ``template``, read from a packed array beside the cache.

    The first call for a template decodes every cached face once and stores them all, in manifest
    order, as ``packed-<W>x<H>-<template digest>.npy`` (with the list of sources in a ``.json``
    beside it); later calls read that file (memory-mapped) instead of decoding tens of thousands of
    JPEG crops again. A cache that gained or lost faces since gets a new packed file.
    """
    width, height = template.size
    stem = cache.root / f"packed-{width}x{height}-{template.digest()}"
    array_path, sources_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
    sources = [face.source for face in cache.faces]
    try:
        stored = json.loads(sources_path.read_text(encoding="utf-8")) if array_path.is_file() else None
    except (OSError, json.JSONDecodeError):
        stored = None
    if stored != sources:
        with atomic_path(array_path) as partial:
            out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(sources), height, width, 3))
            starts = range(0, len(sources), chunk)
            for start in tqdm(starts, desc=f"pack {width}x{height}", disable=not progress):
                out[start:start + chunk] = recrop(cache.load_storage_crops(cache.faces[start:start + chunk]), template)
            out.flush()
            del out
        with atomic_path(sources_path) as partial:
            partial.write_text(json.dumps(sources), encoding="utf-8")
    packed = np.load(array_path, mmap_mode="r")
    row = {source: i for i, source in enumerate(sources)}
    try:
        rows = np.array([row[face.source] for face in faces], np.int64)
    except KeyError as error:
        raise DatasetError(f"face {error} is not in the cache {cache.root}") from None
    out = np.empty((rows.size, height, width, 3), np.uint8)
    for start in range(0, rows.size, chunk):  # sorted reads of the memory map, in bounded pieces
        part = rows[start:start + chunk]
        order = np.argsort(part)
        out[start + order] = packed[part[order]]
    return out


def recrop(storage_crops: np.ndarray, template: AlignmentTemplate,
           source: AlignmentTemplate = STORAGE_TEMPLATE) -> np.ndarray:
    """Cut ``template``'s crops out of crops aligned to ``source`` (STORAGE_TEMPLATE unless given):
    a second, cheap similarity warp. Whatever ``template`` needs beyond ``source``'s edges repeats them."""
    matrix = estimate_similarity_transforms(source.landmarks, template.landmarks)
    width, height = template.size
    out = np.empty((storage_crops.shape[0], height, width, 3), np.uint8)
    for i, crop in enumerate(storage_crops):
        # INTER_AREA is not available for warps; linear after a mild downscale (256 -> 112 at 1.6x) is fine.
        cv2.warpAffine(crop, matrix, (width, height), dst=out[i], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out
