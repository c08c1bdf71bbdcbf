#!/usr/bin/env bash
# CI's check of the robot install path (README, "Install on a robot"), as far as it runs without ROS:
# a virtual environment with --system-site-packages over this machine's Python, whose torch (the
# CPU build scripts/install.sh put there) stands in for a JetPack wheel that must not be replaced;
# scripts/install_robot.sh --torch keep inside it; then the whole ROS-free suite on what it gives:
# numpy 1.x (as on Humble and Jazzy), OpenCV below 4.12, psycopg from requirements/robot.txt, beside a
# throw-away PostgreSQL cluster (scripts/with_postgres.sh). Run after scripts/install.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-build/robot-venv}
BASE_PYTHON=${PYTHON:-python3}
rm -rf "$VENV"
"$BASE_PYTHON" -m venv --system-site-packages "$VENV"
touch "$VENV/COLCON_IGNORE"
torch_before=$("$BASE_PYTHON" -c 'import torch; print(torch.__version__, torch.__file__)')

PYTHON="$VENV/bin/python" bash scripts/install_robot.sh --torch keep

torch_after=$("$VENV/bin/python" -c 'import torch; print(torch.__version__, torch.__file__)')
[ "$torch_after" = "$torch_before" ] || { echo "check_robot_install: torch was replaced: $torch_before -> $torch_after" >&2; exit 1; }
if compgen -G "$VENV/lib/python*/site-packages/torch" >/dev/null; then
  echo "check_robot_install: a second torch was installed into the venv" >&2; exit 1
fi
echo "check_robot_install: torch kept ($torch_after); running the ROS-free suite on numpy $("$VENV/bin/python" -c 'import numpy; print(numpy.__version__)')"
bash scripts/with_postgres.sh "$VENV/bin/python" -m pytest test --ignore=test/ros -p no:cacheprovider -q "$@"
