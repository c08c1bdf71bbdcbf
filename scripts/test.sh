#!/usr/bin/env bash
# Run every test: the ROS-free suite (beside a throw-away PostgreSQL cluster where a PostgreSQL server
# is installed, for the PostgreSQL gallery's tests: scripts/with_postgres.sh; without one they skip,
# saying so), then, where ROS 2 is installed (/opt/ros/<distro>/setup.bash,
# or an environment already sourced), the ROS suite (colcon build in a scratch workspace,
# launch_testing of the real node). Without ROS 2 the ROS suite is skipped with one line saying so;
# FACE_RECOGNITION_REQUIRE_ROS=1 (for machines that have ROS) makes a missing ROS a failure instead.
# Extra arguments go to both pytest runs.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
status=0

bash scripts/with_postgres.sh "$PYTHON" -m pytest test --ignore=test/ros -p no:cacheprovider "$@"
rc=$?
[ $rc -eq 5 ] && { echo "test: no ROS-free test ran"; rc=1; }
[ $rc -ne 0 ] && status=$rc

if [ -n "${AMENT_PREFIX_PATH:-}" ] || compgen -G "/opt/ros/*/setup.bash" >/dev/null \
   || [ "${FACE_RECOGNITION_REQUIRE_ROS:-0}" = 1 ]; then
  bash scripts/ros_tests.sh "$@"
  rc=$?
  [ $rc -eq 5 ] && { echo "test: no ROS test ran"; rc=1; }
  [ $rc -ne 0 ] && status=$rc
else
  echo "test: ROS tests skipped: no ROS 2 here (no /opt/ros/<distro>/setup.bash and none sourced); source one to run them"
fi
exit $status
