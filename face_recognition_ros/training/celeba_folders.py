"""Lay out flat CelebA images as a folder-per-identity training dataset.

CelebA ships its photos in one folder (``000001.jpg`` ...) and the identities in a separate text
file, ``identity_CelebA.txt`` (``<image> <identity>`` per line, for all 202,599 images). Training
reads folder-per-identity datasets, so this writes ``OUT/<identity>/<image>``: symbolic links to
the originals by default (nothing is duplicated; the face cache follows links), or copies.

Images that another dataset already holds under the same name (``--skip``: ``celeba-subset``
uses CelebA's own numbering) are left out, so that no photo is in two datasets at once; images
the identity file does not list are left out and counted.

    python -m face_recognition_ros.training.celeba_folders --images celebA/ \\
        --identities identity_CelebA.txt --skip ../shared/data/celeba-subset --out $DATA/celeba10k
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..image_files import find_images
from .face_cache import DatasetError


@dataclass
class LayoutReport:
    """What ``lay_out`` did: images placed per identity, and what it left out and why."""

    placed: dict[str, int] = field(default_factory=dict)  # identity -> images
    in_skipped_dataset: int = 0
    without_identity: list[str] = field(default_factory=list)
    not_images: int = 0

    @property
    def images(self) -> int:
        return sum(self.placed.values())

    def summary(self) -> str:
        return (f"{self.images} images of {len(self.placed)} identities; left out: {self.in_skipped_dataset} already in "
                f"a --skip dataset, {len(self.without_identity)} without an identity, {self.not_images} not images")


def read_identity_file(path: Path) -> dict[str, str]:
    """``image name -> identity`` from an ``identity_CelebA.txt``-style file; a malformed line is an error.

    A first line of two words that is no entry (``image identity``) is taken as a column header.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read the identity file {path}: {error}") from None
    identities: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        if not identities and number == 1 and len(fields) == 2 and not fields[1].isdigit():
            continue  # a column header ("image identity"), as some copies of the file have
        if len(fields) != 2 or not fields[1].isdigit() or "/" in fields[0] or fields[0] in (".", ".."):
            raise DatasetError(f"{path}, line {number}: expected '<image file> <identity number>', got {line.strip()!r}")
        image, identity = fields
        if identities.get(image, identity) != identity:
            raise DatasetError(f"{path}, line {number}: {image} is given two identities ({identities[image]} and {identity})")
        identities[image] = identity
    if not identities:
        raise DatasetError(f"the identity file {path} lists no images")
    return identities


def lay_out(images: Path, identities: dict[str, str], out: Path, skip: list[Path] | None = None,
            copy: bool = False) -> LayoutReport:
    """Write ``out/<identity>/<image>`` for every image of ``images`` with an identity (see the module)."""
    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise DatasetError(f"--images {images} is no folder")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DatasetError(f"--out {out} exists and is not an empty folder; give a new one")
    skipped_names = set()
    for folder in skip or []:
        if not Path(folder).is_dir():
            raise DatasetError(f"--skip {folder} is no folder")
        skipped_names.update(path.name for path in Path(folder).rglob("*") if path.is_file())
    listing = find_images([images], recursive=False)
    report = LayoutReport(not_images=len(listing.skipped))
    for path in listing.images:
        if path.name in skipped_names:
            report.in_skipped_dataset += 1
            continue
        identity = identities.get(path.name)
        if identity is None:
            report.without_identity.append(path.name)
            continue
        target = out / identity / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if copy:
            shutil.copy2(path, target)
        else:
            os.symlink(path.resolve(), target)
        report.placed[identity] = report.placed.get(identity, 0) + 1
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m face_recognition_ros.training.celeba_folders",
                                     description="Flat CelebA images + identity_CelebA.txt -> OUT/<identity>/<image>.")
    parser.add_argument("--images", type=Path, required=True, help="folder of CelebA images (000001.jpg ...)")
    parser.add_argument("--identities", type=Path, required=True, help="identity_CelebA.txt")
    parser.add_argument("--out", type=Path, required=True, help="new folder for the dataset")
    parser.add_argument("--skip", type=Path, nargs="*", default=[],
                        help="datasets whose image names are left out (celeba-subset: the same numbering)")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of linking to them")
    args = parser.parse_args(argv)
    try:
        report = lay_out(args.images, read_identity_file(args.identities), args.out, args.skip, args.copy)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a folder without write permission: what was written stays
        print(f"error: cannot write into {args.out}: {error}", file=sys.stderr)
        return 2
    print(f"{args.out}: {report.summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
