"""Neighbour distillation: each face's softmax ranking of the others follows the teacher's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from face_recognition_ros.training.config import TrainingConfigError, config_from_dict
from face_recognition_ros.training.losses import NeighbourDistillation
from face_recognition_ros.training.module import FaceEmbeddingModule

from test_training import synthetic_faces, tiny_config


def unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_the_loss_is_zero_when_the_student_ranks_as_the_teacher_and_positive_otherwise():
    faces = unit(8, 6, 0)
    rotation = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1)))[0]
    teacher = torch.cat([faces, torch.zeros(8, 4)], dim=1)  # another dimension, the same similarities
    same = NeighbourDistillation(6, 10, temperature=0.1, memory=0)
    assert same(faces @ rotation, teacher).item() == pytest.approx(0.0, abs=1e-5)
    assert NeighbourDistillation(6, 10, temperature=0.1, memory=0)(unit(8, 6, 2), teacher).item() > 0.1


def test_the_gradient_is_finite_although_each_face_is_masked_from_its_own_ranking():
    student = torch.randn(5, 6, requires_grad=True)
    value = NeighbourDistillation(6, 6, offset=0.2, temperature=0.02, memory=8)(student, unit(5, 6, 3))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_the_memory_keeps_the_latest_faces_and_wraps_around():
    loss = NeighbourDistillation(4, 3, memory=10)
    batches = [(unit(4, 4, seed), unit(4, 3, 100 + seed)) for seed in range(4)]
    for student, teacher in batches:
        loss(student, teacher)
    assert loss.filled == 10 and loss.position == 16 % 10
    latest = torch.cat([s for s, _ in batches])[-10:]
    kept = torch.cat([loss.memory_student[loss.position:], loss.memory_student[:loss.position]])
    torch.testing.assert_close(kept, latest)
    loss.eval()
    loss(*batches[0])
    assert loss.position == 6  # evaluation does not write to the memory


def test_faces_in_the_memory_are_neighbours_too():
    # One face per batch: without the memory it has no one to rank, with it the ranking counts.
    teacher = torch.cat([unit(3, 4, 5), torch.zeros(3, 2)], dim=1)

    def remembering() -> NeighbourDistillation:
        loss = NeighbourDistillation(4, 6, temperature=0.1, memory=4)
        loss(teacher[:2, :4], teacher[:2])  # two earlier faces, embedded as the teacher has them
        return loss

    wrong = -teacher[2:, :4]
    assert NeighbourDistillation(4, 6, temperature=0.1, memory=0)(wrong, teacher[2:]).item() == 0.0
    assert remembering()(wrong, teacher[2:]).item() > 0.01
    assert remembering()(teacher[2:, :4], teacher[2:]).item() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("loss, message", [
    ({"kind": "triplet", "neighbour_weight": 1.0}, "needs loss.kind: distill"),
    ({"kind": "distill", "neighbour_weight": -1.0}, "neighbour_weight must be >= 0"),
    ({"kind": "distill", "neighbour_weight": 1.0, "neighbour_temperature": 0}, "neighbour_temperature > 0"),
    ({"kind": "distill", "neighbour_weight": 1.0, "neighbour_memory": 2.5}, "neighbour_memory a whole number"),
])
def test_inconsistent_neighbour_keys_are_clear_errors(tmp_path, loss, message):
    with pytest.raises(TrainingConfigError, match=message):
        config_from_dict(tiny_config(tmp_path, **loss))


def test_a_training_step_logs_the_neighbour_term_and_its_gradient_reaches_the_network(tmp_path):
    config = tiny_config(tmp_path, "distill", supervised=None, neighbour_weight=2.0, neighbour_memory=32)
    module = FaceEmbeddingModule(config, num_classes=4, teacher_dim=8)
    faces = synthetic_faces(4, 4, seed=0)
    batch = {"image": torch.from_numpy(faces.crops), "label": torch.from_numpy(faces.labels),
             "teacher": F.normalize(torch.randn(len(faces.labels), 8), dim=1)}
    module.train()
    terms = module.training_loss(batch)
    assert set(terms) == {"distill", "neighbours", "loss"} and torch.isfinite(terms["neighbours"])
    terms["neighbours"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.network.parameters())
    assert module.neighbours.filled == len(faces.labels)
    assert not any("memory" in key for key in module.state_dict())  # the memory stays out of checkpoints


def test_the_neighbour_recipe_is_the_consistent_control_plus_the_neighbour_term():
    from pathlib import Path

    from face_recognition_ros.training.config import load_config

    recipes = Path(__file__).resolve().parents[1] / "config" / "train"
    config = load_config(recipes / "b0_ensemble_112_neighbours.yaml")
    control = load_config(recipes / "b0_ensemble_112_consistent.yaml",
                          overrides=["loss.teacher_online=false", "loss.distill_mixup=0"])
    assert config.loss.neighbour_weight > 0 and not config.loss.teacher_online
    assert config.data == control.data and config.optim == control.optim and config.trainer == control.trainer
    assert config.model == control.model
    control.loss.neighbour_weight = config.loss.neighbour_weight
    assert config.loss == control.loss  # nothing else differs


def test_each_later_neighbour_stage_is_the_one_before_again_from_its_best_checkpoint():
    import re
    from pathlib import Path

    from face_recognition_ros.training.config import load_config

    recipes = Path(__file__).resolve().parents[1] / "config" / "train"
    repeats = sorted((int(re.fullmatch(r"b0_ensemble_112_neighbours_(\d+)\.yaml", path.name).group(1)), path)
                     for path in recipes.glob("b0_ensemble_112_neighbours_*.yaml"))
    assert [number for number, _ in repeats] == list(range(2, len(repeats) + 2))  # stage 4, 5, ... with no gap
    chain = [load_config(recipes / "b0_ensemble_112_neighbours.yaml")] + [load_config(path) for _, path in repeats]
    for before, after in zip(chain, chain[1:]):
        assert after.model.init_from == f"{before.out_dir}/{before.name}/best.ckpt"
        assert (after.data, after.loss, after.optim, after.trainer) == (before.data, before.loss, before.optim,
                                                                        before.trainer)


@pytest.mark.parametrize("recipe, key, value", [("b0_ensemble_112_strong_neighbours.yaml", "neighbour_weight", 3.0),
                                                ("b0_ensemble_112_wide_neighbours.yaml", "neighbour_memory", 16384)])
def test_each_neighbour_tuning_run_is_the_plain_repeat_of_stage_5_with_one_setting_changed(recipe, key, value):
    from pathlib import Path

    from face_recognition_ros.training.config import load_config

    recipes = Path(__file__).resolve().parents[1] / "config" / "train"
    control = load_config(recipes / "b0_ensemble_112_neighbours_4.yaml")  # stage 5 again, nothing changed
    config = load_config(recipes / recipe)
    assert getattr(config.loss, key) == value != getattr(control.loss, key)
    assert (config.data, config.model, config.optim, config.trainer) == (control.data, control.model, control.optim,
                                                                         control.trainer)
    setattr(control.loss, key, value)
    assert config.loss == control.loss  # nothing else differs
