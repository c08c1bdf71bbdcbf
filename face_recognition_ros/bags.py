"""rosbag2 files without ROS: recognise the faces of a bag's images, and turn a video into a bag.

The CLI commands built on these functions::

    face-recognition-ros bag IN --image-topic /camera/image_raw --output OUT [--json]
        Reads the rosbag2 IN (a folder, or a single .mcap/.db3 file) with the ``rosbags`` library,
        runs the recognizer on every sensor_msgs/Image or CompressedImage of the topic, and writes the
        new bag OUT (same storage as IN) holding face_recognition_ros/msg/FaceIdentities on
        /faces/identities: one message per image, with that image's header (stamp, frame_id) and
        its recording time. Faces are tracked and their names voted by the same ``Recognizer`` the
        node runs.
        --json prints one JSON object per image on stdout.

    face-recognition-ros video-to-bag VIDEO OUT [--topic T] [--frame-id F] [--storage mcap|sqlite3]
        Writes the frames of a video file as sensor_msgs/Image (bgr8), stamped with the video's
        frame times, e.g. to play into the recognizer node with ``ros2 bag play OUT``.

Message definitions: the project's FaceIdentity/FaceIdentities ``.msg`` files are registered in a
rosbags typestore from copies shipped inside this Python package (``face_recognition_ros/interfaces``,
package data of the pip install, installed as part of the package directory by colcon too); a test
keeps them identical to ``msg/``, from which rosidl generates the ROS types, so both sides serialise
the same bytes.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import cv2
import numpy as np

from .errors import FaceRecognitionError, ImageError
from .frame_sources import VideoFrames
from .image_buffers import message_to_rgb
from .types import FaceResult, FrameResult

INTERFACES_DIR = Path(__file__).resolve().parent / "interfaces"
MESSAGE_NAMES = ("FaceIdentity", "FaceIdentities")
IDENTITIES_TYPE = "face_recognition_ros/msg/FaceIdentities"
IDENTITY_TYPE = "face_recognition_ros/msg/FaceIdentity"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IDENTITIES_TOPIC = "/faces/identities"
STORAGES = ("mcap", "sqlite3")
#: rosbag2 metadata version written: 8 is what Jazzy's ``ros2 bag`` writes and reads
BAG_VERSION = 8


class BagError(FaceRecognitionError):
    """A bag cannot be read or written, or does not hold what was asked for."""


class FrameProcessor(Protocol):
    """What the bag tool runs each image through: a ``recognizer.Recognizer`` (tracked and voted,
    as in the node) or anything else with this method."""

    def process(self, image: np.ndarray) -> FrameResult: ...


@dataclass
class BagSummary:
    """What ``process_bag`` did (plain values: printable and JSON-ready)."""

    input: str
    output: str
    storage: str
    image_topic: str
    images: int = 0  # image messages read
    processed: int = 0  # images recognised (one FaceIdentities each)
    skipped: int = 0  # unusable images (bad encoding, truncated data)
    faces: int = 0
    known_faces: int = 0
    names: dict[str, int] = field(default_factory=dict)  # known name -> frames it was seen in
    seconds: float = 0.0
    images_per_second: float = 0.0
    errors: list[str] = field(default_factory=list)  # first few skip reasons


@dataclass
class VideoBagSummary:
    """What ``video_to_bag`` wrote."""

    video: str
    output: str
    storage: str
    topic: str
    frames: int
    width: int
    height: int
    encoding: str
    fps: float
    first_stamp_ns: int
    last_stamp_ns: int


def message_definitions() -> dict[str, str]:
    """``{"face_recognition_ros/msg/FaceIdentity": text, ...}`` read from the packaged ``.msg`` copies."""
    definitions = {}
    for name in MESSAGE_NAMES:
        path = INTERFACES_DIR / f"{name}.msg"
        try:
            definitions[f"face_recognition_ros/msg/{name}"] = path.read_text(encoding="utf-8")
        except OSError as error:
            raise BagError(f"message definition {path} is missing from the installation ({error.strerror})") from None
    return definitions


def make_typestore(distro: str = "jazzy"):
    """A rosbags typestore of ROS 2 ``distro`` ("jazzy" or "humble") plus this package's messages."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    stores = {"jazzy": Stores.ROS2_JAZZY, "humble": Stores.ROS2_HUMBLE}
    if distro not in stores:
        raise BagError(f"unknown ROS distribution {distro!r}; choose {' or '.join(stores)}")
    typestore = get_typestore(stores[distro])
    types: dict = {}
    for name, text in message_definitions().items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)
    return typestore


def bag_storage(path: str | Path) -> str:
    """"mcap" or "sqlite3": the storage of the rosbag2 folder or file at ``path``."""
    path = Path(path)
    files = [path] if path.is_file() else list(path.glob("*"))
    suffixes = {f.suffix for f in files}
    if ".mcap" in suffixes:
        return "mcap"
    if ".db3" in suffixes:
        return "sqlite3"
    raise BagError(f"{path}: not a rosbag2 (no .mcap or .db3 file)")


def _writer(path: str | Path, storage: str):
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise BagError(f"unknown bag storage {storage!r}; choose {' or '.join(STORAGES)}")
    if Path(path).exists():
        raise BagError(f"{path}: output bag already exists; choose a new folder")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    return Writer(path, version=BAG_VERSION, storage_plugin=plugin)


def identities_message(typestore, header: Any, faces: list[FaceResult]):
    """A rosbags ``FaceIdentities`` with ``header``, field for field as the recognizer node fills it."""
    identity_cls = typestore.types[IDENTITY_TYPE]
    identities = [identity_cls(**face.identity_fields()) for face in faces]
    return typestore.types[IDENTITIES_TYPE](header=header, faces=identities)


def process_bag(
    in_path: str | Path,
    image_topic: str,
    out_path: str | Path,
    recognizer: FrameProcessor,
    json_lines: bool = False,
    storage: str | None = None,
    json_out: TextIO | None = None,
) -> BagSummary:
    """Recognise the faces of every image on ``image_topic`` of the bag ``in_path``; write ``out_path``.

    The output bag (``storage``, default: the input's) holds one ``FaceIdentities`` per usable image on
    ``/faces/identities``, with the image's header and recording time; the faces are as ``recognizer``
    reports them (tracked and voted when it is a tracking ``Recognizer``). Unusable images are counted
    and skipped, as the node does. ``json_lines`` writes one JSON object per image to ``json_out``
    (default stdout).
    """
    from rosbags.rosbag2 import Reader, ReaderError
    from rosbags.rosbag2.errors import WriterError

    in_path, out_path = Path(in_path), Path(out_path)
    if not in_path.exists():
        raise BagError(f"{in_path}: no such bag")
    storage = storage or bag_storage(in_path)
    typestore = make_typestore()
    out = json_out or sys.stdout
    summary = BagSummary(str(in_path), str(out_path), storage, image_topic)
    names: Counter[str] = Counter()
    started = time.perf_counter()
    try:
        with Reader(in_path) as reader:
            connections = [c for c in reader.connections if c.topic == image_topic]
            if not connections:
                topics = ", ".join(f"{c.topic} ({c.msgtype})" for c in reader.connections) or "none"
                raise BagError(f"{in_path}: no topic {image_topic!r} (topics: {topics})")
            unusable = [c.msgtype for c in connections if c.msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE)]
            if unusable:
                raise BagError(f"{image_topic} carries {unusable[0]}, not {IMAGE_TYPE} or {COMPRESSED_TYPE}")
            with _writer(out_path, storage) as writer:
                connection = writer.add_connection(IDENTITIES_TOPIC, IDENTITIES_TYPE, typestore=typestore)
                for source, timestamp, raw in reader.messages(connections=connections):
                    summary.images += 1
                    msg = typestore.deserialize_cdr(raw, source.msgtype)
                    try:
                        rgb = message_to_rgb(msg)
                    except ImageError as error:
                        summary.skipped += 1
                        if len(summary.errors) < 5:
                            summary.errors.append(f"message {summary.images}: {error}")
                        if json_lines:
                            _write_json(out, summary.images - 1, msg.header, None, str(error))
                        continue
                    result = recognizer.process(rgb)
                    writer.write(connection, timestamp,
                                 typestore.serialize_cdr(identities_message(typestore, msg.header, result.faces),
                                                         IDENTITIES_TYPE))
                    summary.processed += 1
                    summary.faces += len(result.faces)
                    known = {f.match.name for f in result.faces if f.match.is_known and f.match.name}
                    summary.known_faces += sum(f.match.is_known for f in result.faces)
                    names.update(known)
                    if json_lines:
                        _write_json(out, summary.images - 1, msg.header, result, None)
    except (ReaderError, WriterError) as error:
        raise BagError(f"{in_path} -> {out_path}: {error}") from None
    summary.names = dict(sorted(names.items()))
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.images_per_second = round(summary.images / summary.seconds, 2) if summary.seconds > 0 else 0.0
    return summary


def _write_json(out: TextIO, index: int, header: Any, result: FrameResult | None, error: str | None) -> None:
    record: dict[str, Any] = {
        "index": index,
        "stamp": {"sec": int(header.stamp.sec), "nanosec": int(header.stamp.nanosec)},
        "frame_id": header.frame_id,
    }
    if result is None:
        record["error"] = error
    else:
        record["faces"] = [face.to_json() for face in result.faces]
        record["timings_ms"] = {k: round(v, 2) for k, v in result.timings_ms.items()}
    out.write(json.dumps(record) + "\n")
    out.flush()


def video_to_bag(
    video_path: str | Path,
    out_path: str | Path,
    topic: str = "/camera/image_raw",
    frame_id: str = "camera",
    storage: str = "mcap",
    max_frames: int | None = None,
    fps: float | None = None,
    encoding: str = "bgr8",
    start_time_ns: int | None = None,
) -> VideoBagSummary:
    """Write the frames of a video file as ``sensor_msgs/Image`` on ``topic`` of a new bag.

    Stamps (header and recording time) are ``start_time_ns`` (default: now) plus each frame's time
    in the video, or ``index / fps`` when ``fps`` is given (or the file has no frame times).
    """
    from rosbags.rosbag2.errors import WriterError

    if max_frames is not None and max_frames < 1:
        raise BagError(f"max_frames must be at least 1, got {max_frames}")
    if fps is not None and fps <= 0:
        raise BagError(f"fps must be positive, got {fps}")
    if encoding not in ("rgb8", "bgr8"):
        raise BagError(f"encoding must be rgb8 or bgr8, got {encoding!r}")
    video = VideoFrames(video_path, fps)
    typestore = make_typestore()
    image_cls, header_cls = typestore.types[IMAGE_TYPE], typestore.types["std_msgs/msg/Header"]
    time_cls = typestore.types["builtin_interfaces/msg/Time"]
    start = time.time_ns() if start_time_ns is None else int(start_time_ns)
    frames, first_ns, last_ns, width, height = 0, 0, 0, 0, 0
    try:
        with _writer(out_path, storage) as writer:
            connection = writer.add_connection(topic, IMAGE_TYPE, typestore=typestore)
            for frame in video.frames():
                if max_frames is not None and frames >= max_frames:
                    break
                stamp = start + int(round(frame.time_s * 1e9))
                pixels = frame.rgb if encoding == "rgb8" else cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR)
                height, width = pixels.shape[:2]
                header = header_cls(stamp=time_cls(sec=stamp // 1_000_000_000, nanosec=stamp % 1_000_000_000),
                                    frame_id=frame_id)
                msg = image_cls(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                                step=width * 3, data=np.ascontiguousarray(pixels).reshape(-1))
                writer.write(connection, stamp, typestore.serialize_cdr(msg, IMAGE_TYPE))
                first_ns = stamp if frames == 0 else first_ns
                last_ns = stamp
                frames += 1
    except WriterError as error:
        raise BagError(f"{out_path}: {error}") from None
    if frames == 0:
        raise ImageError(f"{video_path}: the video has no readable frame")
    return VideoBagSummary(str(video_path), str(out_path), storage, topic, frames, width, height, encoding,
                           round(video.rate_hz, 3), first_ns, last_ns)


def summary_dict(summary: BagSummary | VideoBagSummary) -> dict:
    """The summary as a JSON-ready dict."""
    return asdict(summary)
