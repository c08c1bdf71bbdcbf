"""package.xml and requirements/robot.txt declare what the code imports, and nothing is left to chance.

Runs everywhere, without ROS: the imports are read from the source text. Where a copy of
ros/rosdistro is at hand (``FACE_RECOGNITION_ROSDISTRO=<checkout>``), every rosdep key is also
checked to exist for Ubuntu jammy (Humble) and noble (Jazzy).
"""

from __future__ import annotations

import ast
import os
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MANIFEST = ElementTree.parse(REPO / "package.xml").getroot()
#: Python modules -> the rosdep key that provides them from apt
APT_MODULES = {"numpy": "python3-numpy", "cv2": "python3-opencv", "PIL": "python3-pil", "yaml": "python3-yaml",
               "platformdirs": "python3-platformdirs", "tqdm": "python3-tqdm", "pytest": "python3-pytest"}
#: Python modules -> the pip distribution that provides them on a robot (requirements/robot.txt)
PIP_MODULES = {"onnx": "onnx", "onnxruntime": "onnxruntime", "rosbags": "rosbags",
               "face_recognition_models": "face_recognition_models", "psycopg": "psycopg"}
#: imported only by optional paths that say so when missing (backends, training, benchmarks)
OPTIONAL_MODULES = {"torch", "tensorrt", "torch2trt", "lightning", "pytorch_metric_learning", "retinaface",
                    "face_recognition", "dlib", "matplotlib", "psycopg_pool", "scipy"}
STANDARD_LIBRARY = set(getattr(__import__("sys"), "stdlib_module_names", ()))


def declared(*tags: str) -> set[str]:
    return {element.text.strip() for tag in tags for element in MANIFEST.iter(tag)}


def imported_modules(paths) -> set[str]:
    modules = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules - STANDARD_LIBRARY - {"face_recognition_ros", "ros_env", "ros_helpers", "frames", "__future__"}


def ros_packages(modules: set[str]) -> set[str]:
    """ROS packages among imported modules: everything that is neither an apt, pip nor optional module."""
    return modules - set(APT_MODULES) - set(PIP_MODULES) - OPTIONAL_MODULES


def robot_requirements() -> set[str]:
    lines = (REPO / "requirements" / "robot.txt").read_text(encoding="utf-8").splitlines()
    return {re.split(r"[<>=!~ ;\[]", line.strip(), maxsplit=1)[0].lower()
            for line in lines if line.strip() and not line.startswith("#")}


def test_the_node_and_launch_files_imports_are_run_dependencies():
    sources = list((REPO / "face_recognition_ros" / "ros").glob("*.py")) + list((REPO / "launch").glob("*.py"))
    run = declared("depend", "exec_depend")
    missing = ros_packages(imported_modules(sources)) - run
    assert not missing, f"imported by the ROS layer but not in package.xml: {sorted(missing)}"


def test_the_ros_tests_imports_and_ros2_verbs_are_test_dependencies():
    sources = list((REPO / "test" / "ros").glob("*.py"))
    available = declared("depend", "exec_depend", "test_depend", "build_depend")
    missing = ros_packages(imported_modules(sources)) - available
    verbs = set()
    for path in [*sources, REPO / "README.md"]:
        verbs |= set(re.findall(r"""["'\s]ros2["',\s]+["']?(launch|topic|service|param|interface|bag|run|node)\b""",
                                path.read_text(encoding="utf-8")))
    verbs.discard("run")  # ros2run is part of ros2cli itself on Humble and Jazzy
    verbs.discard("node")
    missing |= {f"ros2{verb}" for verb in verbs} - available
    assert not missing, f"used by the ROS tests but not declared in package.xml: {sorted(missing)}"


def test_every_core_import_comes_from_rosdep_or_the_robot_requirements():
    core = [p for p in (REPO / "face_recognition_ros").rglob("*.py") if "ros" not in p.relative_to(REPO).parts[1:2]]
    modules = imported_modules(core)
    unknown = modules - set(APT_MODULES) - set(PIP_MODULES) - OPTIONAL_MODULES
    assert not unknown, f"imported by the core, but neither an apt key, a robot requirement nor optional: {sorted(unknown)}"
    exec_keys = declared("exec_depend", "depend")
    for module in modules & set(APT_MODULES):
        if module != "pytest":
            assert APT_MODULES[module] in exec_keys, f"{module}: add <exec_depend>{APT_MODULES[module]}</exec_depend>"
    requirements = robot_requirements()
    for module in modules & set(PIP_MODULES):
        assert PIP_MODULES[module].lower() in requirements, f"{module}: add {PIP_MODULES[module]} to requirements/robot.txt"


def test_torch_is_never_a_robot_requirement_and_numpy_stays_below_2_there():
    text = (REPO / "requirements" / "robot.txt").read_text(encoding="utf-8")
    assert "torch" not in robot_requirements()
    assert re.search(r"^numpy[^\n#]*<2", text, re.M)
    assert "python3-torch" not in declared("exec_depend", "depend")


def test_every_version_pin_says_why():
    for path in (REPO / "setup.py", REPO / "requirements" / "robot.txt"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for index, line in enumerate(lines):
            if re.search(r"<\s*\d", line) and not line.lstrip().startswith("#"):
                context = "\n".join(lines[max(0, index - 3):index + 1])
                assert "#" in context, f"{path.name}: the pin in {line.strip()!r} needs a comment saying why"


def test_the_declared_licence_has_its_text():
    assert MANIFEST.find("license").text.strip() == "MIT"
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    assert 'license="MIT"' in (REPO / "setup.py").read_text(encoding="utf-8")


def rosdep_keys_of(rosdistro: Path) -> dict[str, dict]:
    keys: dict[str, dict] = {}
    for name in ("base.yaml", "python.yaml"):
        keys.update(yaml.safe_load((rosdistro / "rosdep" / name).read_text(encoding="utf-8")))
    return keys


def resolves_on_ubuntu(rule: dict, codename: str) -> bool:
    ubuntu = rule.get("ubuntu") if isinstance(rule, dict) else None
    if isinstance(ubuntu, list):
        return bool(ubuntu)
    if isinstance(ubuntu, dict):
        value = ubuntu.get(codename, ubuntu.get("*"))
        return value is not None and value != []
    return False


@pytest.mark.parametrize("distro, codename", [("humble", "jammy"), ("jazzy", "noble")])
def test_every_system_rosdep_key_exists_for_the_distribution(distro, codename):
    checkout = os.environ.get("FACE_RECOGNITION_ROSDISTRO")
    if not checkout:
        pytest.skip("set FACE_RECOGNITION_ROSDISTRO to a checkout of github.com/ros/rosdistro to check the "
                    "rosdep keys (CI has none: no network beyond the package registries)")
    rosdistro = Path(checkout)
    keys = rosdep_keys_of(rosdistro)
    packages = yaml.safe_load((rosdistro / distro / "distribution.yaml").read_text(encoding="utf-8"))
    released = set()
    for name, repository in packages["repositories"].items():
        release = repository.get("release")
        if release:  # a repository of one package lists none: the package is the repository's name
            released |= set(release.get("packages", [name]))
    for key in declared("depend", "exec_depend", "test_depend", "build_depend", "buildtool_depend"):
        if key in keys:
            assert resolves_on_ubuntu(keys[key], codename), f"{key} has no apt package on {codename}"
        else:
            assert key in released, f"{key} is neither a rosdep key nor a {distro} package"
