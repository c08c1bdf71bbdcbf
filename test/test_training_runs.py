"""Training runs: faces without identity in the loss, Lite0 initialisation, channels_last, resuming
(metrics kept, and from a checkpoint copied to a fresh folder), mixed-batch distillation end to end."""

from __future__ import annotations

import csv
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from face_recognition_ros.encoders.efficientnet_network import EfficientNetEmbedder
from face_recognition_ros.errors import ModelError
from face_recognition_ros.training.config import TrainingConfigError, config_from_dict
from face_recognition_ros.training.data import UNLABELLED, FaceArrays, FaceDataModule
from face_recognition_ros.training.imagenet_init import default_lite0_path, init_from_lite0, map_lite0_to_b0
from face_recognition_ros.training.module import FaceEmbeddingModule
from face_recognition_ros.training.runner import channels_last_enabled, train

from test_training import first_tiny_triplet_epoch, synthetic_faces, tiny_config

torch.set_num_threads(1)


# ---- faces without identity ---------------------------------------------------------------------


def test_unlabelled_rows_take_part_in_distillation_only():
    config = tiny_config(Path("/tmp"), "distill", supervised="triplet", mining="all", distill_weight=1.0)
    torch.manual_seed(0)
    module = FaceEmbeddingModule(config, num_classes=4, teacher_dim=6)
    # A per-row network (no BatchNorm), so that a row's embedding does not depend on the rest of the batch.
    module.network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 16))
    faces = synthetic_faces(4, 3, seed=0)
    extra = synthetic_faces(4, 2, seed=5)
    images = torch.from_numpy(np.concatenate([faces.crops, extra.crops]))
    labels = torch.from_numpy(np.r_[faces.labels, np.full(8, UNLABELLED)])
    teacher = torch.nn.functional.normalize(torch.randn(20, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    mixed = module.training_loss({"image": images, "label": labels, "teacher": teacher})
    labelled_only = module.training_loss({"image": images[:12], "label": labels[:12], "teacher": teacher[:12]})
    # The label loss ignores the unlabelled rows; distillation uses them (a bigger similarity matrix).
    assert mixed["label"].item() == pytest.approx(labelled_only["label"].item(), rel=1e-5)
    assert mixed["distill"].item() != pytest.approx(labelled_only["distill"].item(), rel=1e-3)
    # Treating the unlabelled rows as one more identity would change the label loss.
    as_identity = module.training_loss({"image": images, "label": torch.where(labels < 0, 9, labels), "teacher": teacher})
    assert as_identity["label"].item() != pytest.approx(mixed["label"].item(), rel=1e-3)


def test_combined_distillation_is_relational_plus_weighted_projection():
    from face_recognition_ros.training.losses import DistillationLoss

    torch.manual_seed(0)
    student, teacher = torch.randn(8, 4), torch.nn.functional.normalize(torch.randn(8, 6), dim=1)
    relational = DistillationLoss("relational", 4, 6, offset=0.2)
    projection = DistillationLoss("projection", 4, 6)
    both = DistillationLoss("relational+projection", 4, 6, offset=0.2, projection_weight=0.1)
    both.projection.load_state_dict(projection.projection.state_dict())
    expected = relational(student, teacher) + 0.1 * projection(student, teacher)
    assert both(student, teacher).item() == pytest.approx(expected.item(), rel=1e-6)
    # the offset shifts the relational targets: zero loss when the student's cosines equal dot - offset
    rotation = torch.linalg.qr(torch.randn(6, 6))[0]
    assert DistillationLoss("relational", 6, 6)(teacher @ rotation, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert relational(teacher @ rotation, teacher).item() == pytest.approx(0.04, rel=1e-4)


# ---- Lite0 initialisation -----------------------------------------------------------------------


def synthetic_lite0_state() -> dict[str, torch.Tensor]:
    """A Lite0 state dict (lukemelas names) with random tensors of the shapes B0 needs, plus the classifier."""
    target = EfficientNetEmbedder().state_dict()
    generator = torch.Generator().manual_seed(0)
    state = {}
    for b0, lite in map_lite0_to_b0().items():
        like = target[b0]
        state[lite] = (torch.randint(0, 100, like.shape, generator=generator) if not like.is_floating_point()
                       else torch.rand(like.shape, generator=generator) + 0.5)
    state["_fc.weight"], state["_fc.bias"] = torch.randn(1000, 1280), torch.randn(1000)
    return state


def check_lite0_loaded(network: EfficientNetEmbedder, state: dict[str, torch.Tensor], report: dict) -> None:
    loaded = network.state_dict()
    pairs = map_lite0_to_b0()
    assert sorted(report["loaded"]) == sorted(pairs)
    for b0, lite in pairs.items():
        torch.testing.assert_close(loaded[b0], state[lite].to(loaded[b0].dtype), rtol=0, atol=0, msg=b0)
    # Every Lite0 tensor but the ImageNet classifier is used; every B0 conv/BN tensor of the backbone is set.
    assert report["unused"] == ["_fc.bias", "_fc.weight"]
    backbone = {k for k in loaded if k.startswith("backbone.")}
    squeeze_excitation = {k for k in backbone if ".reduce." in k or ".expand." in k}
    assert backbone - squeeze_excitation == set(pairs)
    assert report["se_modules"] == 16


def test_lite0_mapping_loads_every_tensor_it_claims_and_se_starts_as_identity(tmp_path):
    state = synthetic_lite0_state()
    path = tmp_path / "efficientnet-lite0-test.pth"
    torch.save(state, path)
    torch.manual_seed(0)
    network = EfficientNetEmbedder()
    report = init_from_lite0(network, path, se_bias=4.0)
    check_lite0_loaded(network, state, report)
    # SE: zero expand weights and bias 4 scale every channel by sigmoid(4), whatever the input.
    block = network.backbone.features[3].block[2]
    x = torch.randn(2, block.expand.out_channels, 5, 5)
    torch.testing.assert_close(block(x), x * torch.sigmoid(torch.tensor(4.0)))
    # The mapping reaches every stage: the network is no longer its random initialisation.
    fresh = EfficientNetEmbedder().state_dict()
    assert not torch.equal(network.state_dict()["backbone.features.16.block.3.0.weight"],
                           fresh["backbone.features.16.block.3.0.weight"])


def test_foreign_or_misshapen_lite0_files_are_model_errors(tmp_path):
    state = synthetic_lite0_state()
    del state["_blocks.7._depthwise_conv.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ModelError, match="missing _blocks.7._depthwise_conv.weight"):
        init_from_lite0(EfficientNetEmbedder(), tmp_path / "missing.pth")
    state = synthetic_lite0_state()
    state["_conv_head.weight"] = torch.zeros(1000, 320, 1, 1)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(ModelError, match="_conv_head.weight has shape"):
        init_from_lite0(EfficientNetEmbedder(), tmp_path / "shape.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        init_from_lite0(EfficientNetEmbedder(), tmp_path / "junk.pth")


def test_the_real_lite0_weights_load_when_the_package_is_installed():
    try:
        path = default_lite0_path()
    except ModelError as error:
        pytest.skip(str(error))
    state = torch.load(path, map_location="cpu", weights_only=True)
    network = EfficientNetEmbedder()
    check_lite0_loaded(network, state, init_from_lite0(network, path))


# ---- channels_last ------------------------------------------------------------------------------


def test_channels_last_is_the_cpu_default_and_gives_the_same_embeddings(tmp_path):
    config = config_from_dict(tiny_config(tmp_path, "triplet"))
    assert channels_last_enabled(config)
    config.trainer.channels_last = False
    assert not channels_last_enabled(config)
    config.trainer.channels_last, config.trainer.accelerator = None, "gpu"
    assert not channels_last_enabled(config)
    torch.manual_seed(0)
    module = FaceEmbeddingModule(tiny_config(tmp_path, "triplet"), num_classes=4).eval()
    crops = torch.from_numpy(synthetic_faces(3, 2, seed=0).crops)
    plain = module(crops)
    module.set_channels_last(True)
    conv = module.network.backbone.features[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert module.network_input(crops).is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(module(crops), plain, rtol=1e-4, atol=1e-5)


def test_training_runs_channels_last_by_default_on_cpu(tmp_path, monkeypatch):
    seen = []
    original = FaceEmbeddingModule.training_loss

    def spy(self, batch):
        seen.append(self.network.backbone.features[0][0].weight.is_contiguous(memory_format=torch.channels_last))
        return original(self, batch)

    monkeypatch.setattr(FaceEmbeddingModule, "training_loss", spy)
    for setting, expected in ((None, True), (False, False)):
        seen.clear()
        config = config_from_dict(tiny_config(tmp_path, "triplet", mining="all"))
        config.trainer.limit_train_batches, config.trainer.channels_last = 1, setting
        datamodule = FaceDataModule.from_arrays(config.data, synthetic_faces(4, 4, 0), synthetic_faces(4, 3, 2))
        train(config, datamodule=datamodule, progress=False, export=False)
        assert seen and all(flag == expected for flag in seen)


# ---- resuming -----------------------------------------------------------------------------------


def read_metrics(run_dir: Path) -> list[dict]:
    with (run_dir / "csv" / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def val_epochs(rows: list[dict]) -> list[int]:
    return [int(row["epoch"]) for row in rows if row.get("val_acc")]


def test_resume_keeps_the_earlier_epochs_metrics_and_drops_an_interrupted_epochs(tmp_path):
    config = config_from_dict(tiny_config(tmp_path, "triplet", mining="all"))
    config.trainer.limit_train_batches = 2
    datamodule = FaceDataModule.from_arrays(config.data, synthetic_faces(4, 4, 0), synthetic_faces(4, 3, 2))
    config.trainer.max_epochs = 2
    train(config, datamodule=datamodule, progress=False, export=False)
    run_dir = tmp_path / "tiny_triplet"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert val_epochs(read_metrics(run_dir)) == [0, 1]
    keep = run_dir / "epoch1.ckpt"
    shutil.copyfile(last, keep)
    # A third epoch that is "interrupted" after logging: its rows go when resuming from epoch 1's checkpoint.
    config.trainer.max_epochs = 3
    train(config, resume=last, datamodule=datamodule, progress=False, export=False)
    assert val_epochs(read_metrics(run_dir)) == [0, 1, 2]
    config.trainer.max_epochs = 4
    train(config, resume=keep, datamodule=datamodule, progress=False, export=False)
    rows = read_metrics(run_dir)
    assert val_epochs(rows) == [0, 1, 2, 3]
    assert len([r for r in rows if r.get("val_acc") and int(r["epoch"]) == 2]) == 1
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(steps)


def test_a_run_of_fixed_length_epochs_resumes_every_remaining_step(tmp_path):
    """The B0 recipe's way of bounding a run (max_epochs x data.batches_per_epoch) resumes exactly:
    a run stopped after one of three epochs ends, resumed, where the uninterrupted run ends."""
    config = config_from_dict(tiny_config(tmp_path, "triplet", mining="all"))
    config.data.batches_per_epoch, config.trainer.max_epochs = 3, 1
    datamodule = FaceDataModule.from_arrays(config.data, synthetic_faces(4, 4, 0), synthetic_faces(4, 3, 2))
    train(config, datamodule=datamodule, progress=False, export=False)
    last = tmp_path / "tiny_triplet" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 3
    config.trainer.max_epochs = 3
    train(config, resume="auto", datamodule=datamodule, progress=False, export=False)
    state = torch.load(last, weights_only=False)
    assert (state["epoch"], state["global_step"]) == (2, 9)


def test_resuming_a_step_bounded_run_is_refused_before_any_work(tmp_path):
    config, datamodule, last = first_tiny_triplet_epoch(tmp_path)
    before = last.read_bytes()
    config.trainer.max_steps, config.trainer.max_epochs = 6, 3
    with pytest.raises(TrainingConfigError, match="bounded by trainer.max_steps"):
        train(config, resume=last, datamodule=datamodule, progress=False, export=False)
    assert last.read_bytes() == before


def test_last_checkpoint_follows_every_epoch_even_without_a_better_score(tmp_path, monkeypatch):
    import face_recognition_ros.training.module as module_code

    scores = itertools.chain([0.9, 0.5, 0.4], itertools.repeat(0.3))  # the first epoch stays the best

    def falling(*args):
        return {"acc": next(scores), "threshold": 0.5, "auc": 0.5, "tar_far1e-2": 0.0}

    monkeypatch.setattr(module_code, "pair_metrics", falling)
    config = config_from_dict(tiny_config(tmp_path, "triplet", mining="all"))
    config.trainer.limit_train_batches, config.trainer.max_epochs = 1, 3
    datamodule = FaceDataModule.from_arrays(config.data, synthetic_faces(4, 4, 0), synthetic_faces(4, 3, 2))
    result = train(config, datamodule=datamodule, progress=False, export=False)
    last = torch.load(tmp_path / "tiny_triplet" / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 2 and last["global_step"] == 3
    assert result.best_score == pytest.approx(0.9) and "best-00-" in result.best_checkpoint.name
    # Resuming keeps the best score: a worse epoch after the resume does not become the best.
    config.trainer.max_epochs = 4
    result = train(config, resume="auto", datamodule=datamodule, progress=False, export=False)
    assert result.best_score == pytest.approx(0.9) and "best-00-" in result.best_checkpoint.name
    assert torch.load(tmp_path / "tiny_triplet" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 4


def test_a_copied_run_folder_resumes_elsewhere_with_its_best_score_and_auto_finds_last(tmp_path, monkeypatch):
    import face_recognition_ros.training.module as module_code

    scores = itertools.chain([0.9, 0.5], itertools.repeat(0.6))

    def falling(*args):
        return {"acc": next(scores), "threshold": 0.5, "auc": 0.5, "tar_far1e-2": 0.0}

    monkeypatch.setattr(module_code, "pair_metrics", falling)
    config = config_from_dict(tiny_config(tmp_path / "first_machine", "triplet", mining="all"))
    config.trainer.limit_train_batches = 2
    datamodule = FaceDataModule.from_arrays(config.data, synthetic_faces(4, 4, 0), synthetic_faces(4, 3, 2))
    train(config, datamodule=datamodule, progress=False, export=False)
    first = torch.load(tmp_path / "first_machine" / "tiny_triplet" / "checkpoints" / "last.ckpt", weights_only=False)
    # "Another machine": the run folder moves to another path (ModelCheckpoint records absolute paths).
    shutil.copytree(tmp_path / "first_machine", tmp_path / "second_machine")
    shutil.rmtree(tmp_path / "first_machine")
    fresh = tmp_path / "second_machine" / "tiny_triplet" / "checkpoints"
    config.out_dir, config.trainer.max_epochs = str(tmp_path / "second_machine"), 2
    result = train(config, resume="auto", datamodule=datamodule, progress=False)
    second = torch.load(fresh / "last.ckpt", weights_only=False)
    assert second["epoch"] == 1 and second["global_step"] == 2 * first["global_step"]
    assert not list(fresh.glob("last-v*.ckpt")) and not list(fresh.glob(".resume-*"))
    # The best score travelled: the resumed epoch's 0.5 did not replace the first epoch's 0.9.
    assert result.best_score == pytest.approx(0.9)
    assert result.best_checkpoint.parent == fresh and "best-00-" in result.best_checkpoint.name
    assert result.exported is not None
    # auto without a checkpoint starts the run.
    config.out_dir = str(tmp_path / "third_machine")
    train(config, resume="auto", datamodule=datamodule, progress=False, export=False)
    assert torch.load(tmp_path / "third_machine" / "tiny_triplet" / "checkpoints" / "last.ckpt",
                      weights_only=False)["global_step"] == second["global_step"]
    with pytest.raises(ModelError, match="no such checkpoint"):
        train(config, resume=tmp_path / "nothing.ckpt", datamodule=datamodule, progress=False)


# ---- mixed-batch distillation end to end ---------------------------------------------------------


def test_mixed_batch_distillation_with_an_ensemble_target_learns(tmp_path):
    """Labelled identities + unlabelled faces, distillation + triplet, max_steps: the student gets
    closer to the teacher's similarity structure on fresh samples."""
    values = tiny_config(tmp_path, "distill", supervised="triplet", mining="all", distill_weight=5.0)
    values["data"] |= {"identities_per_batch": 3, "images_per_identity": 3, "unlabelled_per_batch": 6}
    values["trainer"] |= {"max_epochs": 50, "max_steps": 40}
    config = config_from_dict(values)
    identities = synthetic_faces(6, 6, seed=0)
    extra = synthetic_faces(6, 4, seed=3)  # the same "people", used as unlabelled faces

    def teacher_of(arrays: FaceArrays) -> np.ndarray:
        # A teacher that knows the identity: one-hot + a little noise, centred cosines ~ same/different.
        rng = np.random.default_rng(len(arrays))
        vectors = np.eye(6)[arrays.labels] + 0.1 * rng.normal(size=(len(arrays), 6))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)

    train_set = FaceArrays(np.concatenate([identities.crops, extra.crops]),
                           np.r_[identities.labels, np.full(len(extra), UNLABELLED)], identities.identities,
                           np.concatenate([teacher_of(identities), teacher_of(extra)]))
    datamodule = FaceDataModule.from_arrays(config.data, train_set, synthetic_faces(6, 3, seed=2))
    probe = synthetic_faces(6, 4, seed=9)
    target = teacher_of(probe) @ teacher_of(probe).T
    torch.manual_seed(0)
    before = FaceEmbeddingModule(config.to_dict(), num_classes=6, teacher_dim=6)
    result = train(config, datamodule=datamodule, progress=False, export=False)
    after = FaceEmbeddingModule.load_from_checkpoint(tmp_path / "tiny_distill" / "checkpoints" / "last.ckpt")
    assert torch.load(tmp_path / "tiny_distill" / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 40

    def gap(module):
        module.train()  # batch statistics, as in test_training (running statistics lag a short run)
        with torch.no_grad():
            student = module(torch.from_numpy(probe.crops)).numpy()
        return float(np.mean((student @ student.T - target) ** 2))

    assert gap(after) < 0.8 * gap(before)
    assert result.best_checkpoint is not None
