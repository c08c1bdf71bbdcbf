"""``bag`` (run the pipeline over a rosbag2) and ``video-to-bag``, both without ROS installed."""

from __future__ import annotations

import argparse
import json
import sys

from .common import add_model_options, bounded, emit_json, pipeline_from_args


def add_parsers(subparsers) -> None:
    bag = subparsers.add_parser(
        "bag",
        help="recognise faces in the images of a rosbag2 and write the results as a bag",
        description="Reads a rosbag2 (mcap or sqlite3) with the rosbags library, runs the pipeline on "
        "every sensor_msgs/Image (or CompressedImage) of --image-topic and writes a new bag with "
        "face_recognition_ros/msg/FaceIdentities on /faces/identities, each with its image's header.",
    )
    bag.add_argument("input", metavar="IN", help="input bag folder")
    bag.add_argument("--image-topic", required=True, metavar="TOPIC")
    bag.add_argument("--output", required=True, metavar="OUT", help="output bag folder (must not exist)")
    bag.add_argument("--storage", choices=["mcap", "sqlite3"], help="output storage (default: the input's)")
    bag.add_argument("--no-tracking", action="store_true", help="raw per-frame matches, no track identity vote")
    bag.add_argument("--json", action="store_true", help="also print one JSON object per image")
    add_model_options(bag)
    bag.set_defaults(func=run_bag)

    video = subparsers.add_parser(
        "video-to-bag",
        help="turn a video file into a rosbag2 of sensor_msgs/Image",
        description="Writes every frame as sensor_msgs/Image (bgr8) stamped with the video's frame times.",
    )
    video.add_argument("video", help="input video file")
    video.add_argument("output", metavar="OUT", help="output bag folder (must not exist)")
    video.add_argument("--topic", default="/camera/image_raw")
    video.add_argument("--frame-id", default="camera")
    video.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    video.add_argument("--max-frames", type=bounded(int, 1), help="stop after this many frames")
    video.add_argument("--json", action="store_true", help="print the summary as JSON")
    video.set_defaults(func=run_video_to_bag)


def _summary_dict(summary) -> dict:
    if isinstance(summary, dict):
        return summary
    return {key: (str(value) if not isinstance(value, (int, float, str, list, dict, type(None))) else value)
            for key, value in vars(summary).items()}


def run_bag(args: argparse.Namespace) -> int:
    from ..bags import process_bag
    from ..recognizer import Recognizer

    recognizer = Recognizer(pipeline_from_args(args), track=not args.no_tracking)
    summary = _summary_dict(process_bag(args.input, args.image_topic, args.output, recognizer, json_lines=args.json,
                                       storage=args.storage))
    print(json.dumps(summary) if args.json else f"wrote {args.output}: {summary}",
          file=sys.stderr if args.json else sys.stdout)
    return 0


def run_video_to_bag(args: argparse.Namespace) -> int:
    from ..bags import video_to_bag

    summary = _summary_dict(video_to_bag(args.video, args.output, topic=args.topic, frame_id=args.frame_id,
                                         storage=args.storage, max_frames=args.max_frames))
    if args.json:
        emit_json(summary)
    else:
        print(f"wrote {args.output}: {summary}")
    return 0
