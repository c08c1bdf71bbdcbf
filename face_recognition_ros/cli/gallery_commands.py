"""``enroll`` and ``gallery list|rename|forget|reembed|copy``."""

from __future__ import annotations

import argparse
import sys

from ..errors import ImageError, NoFaceError
from ..image_files import find_images, load_image
from .common import add_gallery_option, add_model_options, emit_json, open_gallery, open_gallery_setting, pipeline_from_args


def add_parsers(subparsers) -> None:
    enroll = subparsers.add_parser(
        "enroll",
        help="add a person (or more samples of a person) from images or folders",
        description="Enroll NAME from the largest face of each image (folders are searched recursively); "
        "an image where another face is about as large is skipped, since which one is NAME would be a guess. "
        "All samples are written in one transaction: a failure leaves the gallery unchanged.",
    )
    enroll.add_argument("name", help="the person's name (1-64 characters, no control characters)")
    enroll.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    add_model_options(enroll)
    enroll.add_argument("--json", action="store_true", help="machine-readable output")
    enroll.set_defaults(func=run_enroll)

    gallery = subparsers.add_parser("gallery", help="inspect and edit the gallery")
    commands = gallery.add_subparsers(dest="gallery_command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", help="list enrolled people")
    rename = commands.add_parser("rename", help="rename a person")
    rename.add_argument("person", help="current name or person id")
    rename.add_argument("new_name")
    forget = commands.add_parser("forget", help="remove a person with every sample and crop")
    forget.add_argument("person", help="name or person id")
    reembed = commands.add_parser("reembed", help="re-embed stored crops with the active encoder")
    add_model_options(reembed, gallery=False)
    for sub in (listing, rename, forget, reembed):
        add_gallery_option(sub)
        sub.add_argument("--json", action="store_true", help="machine-readable output")
    copy = commands.add_parser(
        "copy", help="copy a gallery between SQLite and PostgreSQL (either way), and check the copy",
        description="Copy every person and sample (embeddings, encoder identities, crops, ids) from SRC to DST in "
        "one transaction, then read DST back and compare it with what was read from SRC. SRC and DST are each a "
        "file path (SQLite) or a postgresql:// URL. DST is created when missing; one that holds anyone is refused "
        "unless --replace.")
    copy.add_argument("source", metavar="SRC", help="the gallery to copy: a file or a postgresql:// URL")
    copy.add_argument("destination", metavar="DST", help="where to copy it: a file or a postgresql:// URL")
    copy.add_argument("--replace", action="store_true",
                      help="forget everyone in DST first (otherwise a non-empty DST is refused)")
    copy.add_argument("--json", action="store_true", help="machine-readable output")
    copy.set_defaults(func=run_copy)
    listing.set_defaults(func=run_list)
    rename.set_defaults(func=run_rename)
    forget.set_defaults(func=run_forget)
    reembed.set_defaults(func=run_reembed)


def _person_ref(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def run_enroll(args: argparse.Namespace) -> int:
    from ..gallery import validate_name

    name = validate_name(args.name)  # fail before loading any model
    listing = find_images(args.paths)
    if not listing.images:
        raise ImageError(f"no image files in {' '.join(args.paths)}")
    images, sources = [], []
    for path in listing.images:
        images.append(load_image(path))  # any unreadable file aborts before the gallery is touched
        sources.append(str(path))
    pipeline = pipeline_from_args(args)
    try:
        result = pipeline.enroll_images(name, images, sources)
    except NoFaceError as error:
        raise NoFaceError(f"{name}: {error}; nothing was enrolled") from None
    result.skipped += [f"{path}: {reason}" for path, reason in listing.skipped]
    if args.json:
        emit_json({"name": name, "person_id": result.person_id, "created": result.created,
                   "samples_added": result.samples_added, "skipped": result.skipped, "warnings": result.warnings})
    else:
        verb = "enrolled" if result.created else "added samples to"
        print(f"{verb} {name} (id {result.person_id}): {result.samples_added} sample(s)")
        for reason in result.skipped:
            print(f"  skipped {reason}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    with open_gallery(args, create=False) as gallery:
        people = gallery.list_people()
    if args.json:
        emit_json({"people": [{"person_id": p.id, "name": p.name, "created": p.created,
                               "samples": p.num_samples} for p in people]})
    elif not people:
        print("the gallery is empty")
    else:
        for person in people:
            print(f"{person.id:5d}  {person.name}  ({person.num_samples} samples)")
    return 0


def run_rename(args: argparse.Namespace) -> int:
    with open_gallery(args, create=False) as gallery:
        from ..gallery import validate_name

        new_name = validate_name(args.new_name)
        gallery.rename(_person_ref(args.person), new_name)
        person = gallery.get_person(new_name)
    if args.json:
        emit_json({"person_id": person.id, "name": person.name})
    else:
        print(f"renamed {args.person} to {person.name}")
    return 0


def run_forget(args: argparse.Namespace) -> int:
    with open_gallery(args, create=False) as gallery:
        removed = gallery.forget(_person_ref(args.person))
    if args.json:
        emit_json({"person": args.person, "samples_removed": removed})
    else:
        print(f"forgot {args.person} ({removed} samples removed)")
    return 0


def run_reembed(args: argparse.Namespace) -> int:
    gallery = open_gallery(args, create=False)
    with gallery:
        from ..pipeline import PipelineConfig, RecognitionPipeline

        config = PipelineConfig(encoder=args.encoder, encoder_weights=args.encoder_weights, backend=args.backend,
                                device=args.device, precision=args.precision, auto_reembed=False,
                                test_time_flip=args.test_time_flip)
        pipeline = RecognitionPipeline(config, gallery=gallery)
        changed = pipeline.reembed_gallery(progress=not args.json)
    if args.json:
        emit_json({"encoder": pipeline.encoder.identity, "samples_reembedded": changed})
    else:
        print(f"re-embedded {changed} sample(s) with {pipeline.encoder.identity}")
    return 0


def run_copy(args: argparse.Namespace) -> int:
    from ..gallery_copy import copy_gallery

    with open_gallery_setting(args.source, create=False) as source, \
            open_gallery_setting(args.destination, create=True) as destination:
        report = copy_gallery(source, destination, replace=args.replace)
        where = (source.location, destination.location)
    if args.json:
        emit_json({"source": where[0], "destination": where[1], "people": report.people, "samples": report.samples,
                   "verified": True, "sha256": report.digests})
    else:
        print(f"copied {report.people} people and {report.samples} samples from {where[0]} to {where[1]}")
        print("verified: people, samples, embeddings and crops are identical in both")
    return 0
