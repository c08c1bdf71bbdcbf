"""``face-recognition-ros train``, ``pack-faces`` and ``export-checkpoint``: command-line entry points of the
training pipeline."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..cli.common import bounded
from ..errors import FaceRecognitionError


def add_train_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train", help="train an encoder from a recipe (config/train/*.yaml)",
        description="Train the EfficientNet-B0 face encoder with a YAML recipe (CPU, GPU or DDP per its trainer "
                    "section); the best checkpoint is exported as a deploy checkpoint beside the run.",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="recipe YAML (config/train/...)")
    parser.add_argument("--data", metavar="DIR", help="folder-per-identity dataset (overrides data.root, and "
                        "replaces a recipe's data.datasets by this one labelled dataset)")
    parser.add_argument("--max-epochs", type=bounded(int, 1), metavar="N", help="override trainer.max_epochs")
    parser.add_argument("--max-time", metavar="DD:HH:MM:SS", help="override trainer.max_time")
    parser.add_argument("--resume", metavar="CKPT|auto", help="continue a run from its Lightning checkpoint (checkpoints/last.ckpt), or 'auto': "
                        "from the run's own last.ckpt when there is one, else start it")
    parser.add_argument("--init-from", metavar="CKPT", help="start from this checkpoint's network (override model.init_from)")
    parser.add_argument("--out", metavar="DIR", help="output folder of runs (override out_dir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override any recipe key, e.g. --set data.input_size=96 --set trainer.num_threads=2 "
                        "(VALUE is read as YAML; repeatable)")
    parser.add_argument("--pack", metavar="DIR", help="train on a face pack (pack-faces) instead of the recipe's datasets, "
                        "augmenting on the accelerator; no dataset folder or teacher weights needed")
    parser.add_argument("--minutes", type=bounded(float, 0.0, open_low=True), metavar="M", help="size the run to about M minutes on this machine: "
                        "measures steps per second first, then sets trainer.max_epochs (and a max_time guard)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_train)
    return parser


def add_pack_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "pack-faces", help="pack a recipe's training faces and teacher targets for a GPU machine",
        description="Select, align and (when the recipe distils) run the teachers on the recipe's datasets, as train "
                    "does, then write the faces at the input size as WebP, int8 teacher targets and the validation "
                    "pairs in parts of at most --part-mib each (see README, 'Training on a GPU').",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="recipe YAML whose data and teachers to pack")
    parser.add_argument("--out", required=True, metavar="DIR", help="new folder for the pack")
    parser.add_argument("--quality", type=bounded(int, 1, 100), default=85, metavar="Q", help="WebP quality 1..100 (default 85)")
    parser.add_argument("--part-mib", type=bounded(float, 0.0, open_low=True), default=40.0, metavar="MIB",
                        help="largest part file, MiB (default 40: one part per 64 MiB device call beside the repository)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a recipe key (as for train)")
    parser.set_defaults(func=run_pack)
    return parser


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export-checkpoint", help="turn a training checkpoint into the efficientnet_b0 deploy checkpoint",
        description="Calibrate the threshold on the run's validation pairs and write the deploy checkpoint.",
    )
    parser.add_argument("checkpoint", help="Lightning checkpoint of a training run")
    parser.add_argument("--out", required=True, metavar="FILE", help="deploy checkpoint to write (.pt; a .json goes beside it)")
    parser.add_argument("--half", action="store_true", help="store the weights as fp16")
    parser.set_defaults(func=run_export)
    return parser


def run_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runner import train

    # A run takes hours: what it trains on (datasets, counts, caches, initialisation) is always reported.
    logging.getLogger("face_recognition_ros.training").setLevel(logging.INFO)
    config = load_config(args.config, overrides=args.overrides)
    if args.data:
        config.data.root = args.data
        if config.data.datasets:
            logging.getLogger(__name__).warning("--data %s replaces the recipe's %d datasets", args.data,
                                                len(config.data.datasets))
            config.data.datasets = []
    if args.max_epochs is not None:
        config.trainer.max_epochs = args.max_epochs
    if args.max_time:
        config.trainer.max_time = args.max_time
    if args.init_from:
        config.model.init_from = args.init_from
    if args.out:
        config.out_dir = args.out
    datamodule = None
    if args.pack:
        from .packed_data import PackedFaceDataModule

        datamodule = PackedFaceDataModule(args.pack, config.data, config.seed)
    result = train(config, resume=args.resume, datamodule=datamodule, progress=not args.no_progress,
                   minutes=args.minutes)
    print(json.dumps({"run_dir": str(result.run_dir), "best_checkpoint": str(result.best_checkpoint),
                      "best_val_acc": result.best_score, "exported": result.exported}, indent=2))
    return 0


def run_pack(args: argparse.Namespace) -> int:
    from .config import load_config
    from .data import FaceDataModule
    from .face_pack import write_pack
    from .runner import check_data_sources, recipe_teacher

    logging.getLogger("face_recognition_ros.training").setLevel(logging.INFO)
    config = load_config(args.config, overrides=args.overrides)
    teacher = recipe_teacher(config)
    datamodule = FaceDataModule(config.data, config.seed, teacher=teacher)
    check_data_sources(datamodule, teacher)
    datamodule.setup()
    meta = write_pack(datamodule.train, datamodule.val, datamodule.val_pairs, args.out, recipe=config.name,
                      quality=args.quality, part_mib=args.part_mib)
    print(json.dumps({"pack": str(args.out), "faces": meta["faces"], "labelled_faces": meta["labelled_faces"],
                      "val_faces": meta["val_faces"], "teacher_dim": meta["teacher_dim"],
                      "parts": [{"file": part["file"], "faces": part["count"], "MiB": round(part["bytes"] / 2**20, 1)}
                                for part in meta["parts"] + [meta["validation"] | {"count": meta["val_faces"]}]]},
                     indent=2))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .deploy import export_encoder

    print(json.dumps(export_encoder(args.checkpoint, Path(args.out), half=args.half or None), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="face-recognition-ros-train", description="face encoder training")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
    add_pack_parser(subparsers)
    add_export_parser(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except FaceRecognitionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
