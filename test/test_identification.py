"""Open-set identification on a tiny folder-per-identity tree with fake embeddings."""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from face_recognition_ros.errors import EvaluationError
from face_recognition_ros.evaluation.identify import evaluate_identification, list_identities

DIMENSION = 64
PEOPLE = [f"p{index:02d}" for index in range(10)]  # 8 images each
FEW_IMAGES = ["s00", "s01"]  # 3 images each: too few to enroll 5 and still query


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def person_direction(name: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(name.encode())).standard_normal(DIMENSION)


def image_noise(path: Path) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(f"{path.parent.name}/{path.name}".encode())).standard_normal(DIMENSION)


def separable_embedding(path: Path) -> np.ndarray:
    return unit(person_direction(path.parent.name) + 0.3 * image_noise(path))


def random_embedding(path: Path) -> np.ndarray:
    return unit(image_noise(path))


@pytest.fixture
def people_dir(tmp_path: Path) -> Path:
    root = tmp_path / "people"
    pixel = np.zeros((4, 4, 3), np.uint8)
    for name, count in [(name, 8) for name in PEOPLE] + [(name, 3) for name in FEW_IMAGES]:
        (root / name).mkdir(parents=True)
        for index in range(count):
            assert cv2.imwrite(str(root / name / f"{index:03d}.png"), pixel)
    (root / "p00" / "notes.txt").write_text("not an image")
    (root / ".cache").mkdir()
    assert cv2.imwrite(str(root / ".cache" / "000.png"), pixel)
    return root


def test_list_identities_keeps_image_folders_only(people_dir: Path):
    identities = list_identities(people_dir)
    assert sorted(identities) == sorted(PEOPLE + FEW_IMAGES)
    assert len(identities["p00"]) == 8 and all(path.suffix == ".png" for path in identities["p00"])


def test_separable_people_are_identified_and_strangers_rejected(people_dir: Path):
    result = evaluate_identification(separable_embedding, people_dir, progress=False)
    assert result["identities"] == 12 and result["skipped_identities"] == 2
    assert result["known_identities"] == 8 and result["unknown_identities"] == 2
    assert result["enrolled_images"] == 8 * 5
    assert result["known_queries"] == 8 * 3 and result["unknown_queries"] == 2 * 8 and result["queries"] == 40
    assert result["rank1"] == 1.0 and result["open_set_accuracy"] == 1.0 and result["f1"] == 1.0
    assert result["false_accept_rate"] == 0.0 and result["false_reject_rate"] == 0.0
    assert result["misidentification_rate"] == 0.0 and result["failed_detections"] == 0


def test_random_embeddings_identify_near_chance(people_dir: Path):
    result = evaluate_identification(random_embedding, people_dir, progress=False)
    assert result["rank1"] < 0.5  # chance is 1/8
    assert result["false_reject_rate"] > 0.9  # nobody reaches the default threshold


def test_threshold_above_every_score_rejects_everyone(people_dir: Path):
    result = evaluate_identification(separable_embedding, people_dir, threshold=0.999, progress=False)
    assert result["false_reject_rate"] == 1.0 and result["false_accept_rate"] == 0.0 and result["f1"] == 0.0
    assert result["open_set_accuracy"] == pytest.approx(16 / 40)
    assert result["rank1"] == 1.0  # closed-set ignores the threshold


def test_threshold_below_every_score_accepts_strangers(people_dir: Path):
    result = evaluate_identification(separable_embedding, people_dir, threshold=-1.0, margin=0.0, progress=False)
    assert result["false_accept_rate"] == 1.0 and result["false_reject_rate"] == 0.0
    assert result["open_set_accuracy"] == pytest.approx(24 / 40)
    assert result["precision"] == pytest.approx(24 / 40) and result["recall"] == 1.0


def test_lookalikes_are_misidentified_without_margin(people_dir: Path):
    def twins_embedding(path: Path) -> np.ndarray:
        person = "p00" if path.parent.name == "p01" else path.parent.name  # p01 looks exactly like p00
        return unit(person_direction(person) + 0.3 * image_noise(path))

    no_margin = evaluate_identification(twins_embedding, people_dir, unknown_fraction=0.0, margin=0.0, progress=False)
    assert no_margin["misidentification_rate"] > 0.0 and no_margin["rank1"] < 1.0
    assert no_margin["false_accept_rate"] is None  # no strangers to accept
    with_margin = evaluate_identification(twins_embedding, people_dir, unknown_fraction=0.0, margin=0.3, progress=False)
    assert with_margin["misidentification_rate"] < no_margin["misidentification_rate"]
    assert with_margin["false_reject_rate"] > 0.0


def test_faces_not_found_count_as_failed_and_rejected(people_dir: Path):
    def blind_to_p00(path: Path) -> np.ndarray | None:
        return None if path.parent.name == "p00" else separable_embedding(path)

    result = evaluate_identification(blind_to_p00, people_dir, unknown_fraction=0.0, progress=False)
    assert result["failed_detections"] == 8
    assert result["enrolled_images"] == 9 * 5
    assert result["false_reject_rate"] == pytest.approx(3 / 30)
    assert result["rank1"] == pytest.approx(27 / 30)


def test_split_is_reproducible_from_seed_and_skips_small_identities(people_dir: Path):
    def recorder(calls: list[Path]):
        def embed(path: Path) -> np.ndarray:
            calls.append(path)
            return separable_embedding(path)

        return embed

    first, again, other = [], [], []
    result = evaluate_identification(recorder(first), people_dir, seed=3, progress=False)
    repeated = evaluate_identification(recorder(again), people_dir, seed=3, progress=False)
    evaluate_identification(recorder(other), people_dir, seed=4, progress=False)
    del result["seconds_per_image"], repeated["seconds_per_image"]  # wall-clock, never equal
    assert repeated == result
    assert first == again and first != other
    assert not any(path.parent.name in FEW_IMAGES for path in first)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"enroll_per_identity": 0}, "enroll_per_identity must be a positive integer"),
        ({"unknown_fraction": 1.0}, r"unknown_fraction must lie in \[0, 1\)"),
        ({"enroll_per_identity": 8}, "no identity .* can be enrolled: need more than 8 images"),
        ({"threshold": 2.0}, "threshold must be"),
    ],
)
def test_impossible_settings_raise_clear_errors(people_dir: Path, arguments: dict, message: str):
    with pytest.raises(EvaluationError, match=message):
        evaluate_identification(separable_embedding, people_dir, progress=False, **arguments)


def test_missing_data_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(EvaluationError, match="data folder not found"):
        evaluate_identification(separable_embedding, tmp_path / "absent", progress=False)


def test_the_open_set_plot_is_a_png_of_both_curves_and_refuses_what_it_cannot_write(tmp_path):
    import pytest

    from face_recognition_ros.errors import EvaluationError
    from face_recognition_ros.evaluation.plots import check_plot_target, plot_open_set
    from face_recognition_ros.image_files import load_image

    curve = {"false_accept_rate": [0.0, 0.001, 0.01, 0.1], "identification_rate": [0.2, 0.5, 0.7, 0.9]}
    figures = {"curves": {"raw": curve, "normalised": curve},
               "operating_point": {"false_accept_rate": 0.012, "identification_rate": 0.69,
                                   "target_false_accept_rate": 0.01}}
    written = plot_open_set(figures, tmp_path / "det.png", "test")
    assert load_image(written).shape == (576, 768, 3)
    with pytest.raises(EvaluationError, match="no folder"):
        check_plot_target(tmp_path / "missing" / "det.png")
    with pytest.raises(EvaluationError, match="cannot write the plot"):
        plot_open_set(figures, tmp_path / "det.unknownformat", "test")
