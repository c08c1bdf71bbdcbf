#!/usr/bin/env bash
# Run every test: the ROS-free suite, then, where ROS 2 is installed, the ROS suite (colcon build in
# a scratch workspace, launch_testing of the real node). Without ROS the ROS tests are skipped,
# unless FACE_RECOGNITION_REQUIRE_ROS=1 (CI), which makes a missing ROS a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
status=0

"$PYTHON" -m pytest test --ignore=test/ros -p no:cacheprovider "$@"
rc=$?
[ $rc -eq 5 ] && { echo "test: no ROS-free test ran"; rc=1; }
[ $rc -ne 0 ] && status=$rc

if [ -n "${AMENT_PREFIX_PATH:-}" ] || [ -f "/opt/ros/${ROS_DISTRO:-jazzy}/setup.bash" ] \
   || [ "${FACE_RECOGNITION_REQUIRE_ROS:-0}" = 1 ]; then
  bash scripts/ros_tests.sh "$@"
  rc=$?
  [ $rc -ne 0 ] && status=$rc
else
  echo "test: ROS 2 not found: ROS tests skipped (install ROS 2 and source it to run them)"
fi
exit $status
