"""Set-up shared by the tests on a real ROS 2 (run them with scripts/ros_tests.sh).

Every test module starts with ``ros_env.require_ros()``: without ROS 2 (or without this package
built and sourced) the folder is skipped with the reason, unless FACE_RECOGNITION_REQUIRE_ROS=1,
as in CI, where that is a failure. Each run talks only to itself: its own ROS_DOMAIN_ID (unless the
caller chose one) and localhost-only discovery.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # ros_env, helpers (no __init__.py in test/)

from ros_env import REQUIRE_ENV, ros_problem, ros_required  # noqa: E402

os.environ.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"  # Jazzy and later
if os.environ.get("ROS_DISTRO") == "humble":
    os.environ["ROS_LOCALHOST_ONLY"] = "1"  # Humble's spelling (deprecated, and warned about, on Jazzy)

if ros_required() and ros_problem() is not None:
    raise pytest.UsageError(f"{REQUIRE_ENV}=1 but {ros_problem()}")


@pytest.fixture(scope="session")
def knn_dir(media_dir: Path) -> Path:
    path = media_dir / "knn_examples"
    if not path.is_dir():
        pytest.skip(f"knn_examples not found in {media_dir}")
    return path
