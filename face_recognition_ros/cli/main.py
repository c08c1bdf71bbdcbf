"""Entry point of ``face-recognition-ros``: parses, dispatches, and turns errors into exit codes."""

from __future__ import annotations

import argparse
import logging
import sys

from .. import __version__
from ..errors import FaceRecognitionError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def quiet_opencv() -> None:
    """Only errors from OpenCV's own log. Builds differ in where the call lives (4.12+:
    ``cv2.utils.logging``; 4.11 and older: ``cv2.setLogLevel``), and some have neither."""
    import cv2

    logging_module = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_module is not None:
        logging_module.setLogLevel(logging_module.LOG_LEVEL_ERROR)
    elif hasattr(cv2, "setLogLevel"):
        cv2.setLogLevel(2)  # LOG_LEVEL_ERROR in OpenCV's own numbering


def build_parser() -> argparse.ArgumentParser:
    from . import (bench_command, cohort_command, demo_command, eval_commands, gallery_commands, optional_commands,
                   recognize_command)

    parser = argparse.ArgumentParser(
        prog="face-recognition-ros",
        description="Face recognition without ROS: enroll people, recognise them in images, videos and "
        "bags, evaluate, benchmark, train and export encoders.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and backend choices")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    gallery_commands.add_parsers(subparsers)
    recognize_command.add_parser(subparsers)
    demo_command.add_parser(subparsers)
    eval_commands.add_parsers(subparsers)
    bench_command.add_parser(subparsers)
    cohort_command.add_parser(subparsers)
    optional_commands.add_parsers(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # OpenCV's own warnings (a video backend declining a file that turns out not to be a video)
        # are noise to a CLI user; every problem that matters reaches them as a one-line error.
        quiet_opencv()
    try:
        return int(args.func(args) or 0)
    except FaceRecognitionError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except OSError as error:  # a file that cannot be written or read: a full disk, a read-only or missing place
        where = f"{error.filename}: " if error.filename else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
