"""Consistent teaching (loss.teacher_online) and mixup for distillation (loss.distill_mixup): the
teachers score each view the student trains on, blends included. Synthetic caches and stand-in
teachers for the wiring; the real dlib_resnet teacher on real LFW faces for the re-alignment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from face_recognition_ros.alignment import ARCFACE_112, align_faces
from face_recognition_ros.image_files import load_image
from face_recognition_ros.training.augment_torch import blend_faces
from face_recognition_ros.training.config import DatasetConfig, TrainingConfigError, config_from_dict
from face_recognition_ros.encoders.efficientnet import input_template
from face_recognition_ros.training.data import UNLABELLED, FaceDataModule
from face_recognition_ros.training.face_cache import recrop
from face_recognition_ros.training.module import FaceEmbeddingModule
from face_recognition_ros.training.runner import build_module, online_teacher, train
from face_recognition_ros.training.teacher import OnlineTeacher, TeacherSpec, combine_teachers

from test_training import synthetic_faces, tiny_config
from test_training_data import MeanColourTeacher, write_cache

torch.set_num_threads(1)

COLOUR_TEACHERS = ["test_colour_teacher", "test_fine_teacher"]


# ---- blending ----------------------------------------------------------------------------------


def flat_faces(values: list[int]) -> torch.Tensor:
    """(N, 8, 8, 3) uint8 crops, face i filled with values[i]."""
    return torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 8, 8, 3).contiguous()


def test_blend_faces_blends_only_faces_without_identity_and_never_with_themselves():
    values = [10, 20, 30, 40, 100, 150, 200, 250]
    crops = flat_faces(values)
    labels = torch.tensor([0, 0, 1, 1, UNLABELLED, UNLABELLED, UNLABELLED, UNLABELLED])
    blended = blend_faces(crops, labels < 0, 1.0, torch.Generator().manual_seed(0))
    assert blended.dtype == torch.uint8 and blended.shape == crops.shape
    torch.testing.assert_close(blended[:4], crops[:4])  # labelled faces stay themselves
    pool = values[4:]
    changed = 0
    for row in range(4, 8):
        pixels = blended[row].unique()
        assert pixels.numel() == 1  # one weight per face
        value, own = int(pixels), values[row]
        # a convex combination of the face and one other face of the pool
        assert any(min(own, other) <= value <= max(own, other) for other in pool if other != own)
        changed += value != own
    assert changed >= 3  # weights are uniform in 0..1: keeping a face exactly is rare
    assert crops[4:, 0, 0, 0].tolist() == pool  # the input is not modified


def test_blend_faces_leaves_the_batch_alone_without_probability_or_a_partner():
    crops = flat_faces([10, 20, 30])
    labels = torch.tensor([0, 0, UNLABELLED])
    assert blend_faces(crops, labels < 0, 1.0) is crops  # one face without identity: nobody to blend with
    assert blend_faces(crops, torch.ones(3, dtype=torch.bool), 0.0) is crops


def test_blend_faces_follows_its_probability():
    crops = flat_faces(list(range(0, 250, 1))[:200])
    blended = blend_faces(crops, torch.ones(200, dtype=torch.bool), 0.3, torch.Generator().manual_seed(1))
    changed = (blended[:, 0, 0, 0] != crops[:, 0, 0, 0]).float().mean().item()
    assert 0.18 < changed < 0.42


# ---- recipe keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("loss, message", [
    ({"kind": "distill", "teacher_online": True, "teacher_similarity": "centred"}, "teacher_online needs .*rescaled"),
    ({"kind": "triplet", "teacher_online": True, "teacher_similarity": "rescaled"}, "teacher_online needs loss.kind: distill"),
    ({"kind": "distill", "teacher_online": "yes", "teacher_similarity": "rescaled"}, "teacher_online is true or false"),
    ({"kind": "distill", "teacher_similarity": "rescaled", "distill_mixup": 0.5}, "distill_mixup needs loss.teacher_online"),
    ({"kind": "distill", "teacher_online": True, "teacher_similarity": "rescaled", "distill_mixup": 1.5},
     "distill_mixup is a probability"),
])
def test_inconsistent_online_teacher_keys_are_clear_errors(loss, message):
    with pytest.raises(TrainingConfigError, match=message):
        config_from_dict({"loss": loss})


def test_the_consistent_recipe_continues_stage_2_with_an_online_teacher():
    from face_recognition_ros.training.config import load_config

    recipes = Path(__file__).resolve().parents[1] / "config" / "train"
    config, base = load_config(recipes / "b0_ensemble_112_consistent.yaml"), load_config(recipes / "b0_ensemble_112.yaml")
    assert config.data == base.data
    assert config.loss.teacher_online and 0.0 < config.loss.distill_mixup <= 1.0
    assert config.loss.teacher == ["dlib_resnet", "mobileface"] and config.loss.teacher_similarity == "rescaled"
    stage2 = load_config(recipes / "b0_ensemble_112_continued.yaml")
    assert config.model.init_from == f"{stage2.out_dir}/{stage2.name}/best.ckpt"


# ---- the online teacher ------------------------------------------------------------------------


def test_online_targets_of_unaugmented_crops_are_the_clean_targets(tmp_path):
    """Stand-in teachers whose template is the student's: the online target of a clean crop is its
    precomputed target, block by block, so target similarities mean the same in both."""
    cache = write_cache(tmp_path / "cache", {"a": 3, "b": 3})
    template = input_template(32)
    crops = recrop(cache.load_storage_crops(), template)
    spec = TeacherSpec(COLOUR_TEACHERS, mix=[1, 3], similarity="rescaled")
    clean = combine_teachers([spec.create(name).embed(crops) for name in spec.names], spec.normalised_mix(), "rescaled")
    teacher = OnlineTeacher.from_spec(spec, clean.scales, clean.offset, template)
    np.testing.assert_allclose(teacher.targets(crops), clean.vectors, atol=2e-3)
    # A changed view gets the teacher's view of that image, not the clean face's target.
    darker = (crops // 2).astype(np.uint8)
    np.testing.assert_allclose(teacher.targets(darker)[:, :12],
                               clean.scales[0] * MeanColourTeacher().embed(darker), atol=1e-5)
    assert not np.allclose(teacher.targets(darker), clean.vectors, atol=1e-2)


def test_an_online_teacher_needs_the_rescaled_scales():
    with pytest.raises(ValueError, match="rescaled"):
        OnlineTeacher.from_spec(TeacherSpec(COLOUR_TEACHERS, similarity="centred"), None, 0.0, input_template(32))
    with pytest.raises(ValueError, match="every teacher"):
        OnlineTeacher.from_spec(TeacherSpec(COLOUR_TEACHERS), [1.0], 0.0, input_template(32))


def test_dlib_teacher_sees_the_same_face_in_the_students_crop(lfw_dir):
    """The real teacher, given the student's 112x112 crop re-aligned to its own 150x150 template,
    embeds the face as it does from its own crop (cosine near 1), and still tells two people apart."""
    from face_recognition_ros.detection import RetinaFaceDetector
    from face_recognition_ros.encoders.dlib_resnet import DlibResNetEncoder, default_weights_path

    if not default_weights_path().is_file():
        pytest.skip(f"dlib weights not installed at {default_weights_path()} (pip install face_recognition_models)")
    encoder, detector = DlibResNetEncoder(), RetinaFaceDetector()
    own, student = [], []
    for name in ("Aaron_Peirsol/Aaron_Peirsol_0001.jpg", "Aaron_Peirsol/Aaron_Peirsol_0002.jpg",
                 "Abdullah_Gul/Abdullah_Gul_0001.jpg"):
        image = load_image(lfw_dir / name)
        detections = detector.detect(image)
        assert len(detections), f"no face found in {name}"
        own.append(align_faces(image, detections.landmarks[:1], encoder.template)[0])
        student.append(align_faces(image, detections.landmarks[:1], ARCFACE_112)[0])
    direct = encoder.embed(np.stack(own))
    teacher = OnlineTeacher([encoder], [1.0], 0.0, ARCFACE_112)
    via_student = teacher.targets(np.stack(student))
    assert np.all(np.sum(direct * via_student, axis=1) > 0.99)
    same, different = via_student[0] @ via_student[1], via_student[0] @ via_student[2]
    assert same > 0.93 and different < same - 0.05  # dlib's own scale: same people score above ~0.91


# ---- training with it --------------------------------------------------------------------------


def disk_recipe(tmp_path: Path, monkeypatch, **loss) -> dict:
    """A distilling recipe over two synthetic datasets on disk (one without identities)."""
    import face_recognition_ros.training.data as data_module

    identities = {"subset": {f"p{i}": 4 for i in range(8)}, "utk": {"unlabeled": 12}}
    for name in identities:
        (tmp_path / "data" / name).mkdir(parents=True)
    monkeypatch.setattr(data_module, "build_face_cache", lambda root, cache_dir=None, **kwargs: write_cache(
        Path(cache_dir), identities[Path(root).name], seed=len(Path(root).name)))
    values = tiny_config(tmp_path, "distill", supervised="triplet", mining="all", teacher=COLOUR_TEACHERS,
                         teacher_similarity="rescaled", **loss)
    values["name"] = "tiny_online"
    values["data"] |= {"identities_per_batch": 2, "images_per_identity": 2, "unlabelled_per_batch": 4,
                       "val_fraction": 0.25, "val_pairs": 20, "cache_dir": str(tmp_path / "caches"),
                       "datasets": [DatasetConfig(root=str(tmp_path / "data" / "subset"), validation=True).__dict__,
                                    DatasetConfig(root=str(tmp_path / "data" / "utk"), labelled=False).__dict__]}
    values["trainer"] |= {"max_epochs": 1, "max_steps": 3}
    return values


def test_an_online_teacher_scores_every_training_view_and_stays_out_of_the_checkpoint(tmp_path, monkeypatch):
    config = config_from_dict(disk_recipe(tmp_path, monkeypatch, teacher_online=True, distill_mixup=1.0))
    datamodule = FaceDataModule(config.data, config.seed, teacher=TeacherSpec.from_loss(config.loss))
    module = build_module(config, datamodule)
    assert isinstance(module.online_teacher, OnlineTeacher)
    assert module.online_teacher.scales == datamodule.train.teacher_scales
    seen = []
    real_targets = module.online_teacher.targets

    def recording(crops):
        seen.append(crops.copy())
        return real_targets(crops)

    module.online_teacher.targets = recording
    batch = next(iter(datamodule.train_dataloader()))
    batch["teacher"] = torch.full_like(batch["teacher"], float("nan"))  # the clean targets must not be used
    terms = module.training_loss(batch)
    assert torch.isfinite(terms["loss"]) and len(seen) == 1
    labelled = (batch["label"] >= 0).numpy()
    # The teacher scored what the student saw: labelled faces as they came, the others blended.
    np.testing.assert_array_equal(seen[0][labelled], batch["image"].numpy()[labelled])
    assert not np.array_equal(seen[0][~labelled], batch["image"].numpy()[~labelled])

    result = train(config, datamodule=datamodule, progress=False, export=False)
    state = torch.load(result.run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 3
    assert all(key.startswith(("network.", "label_loss.", "distill.")) for key in state["state_dict"])


def test_an_online_teacher_without_the_datasets_scales_is_refused(tmp_path):
    values = tiny_config(tmp_path, "distill", teacher_similarity="rescaled", teacher_online=True)
    config = config_from_dict(values)
    faces = synthetic_faces(4, 4, seed=0)
    faces.teacher = np.eye(4, dtype=np.float32)[faces.labels]  # targets without scales (as from a face pack)
    datamodule = FaceDataModule.from_arrays(config.data, faces, synthetic_faces(4, 2, seed=1))
    with pytest.raises(TrainingConfigError, match="teacher_online needs each teacher's scale"):
        online_teacher(config, datamodule)
    assert FaceEmbeddingModule(config.to_dict(), num_classes=4, teacher_dim=4).online_teacher is None

