"""Sub-commands whose code lives with its own area: train, pack-faces, export-checkpoint, export, bag, video-to-bag."""

from __future__ import annotations


def add_parsers(subparsers) -> None:
    # Each area exposes add_*_parser(subparsers) and registers its own func.
    from ..training import cli as training_cli
    from .. import engine_export
    from . import bag_commands

    training_cli.add_train_parser(subparsers)
    training_cli.add_pack_parser(subparsers)
    training_cli.add_export_parser(subparsers)
    engine_export.add_export_parser(subparsers)
    bag_commands.add_parsers(subparsers)
