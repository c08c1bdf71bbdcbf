"""Every `face-recognition-ros train` command the README documents runs through the real CLI.

The commands are read from the README's ``train-commands`` block and run as written, in a scratch
folder that links ``config/``, with a tiny LFW dataset (``--data``) and ``--set`` overrides that
shrink the run to seconds. A broken entry point, a recipe that no longer parses or a stage that cannot
start from the previous stage's checkpoint fails here.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from face_recognition_ros.cli.main import main

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- train-commands"
TINY_OVERRIDES = [
    "data.input_size=32", "data.val_fraction=0.2", "data.val_pairs=40", "data.batch_size=8",
    "data.identities_per_batch=4", "data.images_per_identity=2", "model.embedding_dim=8",
    "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.max_time=null",
    "trainer.tensorboard=false", "trainer.num_threads=1",
]


def documented_train_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(MARKER)
    block = re.search(r"```bash\n(.*?)```", text[start:], re.S)
    assert block, "the train-commands marker must precede a ```bash block"
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    commands = [shlex.split(line) for line in lines if line]
    assert commands and all(c[:2] == ["face-recognition-ros", "train"] for c in commands), commands
    return [c[1:] for c in commands]


@pytest.fixture()
def tiny_identities(lfw_dir: Path, tmp_path: Path) -> Path:
    """10 LFW people with 4 photos each, as a folder-per-identity dataset."""
    root = tmp_path / "tiny"
    people = sorted(p for p in lfw_dir.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 4)[:10]
    for person in people:
        (root / person.name).mkdir(parents=True)
        for photo in sorted(person.glob("*.jpg"))[:4]:
            (root / person.name / photo.name).symlink_to(photo)
    return root


def test_readme_documents_a_command_for_every_cpu_recipe():
    recipes = {Path(c[c.index("--config") + 1]).name for c in documented_train_commands()}
    cpu_recipes = {p.name for p in (REPO / "config" / "train").glob("*.yaml")
                   if "accelerator: gpu" not in p.read_text(encoding="utf-8")}
    assert cpu_recipes <= recipes, f"recipes without a documented command: {sorted(cpu_recipes - recipes)}"


def test_every_documented_train_command_runs_on_a_tiny_dataset(tiny_identities, tmp_path, monkeypatch, capsys):
    torch.set_num_threads(1)
    work = tmp_path / "work"
    work.mkdir()
    (work / "config").symlink_to(REPO / "config")
    monkeypatch.chdir(work)
    tiny = ["--data", str(tiny_identities), "--no-progress"]
    for override in [*TINY_OVERRIDES, f"data.cache_dir={tmp_path / 'cache'}"]:
        tiny += ["--set", override]
    for argv in documented_train_commands():
        resuming = "--resume" in argv
        # A resumed run needs an epoch left to do: the recipe's first run stopped after one.
        extra = ["--set", "trainer.max_epochs=2"] if resuming else []
        capsys.readouterr()
        code = main([*argv, *tiny, *extra])
        out = capsys.readouterr().out
        assert code == 0, f"{shlex.join(argv)} exited with {code}"
        report = json.loads(out[out.index("{"):])
        assert report["exported"] is not None and Path(report["exported"]["path"]).is_file(), shlex.join(argv)
        if resuming:
            last = torch.load(Path(report["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=False)
            assert last["epoch"] == 1, "the resumed run should have gone on to its second epoch (0-based 1)"
