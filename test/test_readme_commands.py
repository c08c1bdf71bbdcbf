"""The README's first two commands are what CI runs, and the main job they start works.

CI (``.ci/run``) runs the two commands at the top of the README exactly as written there; the
test below keeps the two files equal. The demo itself is tested here on the example media and on a
folder laid out the way a user's would be.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import pytest

from face_recognition_ros.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def commands(text: str) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_the_readme_first_two_commands_exactly_as_written():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    documented = commands(first_block)
    assert len(documented) == 2, documented
    assert documented[0].startswith("bash scripts/quickstart.sh") and documented[1].startswith("bash scripts/test.sh")
    ci = commands((REPO / ".ci" / "run").read_text(encoding="utf-8"))
    ci = [line for line in ci if not line.startswith(("set ", "cd "))]
    assert ci[:2] == documented


def run_demo(capsys, *argv) -> dict:
    code = main(["demo", *map(str, argv), "--json", "--backend", "onnxruntime", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def test_demo_on_the_example_media_names_the_people_of_the_clip(capsys, media_dir, tmp_path):
    report = run_demo(capsys, media_dir, "--out", tmp_path)
    assert {"Lin Manuel Miranda", "Alex Lacamoire", "Obama", "Biden"} <= set(report["enrolled"])
    assert report["enrolled"]["Obama"] == 3  # obama.jpg, obama2.jpg and obama-480p.jpg are one person
    assert any("two_people.jpg" in reason for reason in report["skipped"])
    (video,) = report["videos"]
    assert video["frames"] == 275
    seen = video["seen"]
    # Lin-Manuel Miranda faces the camera for seconds; Alex Lacamoire's small, blurred frames score just
    # below the 1%-false-accept bar against his one photo, so the default decision leaves him unknown.
    assert sum(s["frames"] for s in seen["Lin Manuel Miranda"]) > 30, f"he should be seen for a while: {seen}"
    assert "Obama" not in seen and "Biden" not in seen
    capture = cv2.VideoCapture(video["annotated"])
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 275


def test_demo_on_a_users_folder_with_a_people_folder_and_a_named_photo(capsys, media_dir, tmp_path):
    folder = tmp_path / "mine"
    shutil.copytree(media_dir / "knn_examples" / "train" / "obama", folder / "people" / "Barack")
    frame = cv2.imread(str(media_dir / "knn_examples" / "test" / "obama1.jpg"))
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0,
                             (frame.shape[1], frame.shape[0]))
    for _ in range(10):
        writer.write(frame)
    writer.release()
    shutil.copy(media_dir / "biden.jpg", folder / "joe-biden.jpg")  # beside people/: named after its file
    report = run_demo(capsys, folder, "--out", tmp_path / "out")
    assert report["enrolled"] == {"Barack": 2, "Joe Biden": 1}
    (video,) = report["videos"]
    # 10 frames at 10 Hz; the first one primes the track (named once two frames agree)
    assert [round(s["end_s"] - s["start_s"], 1) for s in video["seen"]["Barack"]] == [0.8]
    assert Path(video["annotated"]).is_file()


@pytest.mark.parametrize("argv, message", [
    (["demo", "/no/such/folder"], "no such folder"),
])
def test_demo_refuses_a_missing_folder_clearly(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
