"""LFW helpers for training: a face cache of the pairs' images, quick verification, and the
CelebA/LFW identity overlap (CelebA folders are numbers, LFW folders are names).

Overlap method: ``dlib_resnet`` embeddings of every CelebA image and every image the LFW pairs use,
centred (the port's raw vectors share a large common component: unrelated faces have cosine ~0.88)
and re-normalised; then one mean vector per CelebA identity and per LFW person. A CelebA identity
whose mean lies within ``OVERLAP_THRESHOLD`` cosine of some LFW person's mean is left out of training.

Calibration on LFW itself (153 people with 6+ images, each split into two halves): the two half-means
of one person have cosine >= 0.686 (1st percentile 0.757, median 0.906), while a person's closest
other person reaches 0.757 at the 99th percentile (max 0.84). At 0.70 nearly every true overlap is
caught and look-alikes are caught too: the list is a conservative superset, not an identification.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..data_paths import data_root
from ..encoders import create_encoder
from ..encoders.base import FaceEncoder, l2_normalize
from ..evaluation.lfw import Pair, read_pairs, stratified_subfolds, ten_fold_verification
from .face_cache import FaceCache, absolute, build_face_cache, source_name
from .teacher import teacher_embeddings

#: cosine similarity of mean dlib embeddings above which two identities are called the same person
OVERLAP_THRESHOLD = 0.70


def lfw_pairs_cache(lfw_dir: Path, folds: Iterable[int] | None = None, cache_dir: Path | None = None) -> tuple[FaceCache, list[Pair]]:
    """Cache (detect + align once) every image the chosen folds' pairs use."""
    pairs = read_pairs(lfw_dir / "pairs.txt", lfw_dir)
    if folds is not None:
        wanted = set(folds)
        pairs = [pair for pair in pairs if pair.fold in wanted]
    paths = sorted({pair.path_a for pair in pairs} | {pair.path_b for pair in pairs})
    return build_face_cache(lfw_dir, cache_dir, paths=paths), pairs


def lfw_verification(encoder: FaceEncoder, cache: FaceCache, pairs: list[Pair], lfw_dir: Path) -> dict:
    """The LFW protocol (sub-folds when one fold) on cached crops; a pair with a face missing scores -1."""
    by_source = {face.source: face for face in cache.faces}
    root = absolute(lfw_dir)
    sources = sorted({source_name(p.path_a, root) for p in pairs} | {source_name(p.path_b, root) for p in pairs})
    present = [s for s in sources if s in by_source]
    vectors = teacher_embeddings(cache, [by_source[s] for s in present], encoder.name, encoder=encoder, progress=False)
    index = {s: i for i, s in enumerate(present)}
    similarities, same, folds = [], [], []
    for pair in pairs:
        a = index.get(source_name(pair.path_a, root))
        b = index.get(source_name(pair.path_b, root))
        similarities.append(-1.0 if a is None or b is None else float(vectors[a] @ vectors[b]))
        same.append(pair.same)
        folds.append(pair.fold)
    similarities, same, folds = np.array(similarities), np.array(same), np.array(folds)
    if np.unique(folds).size == 1:
        folds = stratified_subfolds(same)
    result = ten_fold_verification(similarities, same, folds)
    result["failed_detections"] = len(sources) - len(present)
    return result


def identity_means(cache: FaceCache, vectors: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Identities and the re-normalised mean of their (centred) embeddings."""
    identities = sorted({face.identity for face in cache.faces})
    row = {identity: i for i, identity in enumerate(identities)}
    sums = np.zeros((len(identities), vectors.shape[1]), np.float64)
    np.add.at(sums, [row[face.identity] for face in cache.faces], vectors)
    return identities, l2_normalize(sums)


def find_overlap(celeba: FaceCache, lfw: FaceCache, encoder: FaceEncoder,
                 threshold: float = OVERLAP_THRESHOLD) -> list[tuple[str, str, float]]:
    """(celeba identity, closest LFW person, cosine) for every CelebA identity above ``threshold``."""
    celeba_vectors = teacher_embeddings(celeba, celeba.faces, encoder.name, encoder=encoder)
    lfw_vectors = teacher_embeddings(lfw, lfw.faces, encoder.name, encoder=encoder)
    centre = np.concatenate([celeba_vectors, lfw_vectors]).mean(axis=0)
    celeba_ids, celeba_means = identity_means(celeba, l2_normalize(celeba_vectors - centre))
    lfw_ids, lfw_means = identity_means(lfw, l2_normalize(lfw_vectors - centre))
    similarity = celeba_means @ lfw_means.T
    best = similarity.argmax(axis=1)
    return sorted(
        ((celeba_ids[i], lfw_ids[j], float(similarity[i, j])) for i, j in enumerate(best) if similarity[i, j] >= threshold),
        key=lambda item: -item[2],
    )


def write_overlap_file(path: Path, matches: list[tuple[str, str, float]], threshold: float, lfw_people: int,
                       celeba_identities: int, nearest_below: list[tuple[str, str, float]]) -> None:
    lines = [
        "# CelebA-subset identities that are also LFW people: left out of training (data.exclude_file).",
        f"# Method: centred dlib_resnet embeddings, mean per CelebA identity ({celeba_identities}) vs. per LFW",
        f"# person ({lfw_people} people named in lfw/pairs.txt, all their pair images), cosine >= {threshold}.",
        "# Look-alikes reach this too: a conservative superset of the true overlap (see training/lfw_tools.py).",
        "# Generated by python -m face_recognition_ros.training.lfw_tools overlap",
        "# <celeba identity>  # <LFW person> <cosine>",
    ]
    lines += [f"{celeba}  # {person} {score:.3f}" for celeba, person, score in matches]
    lines.append("# Closest pairs below the threshold (kept in training):")
    lines += [f"# {celeba} ~ {person} {score:.3f}" for celeba, person, score in nearest_below]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m face_recognition_ros.training.lfw_tools")
    sub = parser.add_subparsers(dest="command", required=True)
    overlap = sub.add_parser("overlap", help="CelebA identities that are LFW people")
    overlap.add_argument("--out", type=Path, default=Path("config/train/lfw_overlap_celeba.txt"))
    overlap.add_argument("--threshold", type=float, default=OVERLAP_THRESHOLD)
    verify = sub.add_parser("verify", help="LFW verification of an encoder on cached crops")
    verify.add_argument("--encoder", default="efficientnet_b0")
    verify.add_argument("--weights")
    verify.add_argument("--folds", type=int, nargs="*", default=[1])
    args = parser.parse_args(argv)
    root = data_root()
    lfw_dir = root / "lfw"
    if args.command == "overlap":
        encoder = create_encoder("dlib_resnet")
        celeba = build_face_cache(root / "celeba-subset")
        lfw, _ = lfw_pairs_cache(lfw_dir)
        matches = find_overlap(celeba, lfw, encoder, 0.0)
        above = [m for m in matches if m[2] >= args.threshold]
        below = [m for m in matches if m[2] < args.threshold][:10]
        write_overlap_file(args.out, above, args.threshold, len(lfw.identities()), len(celeba.identities()), below)
        print(f"{len(above)} of {len(celeba.identities())} CelebA identities match an LFW person (cosine >= {args.threshold}); "
              f"written to {args.out}")
        return 0
    encoder = create_encoder(args.encoder, **({"weights": args.weights} if args.weights else {}))
    cache, pairs = lfw_pairs_cache(lfw_dir, args.folds)
    result = lfw_verification(encoder, cache, pairs, lfw_dir)
    print({k: v for k, v in result.items() if not isinstance(v, list)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
