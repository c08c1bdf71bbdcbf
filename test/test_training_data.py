"""Training data of several datasets: recipe keys, selection and split, mixed batches, packed crops,
ensemble teachers, strong augmentation. Tiny synthetic caches written on disk; seconds each."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from face_recognition_ros.alignment import ARCFACE_112, STORAGE_TEMPLATE
from face_recognition_ros.encoders import register_encoder
from face_recognition_ros.encoders.base import FaceEncoder
from face_recognition_ros.training.augment import augment_face
from face_recognition_ros.training.config import (
    AugmentConfig,
    DataConfig,
    DatasetConfig,
    TrainingConfigError,
    config_from_dict,
    dataset_list,
)
from face_recognition_ros.training.data import (
    UNLABELLED,
    FaceDataModule,
    PKBatchSampler,
    select_training_faces,
)
from face_recognition_ros.training.face_cache import CachedFace, DatasetError, FaceCache, packed_crops, recrop
from face_recognition_ros.training.teacher import TeacherSpec, combine_teachers, ensemble_targets

torch.set_num_threads(1)

# ---- synthetic caches on disk -------------------------------------------------------------------


def write_cache(root: Path, faces_per_identity: dict[str, int], seed: int = 0) -> FaceCache:
    """A face cache folder with random 256x256 storage crops (JPEG, as build_face_cache writes them)."""
    rng = np.random.default_rng(seed)
    cache = FaceCache(root, str(root / "dataset"))
    for identity, count in faces_per_identity.items():
        for n in range(count):
            source = f"{identity}/{n:03d}.jpg"
            crop = f"crops/{identity}/{n:03d}.jpg"
            (root / crop).parent.mkdir(parents=True, exist_ok=True)
            coarse = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
            image = cv2.resize(coarse, STORAGE_TEMPLATE.size, interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)
            cv2.imwrite(str(root / crop), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cache.faces.append(CachedFace(identity, source, crop, ((0.0, 0.0),) * 5, 0.99))
    cache.save()
    return cache


def fake_faces(faces_per_identity: dict[str, int]) -> FaceCache:
    """A cache manifest only (no crop files): enough for selection."""
    cache = FaceCache(Path("/nonexistent"), "dataset")
    for identity, count in faces_per_identity.items():
        cache.faces += [CachedFace(identity, f"{identity}/{n}.jpg", f"crops/{identity}/{n}.jpg", ((0.0, 0.0),) * 5, 1.0)
                        for n in range(count)]
    return cache


class MeanColourTeacher(FaceEncoder):
    """A deterministic stand-in teacher: per-channel means of a coarse grid of the crop (+ an offset,
    so that centring has something to remove)."""

    name = "test_colour_teacher"

    def __init__(self, weights=None, device="cpu", cells: int = 2, offset: float = 5.0) -> None:
        super().__init__()
        self.cells, self.offset, self.weights = cells, offset, weights
        self.calls = 0

    @property
    def embedding_size(self) -> int:
        return 3 * self.cells * self.cells

    @property
    def template(self):
        return ARCFACE_112.scaled(32, 32)

    @property
    def weights_hash(self) -> str:
        return f"cells{self.cells}"

    @property
    def network(self):
        raise NotImplementedError

    def preprocess(self, faces):
        raise NotImplementedError

    def embed(self, faces: np.ndarray) -> np.ndarray:
        self.calls += 1
        n, h, w, _ = faces.shape
        grid = faces.reshape(n, self.cells, h // self.cells, self.cells, w // self.cells, 3).mean(axis=(2, 4))
        vectors = grid.reshape(n, -1) / 255.0 + self.offset
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


class FineColourTeacher(MeanColourTeacher):
    name = "test_fine_teacher"

    def __init__(self, weights=None, device="cpu") -> None:
        super().__init__(weights, device, cells=4, offset=3.0)


register_encoder("test_colour_teacher")(MeanColourTeacher)
register_encoder("test_fine_teacher")(FineColourTeacher)


# ---- recipe keys --------------------------------------------------------------------------------


def test_datasets_teachers_and_new_trainer_keys_parse():
    config = config_from_dict({
        "data": {"datasets": [{"root": "a", "validation": True, "namespace": "celeba"},
                              {"root": "/x/utk", "labelled": False, "exclude_file": "e.txt"}],
                 "unlabelled_per_batch": 8},
        "model": {"backbone_init": "efficientnet_lite0"},
        "loss": {"kind": "distill", "teacher": ["dlib_resnet", "mobileface"],
                 "teacher_weights": {"mobileface": "$HOME/m-0000.params"}, "teacher_mix": [2, 1]},
        "trainer": {"channels_last": False, "max_steps": 10},
    })
    assert [d.labelled for d in config.data.datasets] == [True, False]
    assert isinstance(config.data.datasets[0], DatasetConfig)
    spec = TeacherSpec.from_loss(config.loss)
    assert spec.names == ["dlib_resnet", "mobileface"]
    assert spec.normalised_mix() == pytest.approx([2 / 3, 1 / 3])
    # The older single-root recipes are one labelled validation dataset.
    (single,) = dataset_list(DataConfig(root="celeba-subset", exclude_file="x.txt"))
    assert single.root == "celeba-subset" and single.labelled and single.validation and single.exclude_file == "x.txt"


@pytest.mark.parametrize("values, message", [
    ({"data": {"datasets": [{"root": "a", "labeled": True}]}}, r"datasets\[0\].*unknown key.*labeled"),
    ({"data": {"datasets": [{"root": "a", "labelled": False}]}}, "at least one labelled"),
    ({"data": {"datasets": {"root": "a"}}}, "expected a list"),
    ({"data": {"unlabelled_per_batch": 4}}, "unlabelled_per_batch needs"),
    ({"loss": {"kind": "distill", "teacher": ["dlib_resnet", "dlib_resnet"]}}, "distinct"),
    ({"loss": {"kind": "distill", "teacher": ["a", "b"], "teacher_mix": [1.0]}}, "teacher_mix"),
    ({"loss": {"kind": "distill", "teacher": "a", "teacher_weights": {"b": "x"}}}, "teacher_weights"),
    ({"loss": {"distill_method": "both"}}, "distill_method"),
    ({"model": {"backbone_init": "imagenet"}}, "backbone_init"),
])
def test_malformed_new_keys_are_clear_errors(values, message):
    with pytest.raises(TrainingConfigError, match=message):
        config_from_dict(values)


# ---- selection and split ------------------------------------------------------------------------


def test_selection_splits_excludes_and_pools_faces_without_identity(tmp_path):
    subset = fake_faces({f"s{i}": 4 for i in range(10)})
    extra = fake_faces({"e1": 3, "e2": 1, "e3": 2, "s3": 2, "drop": 5})  # s3: the same person as subset's s3
    unlabelled = fake_faces({"unlabeled": 6})
    (tmp_path / "ex.txt").write_text("drop  # an LFW person\n")
    (tmp_path / "ex_u.txt").write_text("unlabeled/0.jpg\nunlabeled/1.jpg\n")
    datasets = [
        DatasetConfig(root="subset", namespace="celeba", validation=True),
        DatasetConfig(root="extra", namespace="celeba", exclude_file=str(tmp_path / "ex.txt")),
        DatasetConfig(root="utk", labelled=False, exclude_file=str(tmp_path / "ex_u.txt")),
    ]
    data = DataConfig(val_fraction=0.3, min_images_per_identity=2)
    selection = select_training_faces(datasets, [subset, extra, unlabelled], data, seed=0, use_unlabelled=True)
    val_keys = {f.key for f in selection.val}
    train_keys = {f.key for f in selection.train}
    assert len(val_keys) == 3 and val_keys <= {f"celeba/s{i}" for i in range(10)}
    assert not val_keys & train_keys
    assert all(f.dataset == 0 for f in selection.val)  # validation faces come from the validation dataset only
    assert "celeba/drop" not in train_keys | val_keys
    assert {"celeba/e1", "celeba/e3"} <= train_keys
    # e2 has one image: no identity to learn from, so it is distilled only, like the UTK faces
    pooled = {(f.dataset, f.face.source) for f in selection.unlabelled}
    assert (1, "e2/0.jpg") in pooled
    assert {(2, f"unlabeled/{n}.jpg") for n in range(2, 6)} <= pooled
    assert not {(2, "unlabeled/0.jpg"), (2, "unlabeled/1.jpg")} & pooled
    # s3 of the extra dataset is the subset's s3 (same namespace): merged when training, unused when validating
    s3_faces = [f for f in selection.train + selection.val if f.key == "celeba/s3"]
    assert len(s3_faces) in (4, 6) and (len(s3_faces) == 6) == ("celeba/s3" in train_keys)
    counts = selection.counts
    assert counts[1]["excluded"] == 5 and counts[2]["excluded"] == 2
    for tally, cache in zip(counts, [subset, extra, unlabelled]):
        assert tally["excluded"] + tally["train"] + tally["unlabelled"] + tally["val"] + tally["unused"] == len(cache.faces)
    # The split depends on the validation dataset only: adding training data keeps the same validation faces.
    alone = select_training_faces(datasets[:1], [subset], data, seed=0, use_unlabelled=False)
    assert [f.face.source for f in alone.val] == [f.face.source for f in selection.val]
    assert alone.unlabelled == [] and alone.counts[0]["unused"] == 0


# ---- mixed batches ------------------------------------------------------------------------------


def test_mixed_batches_hold_p_times_k_labelled_and_u_unlabelled_faces():
    labels = np.r_[np.repeat(np.arange(6), 4), np.full(30, UNLABELLED)]
    sampler = PKBatchSampler(labels, identities_per_batch=3, images_per_identity=2, seed=0, unlabelled_per_batch=5)
    assert len(sampler) == 6  # the unlabelled pool (30 / 5) is the larger one
    batches = list(sampler)
    seen = []
    for batch in batches:
        part = labels[batch]
        assert (part[:6] >= 0).all() and (part[6:] == UNLABELLED).all() and len(batch) == 11
        assert np.unique(part[:6], return_counts=True)[1].tolist() == [2, 2, 2]
        seen += batch[6:]
    assert sorted(seen) == list(range(24, 54))  # every unlabelled face once per epoch
    assert list(sampler) != batches
    fixed = PKBatchSampler(labels, 3, 2, seed=0, unlabelled_per_batch=5, batches_per_epoch=2)
    assert len(list(fixed)) == 2
    with pytest.raises(DatasetError, match="unlabelled faces per batch"):
        PKBatchSampler(labels[:24], 3, 2, unlabelled_per_batch=5)


# ---- packed crops -------------------------------------------------------------------------------


def test_packed_crops_equal_the_recropped_storage_crops_and_follow_the_cache(tmp_path):
    cache = write_cache(tmp_path / "cache", {"a": 3, "b": 2})
    template = ARCFACE_112.scaled(40, 40)
    wanted = [cache.faces[4], cache.faces[0], cache.faces[2]]
    expected = recrop(cache.load_storage_crops(wanted), template)
    np.testing.assert_array_equal(packed_crops(cache, wanted, template), expected)
    (packed,) = cache.root.glob("packed-40x40-*.npy")
    stamp = packed.stat().st_mtime_ns
    np.testing.assert_array_equal(packed_crops(cache, wanted, template, chunk=2), expected)
    assert packed.stat().st_mtime_ns == stamp  # read, not rebuilt
    grown = write_cache(tmp_path / "cache", {"a": 3, "b": 2, "c": 1})
    np.testing.assert_array_equal(packed_crops(grown, grown.faces[-1:], template),
                                  recrop(grown.load_storage_crops(grown.faces[-1:]), template))
    with pytest.raises(DatasetError, match="not in the cache"):
        packed_crops(cache, [CachedFace("z", "z/0.jpg", "crops/z/0.jpg", ((0.0, 0.0),) * 5, 1.0)], template)


# ---- teachers -----------------------------------------------------------------------------------


def cosines(x: np.ndarray) -> np.ndarray:
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def test_rescaled_ensemble_targets_are_the_weighted_mean_of_the_rescaled_cosines():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 8)) + 3.0, rng.normal(size=(20, 5)) - 1.0  # a: a large common component
    targets = combine_teachers([a, b], [0.75, 0.25], "rescaled")
    off_diagonal = ~np.eye(20, dtype=bool)

    def rescaled(x):
        c = cosines(x)
        mu = c[off_diagonal].mean()
        return (c - mu) / (1 - mu)

    np.testing.assert_allclose(targets.similarities(), 0.75 * rescaled(a) + 0.25 * rescaled(b), atol=1e-5)
    np.testing.assert_allclose(np.diag(targets.similarities()), 1.0, atol=1e-5)
    # a face scores 0 on average with the others, whatever the teacher's common component
    assert abs(targets.similarities()[off_diagonal].mean()) < 1e-5
    assert cosines(a)[off_diagonal].mean() > 0.8
    # one teacher: a monotone map of its cosines (the same ranking, so the same verification accuracy)
    one = combine_teachers([a], [1.0], "rescaled").similarities()[off_diagonal]
    assert np.array_equal(np.argsort(one, kind="stable"), np.argsort(cosines(a)[off_diagonal], kind="stable"))
    np.testing.assert_allclose(targets.similarities(np.array([3, 7])), targets.similarities()[np.ix_([3, 7], [3, 7])], atol=1e-6)


def test_centred_ensemble_cosines_are_the_weighted_mean_of_the_centred_cosines():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 8)) + 3.0, rng.normal(size=(20, 5)) - 1.0
    targets = combine_teachers([a, b], [0.75, 0.25], "centred")
    assert targets.offset == 0.0
    np.testing.assert_allclose(np.linalg.norm(targets.vectors, axis=1), 1.0, atol=1e-5)
    expected = 0.75 * cosines(a - a.mean(axis=0)) + 0.25 * cosines(b - b.mean(axis=0))
    np.testing.assert_allclose(targets.similarities(), expected, atol=1e-5)
    with pytest.raises(ValueError, match="similarity"):
        combine_teachers([a], [1.0], "raw")


def test_ensemble_targets_use_every_teacher_once_per_face_and_cache_them(tmp_path):
    first = write_cache(tmp_path / "one", {"a": 2, "b": 2})
    second = write_cache(tmp_path / "two", {"u": 3}, seed=1)
    spec = TeacherSpec(["test_colour_teacher", "test_fine_teacher"], mix=[1, 3], similarity="centred")
    groups = [(first, first.faces), (second, second.faces)]
    targets = ensemble_targets(spec, groups, progress=False)
    assert targets.vectors.shape == (7, 12 + 48)
    np.testing.assert_allclose(np.linalg.norm(targets.vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(targets.vectors[:, :12], axis=1), np.sqrt(0.25), atol=1e-5)
    # Row i is face i: the colour teacher's block is its centred embedding of that face's crop.
    crops = np.concatenate([recrop(c.load_storage_crops(), ARCFACE_112.scaled(32, 32)) for c in (first, second)])
    colour = MeanColourTeacher().embed(crops)
    centred = (colour - colour.mean(axis=0)) / np.linalg.norm(colour - colour.mean(axis=0), axis=1, keepdims=True)
    np.testing.assert_allclose(targets.vectors[:, :12], 0.5 * centred, atol=1e-5)
    assert len(list(first.root.glob("teacher-test_colour_teacher-*.npz"))) == 1
    assert len(list(second.root.glob("teacher-test_fine_teacher-*.npz"))) == 1
    np.testing.assert_array_equal(ensemble_targets(spec, groups, progress=False).vectors, targets.vectors)


def test_unset_environment_variable_in_teacher_weights_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_TEACHER_FILE", raising=False)
    spec = TeacherSpec(["mobileface"], {"mobileface": "$NO_SUCH_TEACHER_FILE"})
    with pytest.raises(DatasetError, match="NO_SUCH_TEACHER_FILE.*not set"):
        spec.create("mobileface")


def test_a_missing_teacher_weights_file_is_found_before_any_work(tmp_path):
    (tmp_path / "present.params").write_bytes(b"")
    TeacherSpec(["mobileface"], {"mobileface": str(tmp_path / "present.params")}).check_weights()
    with pytest.raises(DatasetError, match="teacher_weights.mobileface: no file .*absent.params"):
        TeacherSpec(["mobileface"], {"mobileface": str(tmp_path / "absent.params")}).check_weights()


@pytest.mark.parametrize("second_root, message", [
    ("$UNSET_TRAIN_DATA/extra", "datasets\\[1\\].root: .*UNSET_TRAIN_DATA.* not set"),
    ("{tmp}/nowhere", "datasets\\[1\\].root: .* is no folder"),
])
def test_every_dataset_root_is_checked_before_the_first_is_cached(tmp_path, monkeypatch, second_root, message):
    """A recipe whose second dataset cannot be found fails at once: an hour of detecting and aligning
    the first one is not spent only to stop at the second."""
    import face_recognition_ros.training.data as data_module

    from face_recognition_ros.training.runner import train

    monkeypatch.delenv("UNSET_TRAIN_DATA", raising=False)
    (tmp_path / "subset").mkdir()
    built = []
    monkeypatch.setattr(data_module, "build_face_cache", lambda root, *a, **k: built.append(root))
    recipe = {"name": "roots", "out_dir": str(tmp_path / "runs"),
              "data": {"datasets": [{"root": str(tmp_path / "subset"), "validation": True},
                                    {"root": second_root.format(tmp=tmp_path)}]}}
    with pytest.raises(DatasetError, match=message):
        train(config_from_dict(recipe), progress=False, export=False)
    assert built == []


def test_data_module_of_two_labelled_and_one_unlabelled_dataset(tmp_path, monkeypatch):
    """The whole path on disk: datasets by $VAR roots, caches under data.cache_dir, split, targets, batches."""
    import face_recognition_ros.training.data as data_module

    identities = {"subset": {f"p{i}": 3 for i in range(8)}, "extra": {"q1": 2, "q2": 1}, "utk": {"unlabeled": 5}}
    for name in identities:
        (tmp_path / "data" / name).mkdir(parents=True)
    built = {}

    def fake_build(root, cache_dir=None, **kwargs):  # detection is tested elsewhere: random crops here
        name = Path(root).name
        built[name] = Path(cache_dir)
        return write_cache(Path(cache_dir), identities[name], seed=list(identities).index(name))

    monkeypatch.setattr(data_module, "build_face_cache", fake_build)
    monkeypatch.setenv("TINY_TRAIN_DATA", str(tmp_path / "data"))
    config = DataConfig(input_size=32, val_fraction=0.25, val_pairs=20, identities_per_batch=2,
                        images_per_identity=2, unlabelled_per_batch=3, cache_dir=str(tmp_path / "caches"),
                        datasets=[DatasetConfig(root="$TINY_TRAIN_DATA/subset", validation=True),
                                  DatasetConfig(root="$TINY_TRAIN_DATA/extra"),
                                  DatasetConfig(root="$TINY_TRAIN_DATA/utk", labelled=False)])
    module = FaceDataModule(config, seed=0, teacher=TeacherSpec(["test_colour_teacher", "test_fine_teacher"]))
    module.setup()
    assert set(built) == {"subset", "extra", "utk"}
    assert all(path.parent == tmp_path / "caches" for path in built.values())
    assert module.val.crops.shape[1:] == (32, 32, 3) and len(module.val.identities) == 2
    train = module.train
    assert (train.labels == UNLABELLED).sum() == 6  # 5 UTK faces + q2's single image
    assert len(train.identities) == 6 + 1  # p* not in validation, plus q1
    assert train.teacher.shape == (len(train), 60)
    assert train.teacher_offset > 0.1  # rescaled targets of teachers with a common component (offset 5, 3)
    # Rows of the targets belong to their faces: the same face always gets the same target.
    again = FaceDataModule(config, seed=0, teacher=TeacherSpec(["test_colour_teacher", "test_fine_teacher"]))
    again.setup()
    np.testing.assert_allclose(again.train.teacher, train.teacher, atol=1e-6)
    batch = next(iter(module.train_dataloader()))
    assert batch["image"].shape == (7, 32, 32, 3) and (batch["label"][4:] == UNLABELLED).all()
    # An export needs the validation pairs only.
    light = FaceDataModule(config, seed=0)
    light.setup("validate")
    assert light.train is None and light.val_pairs is not None
    np.testing.assert_array_equal(light.val.crops, module.val.crops)


def test_no_progress_silences_caching_teacher_and_packing_bars(tmp_path, monkeypatch, capfd):
    """``train --no-progress`` in a log file: no carriage-return bars from the data set-up either."""
    import face_recognition_ros.training.data as data_module

    asked = []

    def fake_build(root, cache_dir=None, **kwargs):
        asked.append(kwargs.get("progress", True))
        return write_cache(Path(cache_dir), {f"p{i}": 3 for i in range(6)}, seed=0)

    (tmp_path / "subset").mkdir()
    monkeypatch.setattr(data_module, "build_face_cache", fake_build)
    config = DataConfig(input_size=32, val_fraction=0.34, val_pairs=10, identities_per_batch=2, images_per_identity=2,
                        cache_dir=str(tmp_path / "caches"),
                        datasets=[DatasetConfig(root=str(tmp_path / "subset"), validation=True)])
    capfd.readouterr()
    FaceDataModule(config, seed=0, teacher=TeacherSpec(["test_colour_teacher"]), progress=False).setup()
    assert asked == [False]
    assert capfd.readouterr().err == ""
    FaceDataModule(config, seed=0, teacher=TeacherSpec(["test_colour_teacher"])).setup()
    assert asked == [False, True]


# ---- strong augmentation ------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["downscale", "jpeg", "erase", "noise"])
def test_each_strong_augmentation_changes_the_crop_and_keeps_its_shape(option):
    rng = np.random.default_rng(0)
    coarse = rng.uniform(0, 255, (6, 6, 3)).astype(np.float32)
    crop = (cv2.resize(coarse, (64, 64), interpolation=cv2.INTER_CUBIC).clip(0, 255)
            + rng.normal(0, 20, (64, 64, 3))).clip(0, 255).astype(np.uint8)
    quiet = {key: 0.0 for key in AugmentConfig.__dataclass_fields__}
    unchanged = augment_face(crop, np.random.default_rng(1), AugmentConfig(**quiet))
    np.testing.assert_array_equal(unchanged, crop)
    out = augment_face(crop, np.random.default_rng(1), AugmentConfig(**(quiet | {option: 1.0})))
    assert out.shape == crop.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    changed = np.any(out != crop, axis=2)
    assert changed.mean() > 0.02
    if option == "erase":  # one flat rectangle, the rest untouched
        ys, xs = np.nonzero(changed)
        box = out[ys.min():ys.max() + 1, xs.min():xs.max() + 1].reshape(-1, 3)
        assert (box == box[0]).all()
        assert changed.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
