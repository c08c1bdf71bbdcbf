"""Open-set matcher on hand-built embeddings whose cosine similarities to the query are known."""

from __future__ import annotations

import numpy as np
import pytest

from face_recognition_ros.gallery import GalleryEmbeddings
from face_recognition_ros.matching import Matcher, person_scores

DIM = 16
QUERY = np.eye(DIM, dtype=np.float32)[:1]  # the unit vector e0


def at_similarity(similarity: float, axis: int) -> np.ndarray:
    """A unit vector whose cosine similarity to QUERY is ``similarity`` (axis picks the orthogonal part)."""
    vector = np.zeros(DIM, np.float32)
    vector[0] = similarity
    vector[axis] = np.sqrt(1.0 - similarity**2)
    return vector


def make_gallery(people: dict[int, list[float]]) -> GalleryEmbeddings:
    """Person id -> the similarities of that person's samples to QUERY."""
    rows, ids, axis = [], [], 1
    for person_id, similarities in people.items():
        for similarity in similarities:
            rows.append(at_similarity(similarity, axis))
            ids.append(person_id)
            axis += 1
    names = {person_id: f"person {person_id}" for person_id in people}
    return GalleryEmbeddings(np.array(rows, np.float32), np.array(ids, np.int64), names)


def test_recognises_the_closest_person():
    gallery = make_gallery({1: [0.9, 0.85, 0.8], 2: [0.3, 0.2, 0.1]})
    [match] = Matcher(threshold=0.5, margin=0.05, k=3).match(QUERY, gallery)
    assert (match.person_id, match.name) == (1, "person 1")
    assert match.similarity == pytest.approx(0.85, abs=1e-5)
    assert match.margin == pytest.approx(0.85 - 0.2, abs=1e-5)


def test_below_threshold_is_unknown_but_reports_the_best_score():
    gallery = make_gallery({1: [0.45, 0.4, 0.35], 2: [0.0, 0.0]})
    [match] = Matcher(threshold=0.5, margin=0.05, k=3).match(QUERY, gallery)
    assert not match.is_known and match.name is None
    assert match.similarity == pytest.approx(0.4, abs=1e-5)


def test_two_people_too_close_to_tell_apart_is_unknown():
    gallery = make_gallery({1: [0.80, 0.80, 0.80], 2: [0.78, 0.78, 0.78]})
    [match] = Matcher(threshold=0.5, margin=0.05, k=3).match(QUERY, gallery)
    assert not match.is_known
    assert match.margin == pytest.approx(0.02, abs=1e-5)
    [match] = Matcher(threshold=0.5, margin=0.01, k=3).match(QUERY, gallery)
    assert match.person_id == 1


def test_k_nearest_samples_outvote_a_single_outlier():
    # Person 2 has one sample that happens to look like the query; person 1 is consistently close.
    gallery = make_gallery({1: [0.7, 0.7, 0.7], 2: [0.9, 0.1, 0.1]})
    assert Matcher(threshold=0.5, margin=0.05, k=3).match(QUERY, gallery)[0].person_id == 1
    assert Matcher(threshold=0.5, margin=0.05, k=1).match(QUERY, gallery)[0].person_id == 2


def test_person_with_fewer_than_k_samples_scores_the_mean_of_all_of_them():
    gallery = make_gallery({1: [0.9, 0.7], 2: [0.1, 0.1, 0.1, 0.1]})
    [match] = Matcher(threshold=0.5, margin=0.05, k=3).match(QUERY, gallery)
    assert match.person_id == 1
    assert match.similarity == pytest.approx(0.8, abs=1e-5)


def test_single_person_margin_is_measured_against_minus_one():
    gallery = make_gallery({7: [0.6]})
    [match] = Matcher(threshold=0.5, margin=0.05, k=3).match(QUERY, gallery)
    assert match.person_id == 7
    assert match.margin == pytest.approx(1.6, abs=1e-5)


def test_empty_gallery_makes_every_face_unknown():
    empty = GalleryEmbeddings(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), {})
    matches = Matcher().match(np.vstack([QUERY, QUERY]), empty)
    assert len(matches) == 2 and not any(match.is_known for match in matches)


def test_no_queries_give_no_matches():
    assert Matcher().match(np.zeros((0, DIM), np.float32), make_gallery({1: [0.9]})) == []


def test_threshold_and_margin_changes_apply_to_the_next_call():
    gallery = make_gallery({1: [0.6, 0.6, 0.6], 2: [0.5, 0.5, 0.5]})
    matcher = Matcher(threshold=0.5, margin=0.05, k=3)
    assert matcher.match(QUERY, gallery)[0].person_id == 1
    matcher.threshold = 0.7
    assert not matcher.match(QUERY, gallery)[0].is_known
    matcher.threshold, matcher.margin = 0.5, 0.2
    assert not matcher.match(QUERY, gallery)[0].is_known


def test_each_query_row_is_matched_independently():
    gallery = make_gallery({1: [0.9, 0.9], 2: [0.1, 0.1]})
    toward_person_2 = gallery.embeddings[2:3]
    matches = Matcher(threshold=0.5, margin=0.05, k=2).match(np.vstack([QUERY, toward_person_2]), gallery)
    assert [match.person_id for match in matches] == [1, 2]


def test_sample_order_in_the_gallery_does_not_matter():
    gallery = make_gallery({1: [0.9, 0.2, 0.8], 2: [0.85, 0.85, 0.1], 3: [0.3]})
    shuffled_order = np.random.default_rng(0).permutation(len(gallery))
    shuffled = GalleryEmbeddings(gallery.embeddings[shuffled_order], gallery.person_ids[shuffled_order], gallery.names)
    matcher = Matcher(threshold=0.5, margin=0.0, k=2)
    assert matcher.match(QUERY, gallery) == matcher.match(QUERY, shuffled)


def test_a_new_gallery_object_is_regrouped():
    matcher = Matcher(threshold=0.5, margin=0.05, k=3)
    assert matcher.match(QUERY, make_gallery({1: [0.9]}))[0].person_id == 1
    assert matcher.match(QUERY, make_gallery({2: [0.9], 1: [0.1]}))[0].person_id == 2


def test_person_scores_equal_a_brute_force_top_k_mean_even_with_ties():
    rng = np.random.default_rng(1)
    counts = rng.integers(1, 7, size=300)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # Rounded to one decimal so many similarities tie exactly.
    similarities = np.round(rng.uniform(-1, 1, (4, counts.sum())), 1).astype(np.float32)
    for k in (1, 2, 3, 5):
        expected = np.array(
            [[np.sort(row[s : s + c])[::-1][:k].mean() for s, c in zip(starts, counts)] for row in similarities]
        )
        assert np.allclose(person_scores(similarities.copy(), starts, counts, k), expected, atol=1e-6), k


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="threshold"):
        Matcher(threshold=1.5)
    with pytest.raises(ValueError, match="margin"):
        Matcher(margin=-0.1)
    with pytest.raises(ValueError, match="k must"):
        Matcher(k=0)


def test_queries_of_another_dimension_are_rejected():
    with pytest.raises(ValueError, match="dimensions"):
        Matcher().match(np.ones((1, DIM + 1), np.float32), make_gallery({1: [0.9]}))
    with pytest.raises(ValueError, match="NaN"):
        Matcher().match(np.full((1, DIM), np.nan, np.float32), make_gallery({1: [0.9]}))
