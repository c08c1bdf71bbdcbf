"""Training on a GPU from a face pack: the batched torch augmentation, the pack (WebP faces, int8
teacher targets, parts checked by SHA-256), the data module that gathers and augments on the device,
the time budget, and the README's two commands end to end (on the CPU, in bf16, on a tiny dataset).
No GPU is needed: the same code runs on the CPU device here."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from face_recognition_ros.cli.main import main
from face_recognition_ros.training import time_budget
from face_recognition_ros.training.augment_torch import augment_batch, jpeg_tables
from face_recognition_ros.training.config import AugmentConfig, TrainingConfigError, config_from_dict, load_config
from face_recognition_ros.training.data import UNLABELLED, FaceArrays, make_val_pairs
from face_recognition_ros.training.face_cache import DatasetError
from face_recognition_ros.training.face_pack import dequantise_rows, quantise_rows, read_pack, write_pack
from face_recognition_ros.training.packed_data import PackedFaceDataModule

from test_training_commands import TINY_OVERRIDES, tiny_environment, tiny_identities  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parents[1]
GPU_RECIPE = "config/train/b0_ensemble_112_gpu.yaml"
NO_AUGMENTATION = AugmentConfig(**{key: 0.0 for key in AugmentConfig.__dataclass_fields__})
STRONG = AugmentConfig(flip=0.5, brightness=0.3, contrast=0.3, saturation=0.3, grayscale=0.1, blur=0.2,
                       rotate_deg=10.0, scale=0.08, shift_px=6.0, downscale=0.25, jpeg=0.25, noise=0.1, erase=0.25)


@pytest.fixture(scope="module")
def lfw_crops(lfw_dir: Path) -> np.ndarray:
    """24 real faces (LFW's centre crops) at 48x48, RGB."""
    photos = sorted(lfw_dir.glob("*/*.jpg"))[:24]
    crops = [cv2.resize(cv2.imread(str(p))[80:170, 80:170], (48, 48), interpolation=cv2.INTER_AREA)[..., ::-1]
             for p in photos]
    return np.ascontiguousarray(np.stack(crops))


def only(**steps) -> AugmentConfig:
    return replace(NO_AUGMENTATION, **steps)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- augment_torch -------------------------------------------------------------------------------

def test_augmentation_with_every_step_off_returns_the_crops_unchanged(lfw_crops):
    crops = torch.from_numpy(lfw_crops)
    assert torch.equal(augment_batch(crops, NO_AUGMENTATION, generator()), crops)


def test_flip_alone_mirrors_exactly_the_faces_it_draws(lfw_crops):
    crops = torch.from_numpy(lfw_crops)
    out = augment_batch(crops, only(flip=1.0), generator())
    assert torch.equal(out, crops.flip(2))
    out = augment_batch(crops, only(flip=0.5), generator(3))
    mirrored = [bool(torch.equal(o, c.flip(1))) for o, c in zip(out, crops)]
    unchanged = [bool(torch.equal(o, c)) for o, c in zip(out, crops)]
    assert all(m or u for m, u in zip(mirrored, unchanged)) and any(mirrored) and any(unchanged)


def test_geometry_with_a_mirror_is_the_mirror_image_when_rotation_and_shift_are_tiny(lfw_crops):
    crops = torch.from_numpy(lfw_crops)
    out = augment_batch(crops, only(flip=1.0, rotate_deg=1e-4, shift_px=1e-4), generator())
    assert (out.int() - crops.flip(2).int()).abs().max() <= 1


def test_grayscale_gives_equal_channels(lfw_crops):
    out = augment_batch(torch.from_numpy(lfw_crops), only(grayscale=1.0), generator())
    assert (out[..., 0].int() - out[..., 1].int()).abs().max() <= 1
    assert (out[..., 1].int() - out[..., 2].int()).abs().max() <= 1


def test_strong_augmentation_keeps_shape_dtype_and_faces_recognisably_close(lfw_crops):
    crops = torch.from_numpy(lfw_crops)
    out = augment_batch(crops, STRONG, generator(1))
    assert out.shape == crops.shape and out.dtype == torch.uint8
    difference = (out.float() - crops.float()).abs().mean(dim=(1, 2, 3))
    assert bool((difference > 0).all()), "every face is perturbed (brightness, contrast, geometry always apply)"
    assert float(difference.mean()) < 60, "perturbed, not destroyed"


def test_the_same_generator_seed_gives_the_same_batch(lfw_crops):
    crops = torch.from_numpy(lfw_crops)
    first = augment_batch(crops, STRONG, generator(5))
    assert torch.equal(first, augment_batch(crops, STRONG, generator(5)))
    assert not torch.equal(first, augment_batch(crops, STRONG, generator(6)))


@pytest.mark.parametrize("step", ["blur", "downscale", "noise", "jpeg", "erase"])
def test_each_probabilistic_step_changes_only_the_faces_it_draws(lfw_crops, step):
    crops = torch.from_numpy(lfw_crops)
    always = augment_batch(crops, only(**{step: 1.0}), generator(2))
    changed = (always.int() - crops.int()).abs().amax(dim=(1, 2, 3)) > 0
    assert bool(changed.all()), f"{step} at probability 1 changes every face"
    never = augment_batch(crops, only(**{step: 0.0}), generator(2))
    assert torch.equal(never, crops)


def test_the_jpeg_step_degrades_about_as_much_as_real_jpeg(lfw_crops):
    crops = torch.from_numpy(lfw_crops)
    ours = float((augment_batch(crops, only(jpeg=1.0), generator()).float() - crops.float()).abs().mean())
    real = np.mean([np.abs(cv2.imdecode(cv2.imencode(".jpg", c, [cv2.IMWRITE_JPEG_QUALITY, q])[1], 1).astype(float) - c).mean()
                    for c in lfw_crops for q in (30, 60, 90)])
    assert 0.4 * real < ours < 2.0 * real


def test_jpeg_tables_are_the_standards_at_quality_50_and_scale_with_quality():
    tables = jpeg_tables(torch.tensor([50, 90, 10]))
    assert tables[0, 0, 0, :4].tolist() == [16, 11, 10, 16]
    assert tables[0, 1, 0, :4].tolist() == [17, 18, 24, 47]
    assert bool((tables[1] <= tables[0]).all()) and bool((tables[2] >= tables[0]).all())


def test_augment_batch_refuses_what_is_not_a_uint8_nhwc_batch():
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(torch.zeros(2, 3, 8, 8), NO_AUGMENTATION)


# --- face pack -----------------------------------------------------------------------------------

def pack_arrays(crops: np.ndarray, teacher_dim: int = 12) -> tuple[FaceArrays, FaceArrays, tuple]:
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, UNLABELLED, UNLABELLED], np.int64)
    teacher = rng.normal(size=(labels.size, teacher_dim)).astype(np.float32)
    train = FaceArrays(crops[:18], labels, [f"id{i}" for i in range(8)], teacher, teacher_offset=0.25)
    val_labels = np.array([0, 0, 1, 1, 2, 2], np.int64)
    val = FaceArrays(crops[18:24], val_labels, ["v0", "v1", "v2"])
    return train, val, make_val_pairs(val_labels, 10, 0)


def test_int8_teacher_targets_keep_every_dot_product_within_a_percent():
    vectors = np.random.default_rng(1).normal(size=(50, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    codes, scale = quantise_rows(vectors)
    assert codes.dtype == np.int8
    restored = dequantise_rows(codes, scale)
    assert np.abs(restored - vectors).max() <= scale.max() / 2 + 1e-7
    assert np.abs(restored @ restored.T - vectors @ vectors.T).max() < 0.01


def test_a_pack_round_trips_labels_teachers_pairs_and_close_faces(lfw_crops, tmp_path):
    train, val, pairs = pack_arrays(lfw_crops)
    meta = write_pack(train, val, pairs, tmp_path / "pack", recipe="tiny", quality=90, part_mib=0.004)
    assert len(meta["parts"]) > 1, "a small part size splits the faces over several parts"
    assert sum(part["count"] for part in meta["parts"]) == len(train)
    pack = read_pack(tmp_path / "pack")
    np.testing.assert_array_equal(pack.train.labels, train.labels)
    assert pack.train.identities == train.identities and pack.val.identities == val.identities
    assert pack.train.teacher_offset == pytest.approx(0.25)
    assert np.abs(pack.train.teacher - train.teacher).max() < np.abs(train.teacher).max() / 127
    for got, want in zip(pack.val_pairs, pairs):
        np.testing.assert_array_equal(got, want)
    assert pack.train.crops.shape == train.crops.shape and pack.val.crops.shape == val.crops.shape
    assert np.abs(pack.train.crops.astype(int) - train.crops).mean() < 6, "WebP at quality 90 is close"
    # Colour order survives (RGB in, RGB out): the red channel stays the red channel.
    assert np.corrcoef(pack.train.crops[..., 0].ravel(), train.crops[..., 0].ravel())[0, 1] > 0.95


def test_a_missing_or_damaged_part_is_an_error_naming_it(lfw_crops, tmp_path):
    train, val, pairs = pack_arrays(lfw_crops)
    meta = write_pack(train, val, pairs, tmp_path / "pack", part_mib=0.004)
    second = tmp_path / "pack" / meta["parts"][1]["file"]
    data = bytearray(second.read_bytes())
    data[-10] ^= 0xFF
    second.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=f"{second.name} is damaged"):
        read_pack(tmp_path / "pack")
    second.unlink()
    with pytest.raises(DatasetError, match=f"{second.name} is missing"):
        read_pack(tmp_path / "pack")


def test_a_pack_is_never_written_over_another_and_a_folder_without_one_is_no_pack(lfw_crops, tmp_path):
    train, val, pairs = pack_arrays(lfw_crops)
    write_pack(train, val, pairs, tmp_path / "pack")
    before = (tmp_path / "pack" / "meta.json").read_bytes()
    with pytest.raises(DatasetError, match="already holds a face pack"):
        write_pack(train, val, pairs, tmp_path / "pack")
    assert (tmp_path / "pack" / "meta.json").read_bytes() == before
    with pytest.raises(DatasetError, match="no face pack"):
        read_pack(tmp_path)


def test_the_packed_data_module_gathers_batches_of_the_packs_faces_on_the_device(lfw_crops, tmp_path):
    train, val, pairs = pack_arrays(lfw_crops)
    write_pack(train, val, pairs, tmp_path / "pack", quality=90)
    config = config_from_dict({"data": {"input_size": 48, "identities_per_batch": 2, "images_per_identity": 2,
                                        "unlabelled_per_batch": 2, "batches_per_epoch": 3,
                                        "augment": {key: 0.0 for key in AugmentConfig.__dataclass_fields__}},
                               "loss": {"kind": "distill", "teacher": "dlib_resnet"}}).data
    module = PackedFaceDataModule(str(tmp_path / "pack"), config)
    batches = list(module.train_dataloader())
    assert len(batches) == 3 and set(batches[0]) == {"index"}
    batch = module.on_after_batch_transfer(batches[0], 0)
    index = batch["index"].numpy()
    assert batch["image"].shape == (6, 48, 48, 3)
    np.testing.assert_array_equal(batch["image"].numpy(), module.train.crops[index])
    np.testing.assert_array_equal(batch["label"].numpy(), module.train.labels[index])
    np.testing.assert_array_equal(batch["teacher"].numpy(), module.train.teacher[index])
    assert (batch["label"] < 0).sum() == 2, "the unlabelled faces of the PK batch"
    validation = {"image": torch.zeros(2, 48, 48, 3, dtype=torch.uint8), "label": torch.zeros(2), "index": torch.zeros(2)}
    assert module.on_after_batch_transfer(validation, 0) is validation
    with pytest.raises(DatasetError, match="48px faces"):
        PackedFaceDataModule(str(tmp_path / "pack"), replace(config, input_size=112))


# --- time budget ---------------------------------------------------------------------------------

def test_the_time_budget_plans_whole_epochs_from_the_measured_rate(monkeypatch):
    config = config_from_dict({"data": {"batches_per_epoch": 50}})

    class Loader:
        def __len__(self):
            return 50

    class Data:
        def train_dataloader(self):
            return Loader()

    monkeypatch.setattr(time_budget, "measure_steps_per_second", lambda *args, **kwargs: 10.0)
    plan = time_budget.fit_epochs_to_minutes(config, None, Data(), minutes=5)
    # 10 steps/s x 300 s x 0.85 = 2550 steps = 51 epochs of 50
    assert plan["max_epochs"] == config.trainer.max_epochs == 51
    assert config.trainer.max_time == "00:00:06:00"
    with pytest.raises(TrainingConfigError, match="positive"):
        time_budget.fit_epochs_to_minutes(config, None, Data(), minutes=0)


def test_a_gpu_recipe_on_a_machine_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(TrainingConfigError, match="no CUDA device"):
        time_budget.training_device(config_from_dict({"trainer": {"accelerator": "gpu"}}))


# --- the README's commands -----------------------------------------------------------------------

def tiny_gpu_overrides(tmp_path: Path) -> list[str]:
    """The GPU recipe shrunk to seconds on the CPU: bf16 autocast as on the GPU, no shipped-checkpoint start
    (the tiny network is 8-d)."""
    overrides = [*TINY_OVERRIDES, f"data.cache_dir={tmp_path / 'cache'}", "data.unlabelled_per_batch=4",
                 "data.batches_per_epoch=2", "trainer.accelerator=cpu", "trainer.precision=bf16-mixed",
                 "model.init_from=null"]
    return [arg for override in overrides for arg in ("--set", override)]


def test_pack_faces_then_train_from_the_pack_in_bf16_within_a_time_budget(tiny_environment, tmp_path,  # noqa: F811
                                                                          monkeypatch, capsys):
    torch.set_num_threads(1)
    monkeypatch.chdir(REPO)
    tiny = tiny_gpu_overrides(tmp_path)
    pack = tmp_path / "pack"
    assert main(["pack-faces", "--config", GPU_RECIPE, "--out", str(pack), *tiny, *tiny_environment]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["faces"] > report["labelled_faces"] > 0 and report["teacher_dim"] == 128 + 16, "dlib_resnet and the tiny MobileFace"
    # The device has neither the datasets nor the teacher weights: the pack must be enough.
    for name in ("FACE_RECOGNITION_TRAIN_DATA", "FACE_RECOGNITION_MOBILEFACE_WEIGHTS"):
        monkeypatch.delenv(name)
    code = main(["train", "--config", GPU_RECIPE, "--pack", str(pack), "--minutes", "0.05", "--out",
                 str(tmp_path / "runs"), "--no-progress", *tiny])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out[out.index("{"):])
    assert Path(result["exported"]["path"]).is_file()
    assert result["exported"]["recipe"] == "b0_ensemble_112_gpu"
    # The run above trained with the shipped stage 3's neighbour term, on the pack's teacher targets.
    assert load_config(REPO / GPU_RECIPE).loss.neighbour_weight > 0


@pytest.fixture()
def tiny_pack(tiny_environment, tmp_path, monkeypatch, capsys) -> tuple[Path, list[str]]:  # noqa: F811
    """A pack of the tiny datasets made by pack-faces, and the overrides that train from it."""
    torch.set_num_threads(1)
    monkeypatch.chdir(REPO)
    tiny = tiny_gpu_overrides(tmp_path)
    pack = tmp_path / "pack"
    assert main(["pack-faces", "--config", GPU_RECIPE, "--out", str(pack), *tiny, *tiny_environment]) == 0
    capsys.readouterr()
    return pack, tiny


def test_train_from_a_pack_made_for_another_input_size_exits_2(tiny_pack, tmp_path, capsys):
    pack, tiny = tiny_pack
    code = main(["train", "--config", GPU_RECIPE, "--pack", str(pack), "--out", str(tmp_path / "runs"),
                 "--no-progress", *tiny, "--set", "data.input_size=48"])
    assert code == 2 and "32px faces" in capsys.readouterr().err


def test_minutes_cannot_resize_a_resumed_run(tmp_path):
    from face_recognition_ros.training.runner import train

    config = config_from_dict({"out_dir": str(tmp_path), "name": "r"})
    (tmp_path / "r" / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 0}, tmp_path / "r" / "checkpoints" / "last.ckpt")
    with pytest.raises(TrainingConfigError, match="--minutes sizes a new run"):
        train(config, resume="auto", minutes=5)


def test_minutes_of_zero_is_refused_not_ignored(tiny_pack, tmp_path, capsys):
    pack, tiny = tiny_pack
    with pytest.raises(SystemExit) as exit_info:  # a usage error, before any data is read
        main(["train", "--config", GPU_RECIPE, "--pack", str(pack), "--minutes", "0", "--out",
              str(tmp_path / "runs"), "--no-progress", *tiny])
    assert exit_info.value.code == 2 and "argument --minutes: 0 is outside (0, inf]" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_gpu_script_refuses_missing_arguments_and_a_folder_that_is_no_pack(tmp_path):
    import subprocess

    script = REPO / "scripts" / "gpu_train.sh"
    usage = subprocess.run(["bash", str(script)], cwd=REPO, capture_output=True, text=True)
    assert usage.returncode == 2 and "usage:" in usage.stderr
    no_pack = subprocess.run(["bash", str(script), str(tmp_path), str(tmp_path / "out")], cwd=REPO,
                             capture_output=True, text=True)
    assert no_pack.returncode == 2 and "no face pack" in no_pack.stderr
    assert not (tmp_path / "out").exists(), "nothing is written before the arguments are checked"
