"""LFW pairs parsing and the 10-fold verification protocol, with fake embeddings."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest

from face_recognition_ros.errors import EvaluationError, NoFaceError
from face_recognition_ros.evaluation.lfw import evaluate_lfw, read_pairs, stratified_subfolds, ten_fold_verification
from face_recognition_ros.evaluation.metrics import best_threshold

DIMENSION = 32


def identity_vector(name: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(name.encode())).standard_normal(DIMENSION)


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def separable_embedding(path: Path) -> np.ndarray:
    """The person's fixed direction plus a little per-image noise: same-person pairs score high."""
    noise = np.random.default_rng(zlib.crc32(path.name.encode())).standard_normal(DIMENSION)
    return unit(identity_vector(path.parent.name) + 0.3 * noise)


def random_embedding(path: Path) -> np.ndarray:
    """No identity information at all: verification should be at chance."""
    return unit(np.random.default_rng(zlib.crc32(str(path).encode())).standard_normal(DIMENSION))


def write_fake_lfw(root: Path, folds: int = 10, per_class: int = 30, people: int = 40, images: int = 4) -> Path:
    """An LFW-shaped tree of empty image files and a View 2 pairs.txt over it."""
    rng = np.random.default_rng(0)
    names = [f"Person_{index:03d}" for index in range(people)]
    for name in names:
        (root / name).mkdir(parents=True)
        for number in range(1, images + 1):
            (root / name / f"{name}_{number:04d}.jpg").write_bytes(b"")
    lines = [f"{folds}\t{per_class}"]
    for _ in range(folds):
        for _ in range(per_class):
            first, second = rng.choice(np.arange(1, images + 1), 2, replace=False)
            lines.append(f"{names[rng.integers(people)]}\t{first}\t{second}")
        for _ in range(per_class):
            a, b = rng.choice(people, 2, replace=False)
            lines.append(f"{names[a]}\t{rng.integers(1, images + 1)}\t{names[b]}\t{rng.integers(1, images + 1)}")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def fake_lfw(tmp_path: Path) -> Path:
    return write_fake_lfw(tmp_path / "lfw")


def test_read_pairs_reads_official_view2_file(lfw_dir: Path):
    pairs = read_pairs(lfw_dir / "pairs.txt")
    assert len(pairs) == 6000
    assert sorted({pair.fold for pair in pairs}) == list(range(1, 11))
    assert all(sum(pair.fold == fold for pair in pairs) == 600 for fold in range(1, 11))
    assert sum(pair.same for pair in pairs) == 3000
    assert all(pair.path_a.is_file() and pair.path_b.is_file() for pair in pairs)
    assert all(pair.path_a.parent == pair.path_b.parent for pair in pairs if pair.same)
    assert all(pair.path_a.parent != pair.path_b.parent for pair in pairs if not pair.same)
    assert pairs[0].path_a == lfw_dir / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg"


def test_evaluate_lfw_runs_on_real_fold_with_fake_embedding(lfw_dir: Path):
    result = evaluate_lfw(separable_embedding, lfw_dir, folds=[1], progress=False)
    assert result["pairs"] == 600 and result["same_pairs"] == 300
    assert result["folds"] == [1] and "sub-folds" in result["protocol"]
    assert result["accuracy"] > 0.95


@pytest.mark.parametrize(
    "content, message",
    [
        ("10\n", r":1: expected the View 2 header"),
        ("1 1\nA 1 2\nA 1 B\n", r":3: expected a different-person pair"),
        ("1 1\nA 1\nA 1 B 1\n", r":2: expected a same-person pair"),
        ("1 1\nA 1 two\nA 1 B 1\n", r":2: 'two' is not an image number"),
        ("1 1\nA 0 1\nA 1 B 1\n", r":2: image numbers start at 1"),
        ("1 2\nA 1 2\nA 1 3\nA 1 B 1\n", r"header promises 1 folds x 4 pairs = 4 pair lines, the file has 3"),
    ],
)
def test_malformed_pairs_file_error_names_the_line(tmp_path: Path, content: str, message: str):
    pairs_file = tmp_path / "pairs.txt"
    pairs_file.write_text(content)
    with pytest.raises(EvaluationError, match=message):
        read_pairs(pairs_file, check_images=False)


def test_missing_pairs_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(EvaluationError, match="cannot read LFW pairs file"):
        read_pairs(tmp_path / "absent.txt")


def test_missing_images_are_reported(fake_lfw: Path):
    (fake_lfw / "Person_000" / "Person_000_0001.jpg").unlink()
    with pytest.raises(EvaluationError, match=r"1 images named in .* are missing .*Person_000_0001.jpg"):
        read_pairs(fake_lfw / "pairs.txt")


def test_protocol_is_perfect_on_separable_scores():
    rng = np.random.default_rng(0)
    same = np.tile([True, False], 300)
    similarities = np.where(same, rng.uniform(0.5, 1.0, 600), rng.uniform(-0.2, 0.4, 600))
    result = ten_fold_verification(similarities, same, np.repeat(np.arange(1, 11), 60))
    assert result["accuracy"] == 1.0 and result["accuracy_std"] == 0.0
    assert result["roc_auc"] == 1.0 and result["tar_at_far_1e-3"] == 1.0 and result["f1"] == 1.0
    assert 0.4 < result["threshold"] < 0.5
    assert len(result["thresholds"]) == len(result["fold_accuracies"]) == 10


def test_protocol_is_at_chance_on_random_scores():
    rng = np.random.default_rng(1)
    same = rng.random(6000) < 0.5
    result = ten_fold_verification(rng.uniform(-1, 1, 6000), same, np.repeat(np.arange(1, 11), 600))
    assert result["accuracy"] == pytest.approx(0.5, abs=0.03)
    assert result["roc_auc"] == pytest.approx(0.5, abs=0.03)


def test_each_fold_threshold_ignores_that_folds_own_pairs():
    rng = np.random.default_rng(2)
    same = np.tile([True, False], 300)
    similarities = np.where(same, rng.normal(0.6, 0.2, 600), rng.normal(0.2, 0.2, 600))
    folds = np.repeat(np.arange(1, 11), 60)
    before = ten_fold_verification(similarities, same, folds)
    shifted = similarities.copy()
    shifted[folds == 1] += 0.5  # changes every other fold's training data, not fold 1's
    after = ten_fold_verification(shifted, same, folds)
    assert after["thresholds"][0] == before["thresholds"][0]
    for fold in range(1, 11):
        others = folds != fold
        assert after["thresholds"][fold - 1] == best_threshold(shifted[others], same[others])


def test_protocol_needs_two_folds():
    with pytest.raises(EvaluationError, match="at least two folds"):
        ten_fold_verification(np.array([0.9, 0.1]), np.array([True, False]), np.array([1, 1]))


def test_stratified_subfolds_balance_same_and_different_pairs():
    same = np.repeat([True, False], 300)
    subfolds = stratified_subfolds(same)
    for subfold in range(1, 11):
        members = subfolds == subfold
        assert members.sum() == 60 and same[members].sum() == 30


def test_evaluate_lfw_separable_embeddings_score_high_and_embed_each_image_once(fake_lfw: Path):
    calls: list[Path] = []

    def counting_embedding(path: Path) -> np.ndarray:
        calls.append(path)
        return separable_embedding(path)

    result = evaluate_lfw(counting_embedding, fake_lfw, progress=False)
    assert len(calls) == len(set(calls)) == result["images"]
    assert result["pairs"] == 600 and result["folds"] == list(range(1, 11))
    assert result["accuracy"] > 0.95 and result["roc_auc"] > 0.98
    assert result["failed_detections"] == 0 and "10-fold" in result["protocol"]
    assert result["seconds_per_image"] >= 0.0


def test_evaluate_lfw_random_embeddings_score_near_chance(fake_lfw: Path):
    result = evaluate_lfw(random_embedding, fake_lfw, progress=False)
    assert result["accuracy"] == pytest.approx(0.5, abs=0.1)


def test_evaluate_lfw_subset_of_folds_chooses_thresholds_on_selected_folds(fake_lfw: Path):
    result = evaluate_lfw(separable_embedding, fake_lfw, folds=[2, 3, 4], progress=False)
    assert result["pairs"] == 180 and result["folds"] == [2, 3, 4]
    assert len(result["fold_accuracies"]) == 3 and "folds [2, 3, 4] only" in result["protocol"]


def test_evaluate_lfw_rejects_folds_outside_the_file(fake_lfw: Path):
    with pytest.raises(EvaluationError, match="numbered from 1"):
        evaluate_lfw(separable_embedding, fake_lfw, folds=[0], progress=False)


def embedding_blind_to(person: str):
    def embed(path: Path) -> np.ndarray | None:
        return None if path.parent.name == person else separable_embedding(path)

    return embed


def pairs_with(person: str, lfw: Path) -> tuple[int, int]:
    involved = [p for p in read_pairs(lfw / "pairs.txt") if person in (p.path_a.parent.name, p.path_b.parent.name)]
    return len(involved), sum(p.same for p in involved)


def test_missing_faces_fall_back_to_different_pairs(fake_lfw: Path):
    involved, involved_same = pairs_with("Person_000", fake_lfw)
    assert involved_same > 0  # the fixture must exercise a same pair that becomes an error
    result = evaluate_lfw(embedding_blind_to("Person_000"), fake_lfw, progress=False)
    assert result["failed_detections"] == 4 and result["pairs"] == 600 and result["excluded_pairs"] == 0
    baseline = evaluate_lfw(separable_embedding, fake_lfw, progress=False)
    errors_added = (baseline["accuracy"] - result["accuracy"]) * 600
    assert errors_added == pytest.approx(involved_same, abs=0.5)


def test_missing_faces_can_exclude_pairs_or_raise(fake_lfw: Path):
    involved, _ = pairs_with("Person_000", fake_lfw)
    excluded = evaluate_lfw(embedding_blind_to("Person_000"), fake_lfw, progress=False, missing_face="exclude")
    assert excluded["excluded_pairs"] == involved and excluded["pairs"] == 600 - involved
    with pytest.raises(NoFaceError, match="no face found in 4 LFW images"):
        evaluate_lfw(embedding_blind_to("Person_000"), fake_lfw, progress=False, missing_face="error")


def test_embedding_of_inconsistent_size_is_a_clear_error(fake_lfw: Path):
    def ragged(path: Path) -> np.ndarray:
        return unit(np.ones(DIMENSION + (path.parent.name == "Person_001")))

    with pytest.raises(EvaluationError, match="values for .* but"):
        evaluate_lfw(ragged, fake_lfw, progress=False)
