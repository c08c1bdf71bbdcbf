"""``demo [FOLDER]``: the main job end to end, without ROS or a camera.

Enrolls the people of a folder, recognises its videos with tracking, prints who was seen when, and
writes each video annotated. The gallery is the demo's own (``OUT/demo-gallery.db``), so the
user's gallery is never touched.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import cv2

from ..data_paths import data_root
from ..errors import FaceRecognitionError, ImageError, NoFaceError
from ..image_files import find_images, is_image_file, load_image
from .common import add_model_options, emit_json, pipeline_from_args

GALLERY_NAME = "demo-gallery.db"
# "obama2.jpg", "obama-480p.jpg", "ada_3.png": more photos of one person, numbered or sized
_SAMPLE_SUFFIX = re.compile(r"[-_ ]?\d+p?$")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="enroll the people of a folder, recognise its videos, print who was seen when",
        description="People: FOLDER/people/<name>/<images> when that folder exists, else every image directly in "
        "FOLDER, named after its file (obama.jpg and obama2.jpg are two photos of 'Obama'); images without "
        "exactly one face are skipped. Videos: every video directly in FOLDER, recognised with tracking as the "
        "ROS node does, written annotated to OUT. Default FOLDER: the example media ($FACE_RECOGNITION_DATA/media "
        "or ../shared/data/media).",
    )
    parser.add_argument("folder", nargs="?", help="folder with photos of people and videos (default: example media)")
    parser.add_argument("--out", default="demo-output", metavar="DIR",
                        help="where annotated videos and the demo's gallery go (default: ./demo-output)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    add_model_options(parser, gallery=False)
    parser.set_defaults(func=run_demo)


def person_name(path: Path) -> str:
    """A person's name from a photo's file name: ``lin-manuel-miranda.png`` -> ``Lin Manuel Miranda``."""
    words = re.split(r"[-_ ]+", _SAMPLE_SUFFIX.sub("", path.stem))
    return " ".join(word.capitalize() for word in words if word) or path.stem


def people_photos(folder: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Name -> photos, and the files passed over with the reason: the photos in ``people/<name>/``
    and the images directly in ``folder``, each named after its file (both, merged by name)."""
    people: dict[str, list[Path]] = {}
    skipped: list[str] = []
    listing_root = folder / "people"
    if listing_root.is_dir():
        for person in sorted(p for p in listing_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            listing = find_images([person])
            if listing.images:
                people[person.name] = listing.images
            skipped += [f"{path}: {reason}" for path, reason in listing.skipped]
    for photo in find_images([folder], recursive=False).images:
        people.setdefault(person_name(photo), []).append(photo)
    return people, skipped


def videos_in(folder: Path) -> list[Path]:
    """The files directly in ``folder`` that are videos: not images, and readable as a stream."""
    from ..frame_sources import VideoFrames

    videos = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        if is_image_file(path):
            continue
        try:
            VideoFrames(path)
        except ImageError:
            continue
        videos.append(path)
    return videos


def enroll_people(pipeline, people: dict[str, list[Path]]) -> tuple[dict[str, int], list[str]]:
    """Enroll each person from their photos that show exactly one face; returns samples per name and skips."""
    enrolled: dict[str, int] = {}
    skipped: list[str] = []
    for name, photos in people.items():
        images, sources = [], []
        for photo in photos:
            image = load_image(photo)
            faces = len(pipeline.analyze(image))
            if faces != 1:
                skipped.append(f"{photo}: {faces} faces, not a photo of one person")
                continue
            images.append(image)
            sources.append(str(photo))
        if not images:
            continue
        try:
            result = pipeline.enroll_images(name, images, sources)
        except NoFaceError as error:
            skipped.append(f"{name}: {error}")
            continue
        enrolled[name] = result.samples_added
    return enrolled, skipped


def recognise_video(pipeline, video: Path, annotated: Path):
    """Track and recognise every frame of ``video``; write it annotated; returns (timeline, frames)."""
    from ..annotate import annotate
    from ..appearances import Timeline
    from ..frame_sources import VideoFrames
    from ..recognizer import Recognizer

    frames = VideoFrames(video)
    recognizer = Recognizer(pipeline)  # tracked and voted, as the ROS node runs it
    timeline = Timeline()
    writer = None
    count = 0
    try:
        for frame in frames.frames():
            result = recognizer.process(frame.rgb)
            timeline.add(frame.time_s, result.faces)
            if writer is None:
                height, width = frame.rgb.shape[:2]
                writer = cv2.VideoWriter(str(annotated), cv2.VideoWriter_fourcc(*"mp4v"), frames.rate_hz, (width, height))
                if not writer.isOpened():
                    raise ImageError(f"{annotated}: cannot write a video there")
            writer.write(cv2.cvtColor(annotate(frame.rgb, result.faces), cv2.COLOR_RGB2BGR))
            count += 1
    finally:
        if writer is not None:
            writer.release()
    return timeline, count


def run_demo(args: argparse.Namespace) -> int:
    from ..gallery import Gallery

    folder = Path(args.folder) if args.folder else data_root() / "media"
    if not folder.is_dir():
        raise FaceRecognitionError(f"{folder}: no such folder (give a folder of photos and videos)")
    people, skipped = people_photos(folder)
    videos = videos_in(folder)
    if not people:
        raise FaceRecognitionError(f"{folder}: no photos of people (FOLDER/people/<name>/ or images in FOLDER)")
    if not videos:
        raise FaceRecognitionError(f"{folder}: no video to recognise people in")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gallery_path = out / GALLERY_NAME
    for stale in (gallery_path, Path(f"{gallery_path}-wal"), Path(f"{gallery_path}-shm")):
        stale.unlink(missing_ok=True)  # the demo's own gallery from an earlier run, never the user's
    with Gallery(gallery_path) as gallery:
        pipeline = pipeline_from_args(args, gallery=gallery)
        enrolled, enroll_skips = enroll_people(pipeline, people)
        skipped += enroll_skips
        if not enrolled:
            raise NoFaceError(f"{folder}: no photo shows exactly one face; nobody was enrolled")
        report = {"folder": str(folder), "enrolled": enrolled, "skipped": skipped, "videos": []}
        for video in videos:
            annotated = out / f"{video.stem}-annotated.mp4"
            timeline, count = recognise_video(pipeline, video, annotated)
            report["videos"].append({"video": str(video), "frames": count, "annotated": str(annotated),
                                     "seen": timeline.to_json()})
            if not args.json:
                print(f"{video.name} ({count} frames), who was seen when:")
                for line in timeline.lines():
                    print(f"  {line}")
                print(f"  annotated video: {annotated}")
    if args.json:
        emit_json(report)
    else:
        print("enrolled: " + ", ".join(f"{name} ({samples} photo{'s' if samples > 1 else ''})"
                                       for name, samples in enrolled.items()), file=sys.stderr)
        for reason in skipped:
            print(f"skipped {reason}", file=sys.stderr)
    return 0
