"""LFW helpers for training: a face cache of the pairs' images, quick verification, the teachers'
(and their ensemble's) own LFW figures, and the overlap of training data with LFW's people
(CelebA folders are numbers, LFW folders are names, UTKFace images have no identity at all).

Overlap method: ``dlib_resnet`` embeddings of every CelebA image and every image the LFW pairs use,
centred (the port's raw vectors share a large common component: unrelated faces have cosine ~0.88)
and re-normalised; then one mean vector per CelebA identity and per LFW person. A CelebA identity
whose mean lies within ``OVERLAP_THRESHOLD`` cosine of some LFW person's mean is left out of training.

Calibration on LFW itself (153 people with 6+ images, each split into two halves): the two half-means
of one person have cosine >= 0.686 (1st percentile 0.757, median 0.906), while a person's closest
other person reaches 0.757 at the 99th percentile (max 0.84). At 0.70 nearly every true overlap is
caught and look-alikes are caught too: the list is a conservative superset, not an identification.

Identities with few images, and single unlabelled images, are noisier than a mean of many: their
threshold depends on the number of images ``k`` behind the query (``calibrate_overlap``). It is
calibrated on LFW the same way: for every LFW person with more than ``k`` images, ``k`` seeded
random images are the query and the mean of the person's *other* images the reference (a
leave-out mean); the threshold is the 1st percentile of those same-person cosines, so 99% of true
overlaps with a ``k``-image query reach it. How often a query reaches it against the closest
*other* LFW person is reported beside it (the look-alike rate: what the rule costs in data). An
unlabelled image is its own identity with ``k = 1``; a labelled identity with ``k`` images uses
the threshold of ``min(k, K)``, the largest ``k`` calibrated (lower thresholds for smaller ``k``, so
that is the conservative side).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data_paths import data_root
from ..encoders import create_encoder
from ..encoders.base import FaceEncoder, l2_normalize
from ..evaluation.lfw import Pair, read_pairs, stratified_subfolds, ten_fold_verification
from .face_cache import CachedFace, FaceCache, absolute, build_face_cache, source_name
from .teacher import TeacherSpec, combine_teachers, teacher_embeddings

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


def lfw_faces(cache: FaceCache, pairs: list[Pair], lfw_dir: Path) -> tuple[list[str], list[CachedFace]]:
    """Every source the pairs name, and the cached faces of those that have one."""
    by_source = {face.source: face for face in cache.faces}
    root = absolute(lfw_dir)
    sources = sorted({source_name(p.path_a, root) for p in pairs} | {source_name(p.path_b, root) for p in pairs})
    return sources, [by_source[s] for s in sources if s in by_source]


def lfw_verification(encoder: FaceEncoder, cache: FaceCache, pairs: list[Pair], lfw_dir: Path) -> dict:
    """The LFW protocol (sub-folds when one fold) on cached crops; a pair with a face missing scores -1."""
    sources, faces = lfw_faces(cache, pairs, lfw_dir)
    vectors = teacher_embeddings(cache, faces, encoder.name, encoder=encoder, progress=False)
    return verification_from_vectors(sources, faces, vectors, pairs, lfw_dir)


def verification_from_vectors(sources: list[str], faces: list[CachedFace], vectors: np.ndarray,
                              pairs: list[Pair], lfw_dir: Path) -> dict:
    """The LFW protocol on unit ``vectors`` of ``faces`` (the cached ones among ``sources``)."""
    root = absolute(lfw_dir)
    present = [face.source for face in faces]
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


def person_groups(cache: FaceCache) -> dict[str, np.ndarray]:
    groups: dict[str, list[int]] = {}
    for i, face in enumerate(cache.faces):
        groups.setdefault(face.identity, []).append(i)
    return {person: np.array(rows) for person, rows in sorted(groups.items())}


@dataclass
class SimilaritySpace:
    """Face vectors and how a set of faces is compared with another.

    ``normalise_means``: a set is the unit mean of its unit vectors and two sets score the cosine of
    their means (the dlib_resnet method of ``find_overlap``). Otherwise a set is the plain mean and
    two sets score the mean target similarity over their pairs, ``mean_a @ mean_b - offset``
    (``teacher.TeacherTargets``: the rescaled ensemble).
    """

    vectors: np.ndarray
    offset: float = 0.0
    normalise_means: bool = True

    def mean(self, rows: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.vectors[rows], np.float64).mean(axis=0)
        return mean / max(np.linalg.norm(mean), 1e-12) if self.normalise_means else mean

    def means(self, groups: Iterable[np.ndarray]) -> np.ndarray:
        return np.stack([self.mean(rows) for rows in groups])

    def scores(self, queries: np.ndarray, references: np.ndarray) -> np.ndarray:
        return queries @ references.T - (0.0 if self.normalise_means else self.offset)


def overlap_space(spec: TeacherSpec, caches: list[FaceCache]) -> list[SimilaritySpace]:
    """One space per cache, made together: a single teacher (dlib_resnet, the older lists) centred on
    the mean over all the caches' faces, unit means; several teachers as the rescaled ensemble
    (mean cosines over all the caches' faces), mean target similarities."""
    blocks = []
    for name in spec.names:
        encoder = spec.create(name)
        blocks.append([teacher_embeddings(cache, cache.faces, name, encoder=encoder) for cache in caches])
    sizes = [len(cache.faces) for cache in caches]
    splits = np.cumsum(sizes)[:-1]
    if len(spec.names) == 1:
        vectors = np.concatenate(blocks[0])
        unit = l2_normalize(vectors - vectors.mean(axis=0))
        return [SimilaritySpace(part) for part in np.split(unit, splits)]
    targets = combine_teachers([np.concatenate(per_cache) for per_cache in blocks], spec.normalised_mix(), "rescaled")
    return [SimilaritySpace(part, targets.offset, normalise_means=False) for part in np.split(targets.vectors, splits)]


def calibrate_overlap(lfw: FaceCache, space: SimilaritySpace, counts: Iterable[int] = (1, 2, 3, 4, 5),
                      quantile: float = 0.05, seed: int = 0) -> list[dict]:
    """Per query size ``k``: the threshold that 1 - ``quantile`` of same-person queries reach.

    For each LFW person with more than ``k`` images, ``k`` seeded random images (their mean) are
    compared with the mean of the person's other images; ``lookalike_rate`` is the fraction of those
    queries whose closest *other* LFW person (full mean) reaches the threshold too: an estimate of
    the share of faces of people who are not in LFW that the threshold excludes as look-alikes.
    """
    groups = person_groups(lfw)
    people = list(groups)
    means = space.means(groups.values())
    rng = np.random.default_rng(seed)
    rows_out = []
    for k in counts:
        same, other = [], []
        for column, person in enumerate(people):
            rows = groups[person]
            if rows.size <= k:
                continue
            picked = rng.permutation(rows)
            query = space.mean(picked[:k])
            same.append(float(space.scores(query[None], space.mean(picked[k:])[None])[0, 0]))
            scores = space.scores(query[None], means)[0]
            scores[column] = -np.inf
            other.append(float(scores.max()))
        same, other = np.array(same), np.array(other)
        threshold = float(np.quantile(same, quantile))
        rows_out.append({
            "k": int(k), "people": int(same.size), "threshold": round(threshold, 4),
            "recall": round(float(np.mean(same >= threshold)), 4),
            "same_median": round(float(np.median(same)), 4),
            "closest_other_median": round(float(np.median(other)), 4),
            "lookalike_rate": round(float(np.mean(other >= threshold)), 4),
        })
    return rows_out


def threshold_for(calibration: list[dict], count: int) -> float:
    """The calibrated threshold of a query of ``count`` images (the largest k calibrated up to it)."""
    usable = [row for row in calibration if row["k"] <= count] or calibration[:1]
    return float(max(usable, key=lambda row: row["k"])["threshold"])


def find_overlap_by_count(dataset: FaceCache, lfw: FaceCache, spec: TeacherSpec, labelled: bool,
                          counts: Iterable[int] = (1, 2, 3, 4, 5), quantile: float = 0.05
                          ) -> tuple[list[tuple[str, str, float, int]], list[dict], list[tuple[str, str, float, int]]]:
    """Identities (labelled) or image sources (unlabelled) of ``dataset`` that may be LFW people.

    Returns (matches, calibration, nearest below): each match is (identity or source, closest LFW
    person, score, k), found at the threshold ``calibrate_overlap`` gives for a query of k images.
    """
    data_space, lfw_space = overlap_space(spec, [dataset, lfw])
    calibration = calibrate_overlap(lfw, lfw_space, counts, quantile)
    lfw_groups = person_groups(lfw)
    lfw_ids, lfw_means = list(lfw_groups), lfw_space.means(lfw_groups.values())
    if labelled:
        groups = person_groups(dataset)
        names, images = list(groups), [int(rows.size) for rows in groups.values()]
        queries = data_space.means(groups.values())
    else:
        names, images = [face.source for face in dataset.faces], [1] * len(dataset.faces)
        queries = np.asarray(data_space.vectors, np.float64)
        if data_space.normalise_means:
            queries = l2_normalize(queries).astype(np.float64)
    matches, below = [], []
    for start in range(0, len(names), 4096):
        similarity = data_space.scores(queries[start:start + 4096], lfw_means)
        best = similarity.argmax(axis=1)
        for offset, column in enumerate(best):
            i = start + offset
            score, k = float(similarity[offset, column]), images[i]
            entry = (names[i], lfw_ids[column], score, k)
            (matches if score >= threshold_for(calibration, k) else below).append(entry)
    matches.sort(key=lambda item: -item[2])
    below.sort(key=lambda item: threshold_for(calibration, item[3]) - item[2])
    return matches, calibration, below[:10]


def write_count_overlap_file(path: Path, matches: list[tuple[str, str, float, int]], calibration: list[dict],
                             dataset: FaceCache, lfw_people: int, labelled: bool, method: str,
                             nearest_below: list[tuple[str, str, float, int]], command: str) -> None:
    unit = "identities" if labelled else "images"
    total = len(dataset.identities()) if labelled else len(dataset.faces)
    lines = [
        f"# {Path(dataset.dataset).name} {unit} that may be LFW people: left out of training (exclude_file).",
        f"# Method: {method}; each {'identity (its images)' if labelled else 'image (its own identity)'}"
        f" ({total} {unit}) vs. each LFW person",
        f"# ({lfw_people} people named in lfw/pairs.txt, all their pair images); excluded at score >= T(k), k = images behind",
        "# the query, T(k) calibrated on LFW: the score that a share `recall` of k-image queries reaches against the same",
        "# person's other images. Look-alikes reach T(k) too (lookalike_rate, against the closest other LFW person).",
        "# Calibration: " + "; ".join(f"k={r['k']}: T={r['threshold']:.3f} (recall {r['recall']:.0%} of {r['people']} people, "
                                        f"look-alike rate {r['lookalike_rate']:.1%})" for r in calibration),
        f"# {len(matches)} of {total} {unit} excluded.",
        f"# Generated by {command}",
        f"# <{'identity' if labelled else 'source'}>  # <closest LFW person> <score> k=<images>",
    ]
    lines += [f"{name}  # {person} {score:.3f} k={k}" for name, person, score, k in matches]
    lines.append("# Closest to their threshold, below it (kept in training):")
    lines += [f"# {name} ~ {person} {score:.3f} k={k}" for name, person, score, k in nearest_below]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def teacher_lfw(spec: TeacherSpec, cache: FaceCache, pairs: list[Pair], lfw_dir: Path) -> dict:
    """LFW verification of every teacher of ``spec`` and of their ensemble, from cached embeddings.

    Each teacher raw and centred on LFW's own mean (label-free), and the ensemble both ways the
    student can be taught it (``combine_teachers``: rescaled or centred similarities, with the mean
    cosine or the mean vector taken over LFW's images, no labels used).
    """
    sources, faces = lfw_faces(cache, pairs, lfw_dir)
    blocks, results = [], {}
    for name in spec.names:
        vectors = teacher_embeddings(cache, faces, name, encoder=spec.create(name), progress=True)
        blocks.append(vectors)
        results[f"{name} (raw)"] = verification_from_vectors(sources, faces, l2_normalize(vectors), pairs, lfw_dir)
        centred = combine_teachers([vectors], [1.0], "centred").vectors
        results[f"{name} (centred)"] = verification_from_vectors(sources, faces, centred, pairs, lfw_dir)
    if len(spec.names) > 1:
        mix = spec.normalised_mix()
        label = " + ".join(f"{w:.2f} {n}" for n, w in zip(spec.names, mix))
        for similarity in ("rescaled", "centred"):
            # The offset of rescaled targets shifts every score alike: the threshold moves, accuracy does not.
            targets = combine_teachers(blocks, mix, similarity)
            results[f"ensemble {label} ({similarity})"] = verification_from_vectors(sources, faces, targets.vectors,
                                                                                  pairs, lfw_dir)
    return results


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
    overlap = sub.add_parser("overlap", help="training identities (or unlabelled images) that are LFW people")
    overlap.add_argument("--out", type=Path, default=Path("config/train/lfw_overlap_celeba.txt"))
    overlap.add_argument("--threshold", type=float, default=OVERLAP_THRESHOLD,
                         help="celeba-subset method (identity means, one threshold); unused with --per-count")
    overlap.add_argument("--dataset", type=Path, help="dataset folder (default: celeba-subset under the data root)")
    overlap.add_argument("--per-count", action="store_true",
                         help="threshold by the number of images behind each query, calibrated on LFW (few-image identities)")
    overlap.add_argument("--unlabelled", action="store_true",
                         help="every image is its own identity (implies --per-count); the list names image sources")
    overlap.add_argument("--quantile", type=float, default=0.05,
                         help="--per-count: share of same-person queries below T(k) (1 - recall)")
    overlap.add_argument("--teacher", nargs="+", default=["dlib_resnet"], metavar="ENCODER",
                         help="--per-count: embedding(s); several: their rescaled ensemble (see teacher.combine_teachers)")
    overlap.add_argument("--teacher-weights", nargs="*", default=[], metavar="NAME=PATH")
    teachers = sub.add_parser("teacher-lfw", help="LFW verification of teachers and their ensemble, from cached embeddings")
    teachers.add_argument("--teacher", nargs="+", default=["dlib_resnet"], metavar="ENCODER")
    teachers.add_argument("--teacher-weights", nargs="*", default=[], metavar="NAME=PATH")
    teachers.add_argument("--mix", type=float, nargs="*", metavar="W", help="ensemble weights (default equal)")
    teachers.add_argument("--folds", type=int, nargs="*", default=list(range(1, 11)))
    verify = sub.add_parser("verify", help="LFW verification of an encoder on cached crops")
    verify.add_argument("--encoder", default="efficientnet_b0")
    verify.add_argument("--weights")
    verify.add_argument("--folds", type=int, nargs="*", default=[1])
    args = parser.parse_args(argv)
    root = data_root()
    lfw_dir = root / "lfw"
    if args.command == "teacher-lfw":
        weights = dict(item.split("=", 1) for item in args.teacher_weights)
        spec = TeacherSpec(args.teacher, weights, args.mix or None)
        cache, pairs = lfw_pairs_cache(lfw_dir, args.folds)
        for name, result in teacher_lfw(spec, cache, pairs, lfw_dir).items():
            print(f"{name}: {100 * result['accuracy']:.2f}% +- {100 * result['accuracy_std']:.2f} "
                  f"(AUC {result['roc_auc']:.4f}, TAR@FAR=1e-3 {result['tar_at_far_1e-3']:.3f}, "
                  f"failed detections {result['failed_detections']})")
        return 0
    if args.command == "overlap" and (args.per_count or args.unlabelled):
        spec = TeacherSpec(args.teacher, dict(item.split("=", 1) for item in args.teacher_weights))
        dataset = build_face_cache(args.dataset or root / "celeba-subset")
        lfw, _ = lfw_pairs_cache(lfw_dir)
        labelled = not args.unlabelled
        matches, calibration, below = find_overlap_by_count(dataset, lfw, spec, labelled, quantile=args.quantile)
        command = "python -m face_recognition_ros.training.lfw_tools " + " ".join(sys.argv[1:] if argv is None else argv)
        if len(spec.names) == 1:
            method = f"centred {spec.names[0]} embeddings, cosine of unit means"
        else:
            method = (f"rescaled {' + '.join(spec.names)} ensemble (equal weights), mean target similarity of the pairs "
                      "between the two sets (teacher.combine_teachers)")
        write_count_overlap_file(args.out, matches, calibration, dataset, len(lfw.identities()), labelled,
                                 method, below, command)
        for row in calibration:
            print(row)
        total = len(dataset.identities()) if labelled else len(dataset.faces)
        print(f"{len(matches)} of {total} {'identities' if labelled else 'images'} of {dataset.dataset} may be LFW people; "
              f"written to {args.out}")
        return 0
    if args.command == "overlap":
        encoder = create_encoder("dlib_resnet")
        celeba = build_face_cache(args.dataset or root / "celeba-subset")
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
