"""``face-recognition-ros train`` and ``export-checkpoint``: command-line entry points of the training pipeline."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

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
    parser.add_argument("--max-epochs", type=int, metavar="N", help="override trainer.max_epochs")
    parser.add_argument("--max-time", metavar="DD:HH:MM:SS", help="override trainer.max_time")
    parser.add_argument("--resume", metavar="CKPT|auto", help="continue a run from its Lightning checkpoint (checkpoints/last.ckpt), or 'auto': "
                        "from the run's own last.ckpt when there is one, else start it")
    parser.add_argument("--init-from", metavar="CKPT", help="start from this checkpoint's network (override model.init_from)")
    parser.add_argument("--out", metavar="DIR", help="output folder of runs (override out_dir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override any recipe key, e.g. --set data.input_size=96 --set trainer.num_threads=2 "
                        "(VALUE is read as YAML; repeatable)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_train)
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
    result = train(config, resume=args.resume, progress=not args.no_progress)
    print(json.dumps({"run_dir": str(result.run_dir), "best_checkpoint": str(result.best_checkpoint),
                      "best_val_acc": result.best_score, "exported": result.exported}, indent=2))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from .deploy import export_encoder

    print(json.dumps(export_encoder(args.checkpoint, Path(args.out), half=args.half or None), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="face-recognition-ros-train", description="face encoder training")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_parser(subparsers)
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
