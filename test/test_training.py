"""The training pipeline: losses, sampler, split, a tiny real training run, export, and the recipes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from face_recognition_ros.encoders.efficientnet import EfficientNetEncoder
from face_recognition_ros.training.config import (
    TrainingConfigError,
    config_from_dict,
    load_config,
)
from face_recognition_ros.training.augment import augment_face
from face_recognition_ros.training.config import AugmentConfig, LossConfig
from face_recognition_ros.training.data import (
    FaceArrays,
    FaceDataModule,
    PKBatchSampler,
    make_val_pairs,
    split_identities,
)
from face_recognition_ros.training.deploy import embed_arrays, export_encoder
from face_recognition_ros.training.losses import DistillationLoss, MetricLoss, PairClassifierLoss
from face_recognition_ros.training.module import FaceEmbeddingModule
from face_recognition_ros.training.runner import train

# One thread: on a shared, oversubscribed CPU two torch threads can run ten times slower.
torch.set_num_threads(1)
RECIPE_DIR = Path(__file__).resolve().parents[1] / "config" / "train"
RECIPES = sorted(RECIPE_DIR.glob("*.yaml"))
SIZE = 32  # tiny crops keep the CPU runs to seconds


# ---- synthetic faces ---------------------------------------------------------------------------

def smooth_patterns(rng: np.random.Generator, count: int) -> np.ndarray:
    """Random low-frequency colour images (count, SIZE, SIZE, 3) float in [0, 255]."""
    import cv2

    coarse = rng.uniform(0, 255, (count, 4, 4, 3)).astype(np.float32)
    return np.stack([cv2.resize(c, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) for c in coarse])


def synthetic_faces(identities: int, per_identity: int, seed: int) -> FaceArrays:
    """Each identity is a smooth pattern; each sample adds an equally strong random nuisance pattern
    and noise, so an untrained network sees mostly nuisance and training must learn to ignore it."""
    rng = np.random.default_rng(seed)
    base = smooth_patterns(np.random.default_rng(1234), identities)  # identities fixed across seeds
    labels = np.repeat(np.arange(identities), per_identity)
    nuisance = smooth_patterns(rng, labels.size)
    noise = rng.normal(0, 10, (labels.size, SIZE, SIZE, 3))
    crops = np.clip(0.7 * base[labels] + 0.3 * nuisance + noise, 0, 255).astype(np.uint8)
    return FaceArrays(crops, labels.astype(np.int64), [f"id{i}" for i in range(identities)])


def tiny_config(tmp_path: Path, kind: str, **loss) -> dict:
    return {
        "name": f"tiny_{kind}",
        "seed": 0,
        "out_dir": str(tmp_path),
        "data": {"input_size": SIZE, "identities_per_batch": 4, "images_per_identity": 4, "val_pairs": 200,
                 # Off: colour and mirror image are what tells the synthetic identities apart.
                 "augment": {key: 0.0 for key in AugmentConfig.__dataclass_fields__}},
        "model": {"embedding_dim": 16, "dropout": 0.0, "stochastic_depth": 0.0},
        "loss": {"kind": kind, **loss},
        "optim": {"lr": 3e-3, "warmup_epochs": 0, "scheduler": "constant", "weight_decay": 0.0},
        "trainer": {"max_epochs": 1, "log_every_n_steps": 1, "tensorboard": False},
    }


def separation(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """d': distance between mean same-pair and mean different-pair cosine, in pooled standard deviations."""
    similarity = embeddings @ embeddings.T
    upper = np.triu(np.ones_like(similarity, dtype=bool), 1)
    same = (labels[:, None] == labels[None, :]) & upper
    different = (labels[:, None] != labels[None, :]) & upper
    pooled = np.sqrt((similarity[same].var() + similarity[different].var()) / 2)
    return float((similarity[same].mean() - similarity[different].mean()) / pooled)


@torch.no_grad()
def batch_statistics_embeddings(module: FaceEmbeddingModule, crops: np.ndarray) -> np.ndarray:
    # Batch statistics (train-mode BatchNorm, no dropout in the tiny config): after a few steps the
    # running statistics (momentum 0.01) are not yet meaningful, the learned weights are.
    module.train()
    out = module(torch.from_numpy(crops)).numpy()
    module.eval()
    return out


# ---- losses on hand-built embeddings -----------------------------------------------------------

def clustered_embeddings(separated: bool) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.arange(4).repeat_interleave(4)
    centres = torch.eye(8)[:4] * 3.0
    rng = torch.Generator().manual_seed(0)
    spread = 0.05 if separated else 3.0
    return centres[labels] + spread * torch.randn(16, 8, generator=rng), labels


@pytest.mark.parametrize("kind", ["contrastive", "triplet"])
def test_metric_losses_are_lower_for_well_separated_embeddings(kind):
    loss = MetricLoss(kind, LossConfig(mining="all"))
    good = loss(*clustered_embeddings(separated=True))
    bad = loss(*clustered_embeddings(separated=False))
    assert good < 0.1
    assert bad > 3 * good


def test_semihard_triplet_mining_finds_no_triplets_in_separated_clusters():
    loss = MetricLoss("triplet", LossConfig(mining="semihard"))
    embeddings, labels = clustered_embeddings(separated=True)
    assert loss(embeddings, labels).item() == pytest.approx(0.0)
    assert loss(*clustered_embeddings(separated=False)).item() > 0.0


def test_pair_classifier_head_learns_same_versus_different():
    torch.manual_seed(0)
    loss = PairClassifierLoss(8, hidden=16)
    embeddings, labels = clustered_embeddings(separated=True)
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.05)
    first = loss(embeddings, labels).item()
    for _ in range(30):
        optimizer.zero_grad()
        value = loss(embeddings, labels)
        value.backward()
        optimizer.step()
    assert value.item() < first / 2


def test_relational_distillation_is_zero_only_when_similarities_match():
    teacher = torch.nn.functional.normalize(torch.randn(6, 12), dim=1)
    rotation = torch.linalg.qr(torch.randn(12, 12))[0]
    loss = DistillationLoss("relational", 12, 12)
    assert loss(teacher @ rotation, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(torch.randn(6, 12), teacher).item() > 0.01


# ---- data ---------------------------------------------------------------------------------------

def test_identity_split_is_disjoint_seeded_and_complete():
    identities = [f"p{i}" for i in range(40)]
    train_ids, val_ids = split_identities(identities, 0.2, seed=3)
    assert not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == sorted(identities)
    assert len(val_ids) == 8
    assert split_identities(identities, 0.2, seed=3) == (train_ids, val_ids)
    assert split_identities(identities, 0.2, seed=4) != (train_ids, val_ids)


def test_pk_batches_hold_p_identities_with_k_images_each():
    labels = np.repeat(np.arange(10), [2, 3, 5, 8, 4, 4, 6, 7, 3, 9])
    sampler = PKBatchSampler(labels, identities_per_batch=4, images_per_identity=3, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) > 0
    for batch in batches:
        counts = np.unique(labels[batch], return_counts=True)[1]
        assert counts.tolist() == [3, 3, 3, 3]
    assert list(sampler) != batches  # a new epoch draws new batches


def test_pk_sampler_gives_ranks_different_batches():
    labels = np.repeat(np.arange(12), 6)
    rank0 = list(PKBatchSampler(labels, 4, 3, seed=0, rank=0, world_size=2))
    rank1 = list(PKBatchSampler(labels, 4, 3, seed=0, rank=1, world_size=2))
    assert len(rank0) == len(rank1) == 3
    assert rank0 != rank1


def test_validation_pairs_are_balanced_and_labelled_right():
    labels = np.repeat(np.arange(5), 4)
    a, b, same = make_val_pairs(labels, 20, seed=0)
    assert same.sum() == (~same).sum() == 10
    assert np.all((labels[a] == labels[b]) == same)
    assert np.all(a != b)


def test_augmentation_keeps_shape_and_changes_pixels():
    crop = synthetic_faces(1, 1, seed=0).crops[0]
    out = augment_face(crop, np.random.default_rng(0), AugmentConfig(flip=1.0))
    assert out.shape == crop.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - crop.astype(int)).mean() > 1.0


# ---- a tiny real training run ------------------------------------------------------------------

def test_tiny_training_run_lowers_loss_and_separates_pairs_better(tmp_path):
    config = config_from_dict(tiny_config(tmp_path, "contrastive"))
    train_set = synthetic_faces(6, 8, seed=0)
    probe = synthetic_faces(6, 6, seed=1)  # fresh samples of the same identities
    val = synthetic_faces(6, 4, seed=2)
    datamodule = FaceDataModule.from_arrays(config.data, train_set, val)

    torch.manual_seed(0)
    untrained = FaceEmbeddingModule(config.to_dict(), num_classes=6)
    probe_batch = {"image": torch.from_numpy(probe.crops), "label": torch.from_numpy(probe.labels)}
    with torch.no_grad():
        loss_before = untrained.train().training_loss(probe_batch)["loss"].item()
    separation_before = separation(batch_statistics_embeddings(untrained, probe.crops), probe.labels)

    config.trainer.max_epochs = 10
    result = train(config, datamodule=datamodule, progress=False)
    trained = FaceEmbeddingModule.load_from_checkpoint(tmp_path / "tiny_contrastive" / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        loss_after = trained.train().training_loss(probe_batch)["loss"].item()
    separation_after = separation(batch_statistics_embeddings(trained, probe.crops), probe.labels)

    assert loss_after < 0.7 * loss_before
    assert separation_after > separation_before + 0.5
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert (tmp_path / "tiny_contrastive" / "csv" / "metrics.csv").is_file()
    assert result.exported is not None and np.isfinite(result.exported["threshold"])


def first_tiny_triplet_epoch(tmp_path: Path):
    """One epoch (two batches) of the tiny triplet recipe: its config, data module and last.ckpt."""
    config = config_from_dict(tiny_config(tmp_path, "triplet", mining="all"))
    config.trainer.limit_train_batches = 2
    datamodule = FaceDataModule.from_arrays(config.data, synthetic_faces(4, 4, 0), synthetic_faces(4, 3, 2))
    train(config, datamodule=datamodule, progress=False, export=False)
    return config, datamodule, tmp_path / "tiny_triplet" / "checkpoints" / "last.ckpt"


def test_training_resumes_from_its_last_checkpoint(tmp_path):
    config, datamodule, last = first_tiny_triplet_epoch(tmp_path)
    first = torch.load(last, weights_only=False)
    assert first["epoch"] == 0 and first["global_step"] > 0
    config.trainer.max_epochs = 2
    train(config, resume=last, datamodule=datamodule, progress=False, export=False)
    # one more epoch's steps on top of the first run's: continued, not restarted
    assert torch.load(last, weights_only=False)["global_step"] == 2 * first["global_step"]


def test_exported_checkpoint_gives_the_training_embeddings(tmp_path):
    config = config_from_dict(tiny_config(tmp_path, "classification"))
    config.trainer.limit_train_batches = 2
    train_set, val = synthetic_faces(4, 4, 0), synthetic_faces(4, 3, 2)
    datamodule = FaceDataModule.from_arrays(config.data, train_set, val)
    result = train(config, datamodule=datamodule, progress=False, export=False)
    out = tmp_path / "deploy.pt"
    meta = export_encoder(result.best_checkpoint, out, datamodule.val, datamodule.val_pairs)
    encoder = EfficientNetEncoder(weights=out)
    module = FaceEmbeddingModule.load_from_checkpoint(result.best_checkpoint).eval()
    np.testing.assert_allclose(encoder.embed(val.crops), embed_arrays(module, val.crops), atol=1e-5)
    assert encoder.default_threshold == pytest.approx(meta["threshold"])
    assert encoder.template.size == (SIZE, SIZE)


# ---- recipes ------------------------------------------------------------------------------------

def test_there_is_a_recipe_for_every_stage():
    names = {path.stem for path in RECIPES}
    assert {"stage1_classification", "stage2_contrastive", "stage2_triplet", "stage2_pair_classifier",
            "distill_dlib", "vggface2_gpu_ddp"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_every_recipe_parses_and_builds_its_model(path):
    config = load_config(path)
    teacher_dim = 128 if config.loss.kind == "distill" else None
    module = FaceEmbeddingModule(config.to_dict(), num_classes=10, teacher_dim=teacher_dim)
    assert module.network.embedding_dim == config.model.embedding_dim
    assert (module.distill is not None) == (config.loss.kind == "distill")


def test_unknown_recipe_key_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("loss:\n  kind: triplet\n  marign: 0.3\n")
    with pytest.raises(TrainingConfigError, match="unknown key.*marign"):
        load_config(path)
    with pytest.raises(TrainingConfigError, match="loss.kind"):
        config_from_dict({"loss": {"kind": "magic"}})


def test_a_recipe_based_on_another_changes_only_the_keys_it_sets(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\ndata:\n  input_size: 96\n  augment:\n    flip: 0.3\n    blur: 0.4\n"
        "  datasets:\n    - root: a\n    - root: b\n      labelled: false\n"
        "optim:\n  lr: 2.0e-3\n  warmup_epochs: 0.3\nmodel:\n  init_from: old.ckpt\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text(
        "base: ../base.yaml\nname: child\ndata:\n  augment:\n    blur: 0.0\n  datasets:\n    - root: c\n"
        "optim:\n  lr: 5.0e-4\nmodel:\n  init_from: null\n")
    (tmp_path / "grandchild.yaml").write_text("base: sub/child.yaml\nname: grandchild\ntrainer:\n  max_epochs: 3\n")
    config = load_config(tmp_path / "grandchild.yaml", overrides=["optim.warmup_epochs=0.1"])
    assert config.name == "grandchild" and config.trainer.max_epochs == 3
    assert config.data.input_size == 96  # inherited through two levels
    assert (config.data.augment.flip, config.data.augment.blur) == (0.3, 0.0)  # sections merge key by key
    assert [d.root for d in config.data.datasets] == ["c"]  # a list replaces the base's list
    assert config.optim.lr == 5.0e-4 and config.optim.warmup_epochs == 0.1  # --set comes last
    assert config.model.init_from is None  # null clears an inherited value


def test_a_missing_or_circular_base_recipe_is_a_clear_error(tmp_path):
    (tmp_path / "orphan.yaml").write_text("base: gone.yaml\nname: orphan\n")
    with pytest.raises(TrainingConfigError, match=r"cannot read training config .*gone\.yaml.*base of .*orphan\.yaml"):
        load_config(tmp_path / "orphan.yaml")
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(TrainingConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "bad.yaml").write_text("base: [a.yaml, b.yaml]\n")
    with pytest.raises(TrainingConfigError, match="base names one recipe"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("base: a_base.yaml\nloss:\n  marign: 0.3\n")
    (tmp_path / "a_base.yaml").write_text("name: a_base\n")
    with pytest.raises(TrainingConfigError, match=r"typo\.yaml\.loss: unknown key.*marign"):
        load_config(tmp_path / "typo.yaml")


def test_an_unknown_key_in_a_base_recipe_is_reported_with_the_base_file_that_holds_it(tmp_path):
    (tmp_path / "base.yaml").write_text("data:\n  datasets:\n    - root: a\n      labeled: true\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\nname: child\n")
    with pytest.raises(TrainingConfigError, match=r"base\.yaml\.data\.datasets\[0\]: unknown key.*labeled") as error:
        load_config(tmp_path / "child.yaml")
    assert "child.yaml" not in str(error.value).split(":")[0]


def test_the_continued_and_gpu_recipes_share_the_base_recipes_data_and_losses():
    base = load_config(RECIPE_DIR / "b0_ensemble_112.yaml")
    continued, gpu = load_config(RECIPE_DIR / "b0_ensemble_112_continued.yaml"), load_config(RECIPE_DIR / "b0_ensemble_112_gpu.yaml")
    assert continued.data == base.data and continued.loss == base.loss
    # The GPU recipe adds the shipped stages 3 to 5's neighbour term, and nothing else, to the losses.
    stage3 = load_config(RECIPE_DIR / "b0_ensemble_112_neighbours.yaml")
    assert gpu.loss == stage3.loss and dataclasses.replace(gpu.loss, neighbour_weight=0.0) == base.loss
    assert gpu.data.datasets == base.data.datasets and gpu.data.augment == base.data.augment
    assert (gpu.data.identities_per_batch, gpu.data.unlabelled_per_batch) == (64, 256)
