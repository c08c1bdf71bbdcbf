"""What the ROS tests need from the environment, and a module-level guard for each test file.

Kept out of conftest.py so that test modules can call ``require_ros()`` before importing rclpy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REQUIRE_ENV = "FACE_RECOGNITION_REQUIRE_ROS"
PACKAGE = "face_recognition_ros"
REPO_ROOT = Path(__file__).resolve().parents[2]


def ros_required() -> bool:
    return os.environ.get(REQUIRE_ENV) == "1"


def _generated_package_dir(prefix: str) -> Path:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return Path(prefix) / "lib" / version / "site-packages" / PACKAGE


def _expose_generated_interfaces(prefix: str) -> None:
    """Make ``face_recognition_ros.msg``/``.srv`` importable in this process.

    ``python3 -m pytest`` puts the source checkout first on ``sys.path``, so ``face_recognition_ros``
    is the source package, which has no generated ``msg``/``srv``; the install space's copy of the
    same package does. Adding that directory to the package's search path finds them there.
    """
    import face_recognition_ros

    generated = str(_generated_package_dir(prefix))
    if generated not in face_recognition_ros.__path__:
        face_recognition_ros.__path__.append(generated)


def ros_problem() -> str | None:
    """Why the ROS tests cannot run here, or None when they can."""
    try:
        import rclpy  # noqa: F401
    except ImportError as error:
        return f"ROS 2 is not available ({error}); source /opt/ros/<distro>/setup.bash"
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        prefix = get_package_prefix(PACKAGE)
    except (ImportError, PackageNotFoundError):
        return (f"the {PACKAGE} ROS package is not built and sourced; run scripts/ros_tests.sh "
                "(or colcon build it and source install/setup.bash)")
    _expose_generated_interfaces(prefix)
    try:
        import face_recognition_ros.msg  # noqa: F401
        import face_recognition_ros.srv  # noqa: F401
    except ImportError as error:
        return f"the generated interfaces of {PACKAGE} cannot be imported from {prefix}: {error}"
    return None


def require_ros() -> None:
    """Skip the calling test module when ROS is missing; fail instead under FACE_RECOGNITION_REQUIRE_ROS=1."""
    problem = ros_problem()
    if problem is None:
        return
    if ros_required():
        pytest.fail(f"{REQUIRE_ENV}=1 but {problem}", pytrace=False)
    pytest.skip(problem, allow_module_level=True)
