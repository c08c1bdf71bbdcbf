#!/usr/bin/env bash
# Build the ROS 2 package in build/ros_ws (git-ignored) and run the tests on the real ROS 2.
#
#   scripts/ros_tests.sh                 # all of test/ros
#   scripts/ros_tests.sh -k launch -x    # extra arguments go to pytest
#   scripts/ros_tests.sh test/ros/test_recognizer_launch.py -v
#
# ROS 2 is sourced from /opt/ros/$ROS_DISTRO (default: the one installed in /opt/ros, jazzy first)
# unless a ROS environment is already active. The run is isolated: its own ROS_DOMAIN_ID (unless
# you set one) and localhost-only discovery. FACE_RECOGNITION_REQUIRE_ROS=1 (the default here, since
# this script is only run where a ROS is meant to be) turns "ROS missing" into a failure instead of
# a skip. Exits non-zero when the build or any test fails.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORKSPACE="$REPO/build/ros_ws"

if [ -z "${AMENT_PREFIX_PATH:-}" ]; then
  if [ -z "${ROS_DISTRO:-}" ]; then
    for distro in jazzy humble; do [ -f "/opt/ros/$distro/setup.bash" ] && { ROS_DISTRO=$distro; break; }; done
  fi
  ROS_SETUP="/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash"
  if [ ! -f "$ROS_SETUP" ]; then
    echo "ros_tests.sh: no ROS 2 at $ROS_SETUP (set ROS_DISTRO, or source your ROS 2 first)" >&2
    exit 2
  fi
  # setup.bash reads unset variables
  set +u
  # shellcheck disable=SC1090
  source "$ROS_SETUP"
  set -u
fi

export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
if [ "${ROS_DISTRO:-}" = "humble" ]; then export ROS_LOCALHOST_ONLY=1; fi
export FACE_RECOGNITION_REQUIRE_ROS="${FACE_RECOGNITION_REQUIRE_ROS:-1}"

mkdir -p "$WORKSPACE/src"
ln -sfn "$REPO" "$WORKSPACE/src/face_recognition_ros"
echo "ros_tests.sh: building $WORKSPACE (ROS $ROS_DISTRO, domain $ROS_DOMAIN_ID)"
(cd "$WORKSPACE" && colcon build --packages-select face_recognition_ros)

set +u
# shellcheck disable=SC1091
source "$WORKSPACE/install/setup.bash"
set -u

cd "$REPO"
# The tests' `ros2` commands start a ROS 2 CLI daemon for this run's domain: stop it afterwards
# rather than leave one behind per run.
trap 'ros2 daemon stop >/dev/null 2>&1 || true' EXIT
if [ $# -gt 0 ] && [ -e "$1" ]; then
  python3 -m pytest "$@"  # test files or folders given
else
  python3 -m pytest test/ros "$@"
fi
