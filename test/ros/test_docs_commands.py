"""The commands of README.md "Try it on ROS 2", run as written, in a fresh HOME.

The build block is also the issue's "colcon build exactly as the README tells a user" check; the
terminal blocks run with timeouts in place of a person pressing Ctrl-C.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from ros_env import REPO_ROOT, require_ros

require_ros()

from face_recognition_ros.data_paths import data_root  # noqa: E402

DOCS = REPO_ROOT / "README.md"
INTERFACES = [
    "face_recognition_ros/msg/FaceIdentity",
    "face_recognition_ros/msg/FaceIdentities",
    "face_recognition_ros/srv/EnrollPerson",
    "face_recognition_ros/srv/ForgetPerson",
    "face_recognition_ros/srv/ListPersons",
]
# Variables that would point a fresh shell at this checkout's own build: the blocks must work
# from a plain ROS installation.
OVERLAY_VARIABLES = ("AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH", "PYTHONPATH",
                     "LD_LIBRARY_PATH", "ROS_PACKAGE_PATH", "FACE_RECOGNITION_GALLERY")
COMMAND_TIMEOUT_S = 180
STREAM_SECONDS = 25  # how long a streaming `ros2 topic echo` runs before "Ctrl-C"


def docs_block(label: str) -> list[str]:
    """The commands of the ```bash block after ``<!-- try-it: label -->`` (continuations joined)."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(rf"<!-- try-it: {re.escape(label)} -->\s*```bash\n(.*?)```", text, re.S)
    assert match, f"no 'try-it: {label}' block in {DOCS}"
    joined = match.group(1).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.fixture(scope="module")
def user_env(tmp_path_factory) -> dict[str, str]:
    """A user's shell: fresh HOME, ROS not sourced, the two variables the docs ask for."""
    env = {k: v for k, v in os.environ.items() if k not in OVERLAY_VARIABLES}
    env["HOME"] = str(tmp_path_factory.mktemp("home"))
    env["FACE_RECOGNITION_ROS"] = str(REPO_ROOT)
    env["FACE_RECOGNITION_DATA"] = str(data_root())
    env.pop("XDG_DATA_HOME", None)
    return env


def run_bash(commands: list[str], env: dict[str, str], timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess:
    script = "set -e\n" + "\n".join(commands) + "\n"
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def workspace(user_env) -> Path:
    build = run_bash(docs_block("build"), user_env, timeout=600)
    assert build.returncode == 0, f"documented build failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    return Path(user_env["HOME"]) / "ros2_ws"


def test_documented_build_installs_every_interface(workspace, user_env):
    assert (workspace / "install" / "face_recognition_ros" / "share" / "face_recognition_ros" / "launch"
            / "recognizer.launch.py").is_file()
    source = f"source {shlex.quote(str(workspace / 'install' / 'setup.bash'))}"
    for interface in INTERFACES:
        shown = run_bash([source, f"ros2 interface show {interface}"], user_env, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip(), f"{interface} is empty"
    message = run_bash([source, "ros2 interface show face_recognition_ros/msg/FaceIdentities"], user_env).stdout
    assert "std_msgs/Header header" in message and "FaceIdentity[] faces" in message
    enroll = run_bash([source, "ros2 interface show face_recognition_ros/srv/EnrollPerson"], user_env).stdout
    assert "sensor_msgs/Image[] images" in enroll and "int64 person_id" in enroll.split("---")[1]


def test_documented_build_imports_messages_and_core_from_the_install_space(workspace, user_env):
    source = f"source {shlex.quote(str(workspace / 'install' / 'setup.bash'))}"
    probe = ("import face_recognition_ros, face_recognition_ros.pipeline as p;"
             "from face_recognition_ros.msg import FaceIdentities;"
             "from face_recognition_ros.srv import EnrollPerson;"
             "print(face_recognition_ros.__file__); print(p.__file__); print(FaceIdentities.__module__)")
    result = run_bash(["cd /", source, f"python3 -c {shlex.quote(probe)}"], user_env, timeout=120)
    assert result.returncode == 0, result.stderr
    package_file, pipeline_file, _ = result.stdout.split()
    install = str(workspace / "install")
    assert package_file.startswith(install) and pipeline_file.startswith(install), result.stdout


def test_try_it_commands_work_as_written(workspace, user_env):
    launch = subprocess.Popen(
        ["bash", "-c", "set -e\n" + "\n".join(docs_block("terminal-1"))],
        env=user_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    outputs: list[tuple[str, str]] = []
    try:
        source, *commands = docs_block("terminal-2")
        for command in commands:
            streaming = command.startswith("ros2 topic echo") and "--once" not in command
            # A person waits for the node to come up; `timeout` stands in for Ctrl-C on streams.
            wrapped = f"timeout -s INT {STREAM_SECONDS} {command} || [ $? -eq 124 ]" if streaming else \
                f"timeout {COMMAND_TIMEOUT_S} {command}"
            result = run_bash([source, wrapped], user_env, timeout=COMMAND_TIMEOUT_S + 30)
            assert result.returncode == 0, f"`{command}` failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            outputs.append((command, result.stdout))
    finally:
        os.killpg(launch.pid, signal.SIGINT)
        try:
            log, _ = launch.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(launch.pid, signal.SIGKILL)
            log, _ = launch.communicate()
    by_command = dict(outputs)
    first_echo = next(out for cmd, out in outputs if cmd.startswith("ros2 topic echo --once"))
    assert "faces:" in first_echo and "frame_id: camera" in first_echo
    listed = next(out for cmd, out in outputs if "/list_persons" in cmd)
    assert "Lin-Manuel Miranda" in listed
    watched = next(out for cmd, out in outputs if cmd.startswith("ros2 topic echo /faces/detections"))
    assert "Lin-Manuel Miranda" in watched, f"his name never appeared on /faces/detections:\n{watched[-2000:]}"
    forgot = next(out for cmd, out in by_command.items() if "/forget_person" in cmd)
    assert "success=True" in forgot
    gallery = Path(user_env["HOME"]) / ".local" / "share" / "face_recognition_ros" / "gallery.db"
    assert gallery.is_file(), "the default gallery should live in the user's data directory"
    assert launch.returncode == 0, f"launch did not stop cleanly on Ctrl-C (exit {launch.returncode}):\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]
