"""``cohort build``: the strangers an encoder's open-set operating point is calibrated with.

A cohort is embeddings (never images) of faces of people nobody enrolls, one vector per person:
by default the LFW people with exactly one photo, who take part in no LFW identification protocol.
The shipped cohorts were built with this command; one is needed again after retraining an encoder
(its identity changes), and for an encoder that ships without one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..data_paths import data_root
from ..errors import FaceRecognitionError
from .common import add_model_options, emit_json, scratch_pipeline


def add_parser(subparsers) -> None:
    cohort = subparsers.add_parser("cohort", help="build the stranger cohort of an encoder (open-set calibration)")
    commands = cohort.add_subparsers(dest="cohort_command", required=True, metavar="COMMAND")
    build = commands.add_parser(
        "build", help="embed one face per person of a folder-per-identity dataset",
        description="Embeds the largest face of one photo per identity folder (by default only folders "
        "holding exactly one photo, as LFW's 4,069 people with one image) and writes them as the encoder's cohort.",
    )
    build.add_argument("--data", help="folder-per-identity dataset (default: LFW in the data folder)")
    build.add_argument("--every-person", action="store_true",
                       help="one photo of every identity folder, not only of those with a single photo")
    build.add_argument("--out", metavar="FILE",
                       help="where to write it (default: the user's data dir, where the encoder finds it)")
    build.add_argument("--json", action="store_true")
    add_model_options(build, gallery=False)
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..evaluation.embedding_cache import EmbeddingCache, cached_embedder
    from ..image_files import find_images, load_image
    from ..openset import Cohort, cohort_path, save_cohort, user_cohort_dir
    from .eval_commands import identification_settings

    data = Path(args.data) if args.data else data_root() / "lfw"
    if not data.is_dir():
        raise FaceRecognitionError(f"{data}: no such dataset folder (pass --data)")
    photos = []
    for folder in sorted(p for p in data.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = find_images([folder], recursive=False).images
        if images and (args.every_person or len(images) == 1):
            photos.append(images[0])
    if len(photos) < 50:
        raise FaceRecognitionError(f"{data}: only {len(photos)} people to build a cohort from (at least 50 needed)")
    pipeline = scratch_pipeline(args, matches=False)

    def embed(path: Path) -> np.ndarray | None:
        batch = pipeline.analyze(load_image(path))
        return None if len(batch) == 0 else batch.embeddings[batch.detections.largest_index()]

    cache = EmbeddingCache(identification_settings(pipeline))
    embedder = cached_embedder(embed, cache)
    vectors = [v for v in (embedder(p) for p in tqdm(photos, desc="cohort", unit="face", disable=args.json or None,
                                                          file=sys.stderr)) if v is not None]
    cache.save()
    identity = pipeline.encoder.identity
    cohort = Cohort(np.stack(vectors).astype(np.float32), identity,
                    f"{data.name}: one face each of {len(vectors)} people"
                    + ("" if args.every_person else " with a single photo"))
    out = Path(args.out) if args.out else cohort_path(identity, user_cohort_dir())
    save_cohort(cohort, out)
    report = {"cohort": str(out), "encoder": identity, "faces": len(vectors), "people": len(photos),
              "no_face": len(photos) - len(vectors)}
    if args.json:
        emit_json(report)
    else:
        print(f"wrote {out}: {len(vectors)} faces ({len(photos) - len(vectors)} photos without a face) for {identity}")
    return 0
