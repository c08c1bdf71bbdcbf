"""The recognizer node's parameter table agrees with the README, config/recognizer.yaml and itself.

The table lives in the ROS-free core (``node_parameters``), so these checks run on every machine;
the ROS suite checks that the node declares exactly this table.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from face_recognition_ros.node_parameters import BY_NAME, PARAMETERS

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
TABLE_HEADER = "| name | type | default | range | run time | meaning |"


def docs_table() -> dict[str, list[str]]:
    rows = {}
    for line in README[README.index(TABLE_HEADER):].splitlines()[2:]:
        if not line.startswith("| `"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    return rows


def test_readme_parameter_table_lists_exactly_the_declared_parameters_with_their_details():
    rows = docs_table()
    assert list(rows) == [spec.name for spec in PARAMETERS]
    for spec in PARAMETERS:
        _, type_name, default, value_range, run_time, description = rows[spec.name]
        assert type_name == spec.type_name, spec.name
        expected = '""' if spec.default == "" else str(spec.default).lower() if isinstance(spec.default, bool) \
            else str(spec.default)
        assert default.strip("`") == expected, spec.name
        assert value_range == (f"[{spec.minimum}, {spec.maximum}]" if spec.minimum is not None else ""), spec.name
        assert (run_time == "yes") == spec.dynamic, spec.name
        assert re.sub(r"\s+", " ", description) == spec.description, spec.name


def test_every_node_parameter_the_readme_names_elsewhere_is_declared():
    named = set(re.findall(r"node parameters? `(\w+)`", README))
    named |= set(re.findall(r"ros2 param set /face_recognizer (\w+)", README))
    named |= set(re.findall(r"node's `(\w+)`", README))
    assert named, "the README's prose should name some node parameters"
    assert named <= set(BY_NAME), f"named in the README but never declared: {sorted(named - set(BY_NAME))}"


def test_config_file_holds_every_parameter_with_its_declared_default_and_type():
    config = yaml.safe_load((REPO / "config" / "recognizer.yaml").read_text(encoding="utf-8"))
    values = config["/**"]["ros__parameters"]
    assert set(values) == set(BY_NAME)
    for spec in PARAMETERS:
        assert values[spec.name] == spec.default, spec.name
        assert type(values[spec.name]) is type(spec.default), f"{spec.name}: YAML type differs from the declaration"


def test_every_numeric_parameter_has_a_range_holding_its_default():
    for spec in PARAMETERS:
        assert spec.description, spec.name
        if spec.type_name in ("int", "double"):
            assert spec.minimum is not None and spec.maximum is not None, spec.name
            assert spec.minimum <= spec.default <= spec.maximum, spec.name
