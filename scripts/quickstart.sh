#!/usr/bin/env bash
# The README's first command. Sets everything up (scripts/install.sh), then runs the main job with
# no ROS and no camera: enrolls the people of a folder, recognises its videos, prints who was seen
# when and writes each video annotated (face-recognition-ros demo; README, "Quick start").
#
#   bash scripts/quickstart.sh                      # the example media of ../shared/data/media
#   bash scripts/quickstart.sh ~/my_media --out ~/demo
#
# Arguments go to `face-recognition-ros demo`; output lands in ./demo-output unless --out says otherwise.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-python3}
bash "$REPO/scripts/install.sh"
# `python -m`: the console script may not be on PATH yet in this shell (pyenv shims, fresh venvs).
exec "$PYTHON" -m face_recognition_ros.cli.main demo "$@"
