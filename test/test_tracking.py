"""FaceTracker: stable ids across moving boxes, crossing faces, identity votes, expiry."""

from __future__ import annotations

import numpy as np
import pytest

from face_recognition_ros.tracking import FaceTracker, box_iou
from face_recognition_ros.types import Match

ALICE = Match(1, "alice", 0.8, 0.3)
BOB = Match(2, "bob", 0.75, 0.25)
UNKNOWN = Match(None, None, 0.2, 0.05)


def box(x: float, y: float = 100.0, size: float = 80.0) -> list[float]:
    return [x, y, x + size, y + size]


def test_iou_of_identical_disjoint_and_half_overlapping_boxes():
    iou = box_iou(np.array([box(0), box(0)]), np.array([box(0), box(200), box(40, size=80)]))
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 0.0, 40 * 80 / (2 * 80 * 80 - 40 * 80)])


def test_iou_of_degenerate_boxes_is_zero_not_nan():
    assert box_iou(np.array([[5, 5, 5, 5]]), np.array([[5, 5, 5, 5]]))[0, 0] == 0.0


def test_a_face_moving_a_little_each_frame_keeps_its_track_id():
    tracker = FaceTracker()
    ids = [tracker.update(np.array([box(100 + 10 * frame)]), [ALICE])[0][0] for frame in range(20)]
    assert ids == [ids[0]] * 20


def test_two_faces_get_different_ids_and_keep_them_when_order_in_the_frame_changes():
    tracker = FaceTracker()
    first, _ = tracker.update(np.array([box(0), box(300)]), [ALICE, BOB])
    assert first[0] != first[1]
    swapped, voted = tracker.update(np.array([box(305), box(5)]), [BOB, ALICE])
    assert swapped == [first[1], first[0]]
    assert [m.name for m in voted] == ["bob", "alice"]


def test_two_crossing_faces_keep_their_ids_while_passing_each_other():
    # Alice walks right, Bob walks left; at every frame each box overlaps its own previous box
    # more than the other face's box, including the frames where the two boxes overlap.
    tracker = FaceTracker(min_votes=1)  # names from the first frame: this test is about the ids
    ids_alice, ids_bob = [], []
    for step in range(13):
        alice_x, bob_x = 20 + 15 * step, 200 - 15 * step
        (id_alice, id_bob), voted = tracker.update(np.array([box(alice_x), box(bob_x)]), [ALICE, BOB])
        ids_alice.append(id_alice)
        ids_bob.append(id_bob)
        assert [m.name for m in voted] == ["alice", "bob"]
    assert len(set(ids_alice)) == 1 and len(set(ids_bob)) == 1 and ids_alice[0] != ids_bob[0]


def test_one_bad_frame_does_not_flip_the_published_name():
    tracker = FaceTracker(vote_window=7)
    for frame in range(5):
        tracker.update(np.array([box(100 + frame)]), [ALICE])
    _, voted = tracker.update(np.array([box(106)]), [Match(2, "bob", 0.99, 0.5)])
    assert voted[0].person_id == 1 and voted[0].name == "alice"
    _, voted = tracker.update(np.array([box(107)]), [UNKNOWN])
    assert voted[0].name == "alice"


def test_the_name_changes_once_the_new_identity_is_the_majority_of_the_window():
    tracker = FaceTracker(vote_window=5)
    for frame in range(5):
        tracker.update(np.array([box(100)]), [UNKNOWN])
    names = [tracker.update(np.array([box(100)]), [ALICE])[1][0].name for _ in range(5)]
    assert names == [None, None, "alice", "alice", "alice"]


def test_unknown_counts_as_a_vote_and_a_tie_goes_to_the_higher_similarity():
    tracker = FaceTracker(vote_window=4)
    for match in (UNKNOWN, UNKNOWN, ALICE, ALICE):
        _, voted = tracker.update(np.array([box(100)]), [match])
    assert voted[0].name == "alice"  # 2 votes each; alice's similarity is higher
    assert voted[0].similarity == pytest.approx(ALICE.similarity)
    for _ in range(3):  # window becomes alice, unknown x3
        _, voted = tracker.update(np.array([box(100)]), [UNKNOWN])
    assert voted[0].person_id is None and voted[0].name is None and not voted[0].is_known


def test_a_renamed_person_is_published_with_the_newest_name():
    tracker = FaceTracker()
    for _ in range(3):
        tracker.update(np.array([box(100)]), [ALICE])
    _, voted = tracker.update(np.array([box(100)]), [Match(1, "alice smith", 0.8, 0.3)])
    assert voted[0].name == "alice smith"


def test_a_track_survives_max_missed_empty_frames_and_expires_after():
    tracker = FaceTracker(max_missed=2, min_votes=1)  # a new track named at once: this test is about expiry
    (track,), _ = tracker.update(np.array([box(100)]), [ALICE])
    for _ in range(2):
        tracker.update(np.zeros((0, 4)), [])
    assert tracker.update(np.array([box(100)]), [ALICE])[0] == [track]
    for _ in range(3):
        tracker.update(np.zeros((0, 4)), [])
    assert tracker.num_tracks == 0
    (new_track,), voted = tracker.update(np.array([box(100)]), [BOB])
    assert new_track != track and voted[0].name == "bob"


def test_a_face_that_jumps_far_away_starts_a_new_track():
    tracker = FaceTracker()
    (first,), _ = tracker.update(np.array([box(0)]), [ALICE])
    (second,), _ = tracker.update(np.array([box(400)]), [ALICE])
    assert second != first


def test_reset_forgets_all_tracks():
    tracker = FaceTracker()
    tracker.update(np.array([box(0), box(300)]), [ALICE, BOB])
    tracker.reset()
    assert tracker.num_tracks == 0
    ids, _ = tracker.update(np.array([box(0)]), [BOB])
    assert ids == [0]


def test_mismatched_boxes_and_matches_are_rejected():
    with pytest.raises(ValueError, match="2 boxes but 1 matches"):
        FaceTracker().update(np.array([box(0), box(300)]), [ALICE])


@pytest.mark.parametrize("kwargs", [{"iou_threshold": 0.0}, {"max_missed": -1}, {"vote_window": 0}])
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        FaceTracker(**kwargs)


def test_clear_votes_lets_a_changed_answer_show_on_the_next_frame_with_the_same_track():
    tracker = FaceTracker(vote_window=7)
    box = np.array([[10, 10, 60, 60]], np.float32)
    old = Match(person_id=1, name="ada", similarity=0.95, margin=0.2)
    new = Match(person_id=None, name=None, similarity=0.4, margin=0.0)
    for _ in range(5):
        ids, _ = tracker.update(box, [old])
    tracker.clear_votes()
    new_ids, voted = tracker.update(box, [new])
    assert new_ids == ids  # same track
    assert voted[0].person_id is None


def test_apply_gives_results_track_ids_and_voted_names_in_place():
    from face_recognition_ros.types import FaceResult

    tracker = FaceTracker(vote_window=3)
    ada = Match(person_id=1, name="ada", similarity=0.95, margin=0.2)
    unknown = Match(person_id=None, name=None, similarity=0.4, margin=0.0)

    def frame(match: Match) -> list[FaceResult]:
        return [FaceResult(box=np.array([10, 10, 60, 60], np.float32), landmarks=np.zeros((5, 2), np.float32),
                           score=0.9, match=match)]

    first = frame(ada)
    tracker.apply(first)
    tracker.apply(frame(ada))
    glitch = frame(unknown)
    tracker.apply(glitch)
    assert first[0].track_id == glitch[0].track_id >= 0
    assert glitch[0].match.name == "ada"  # one bad frame is outvoted


def test_a_stranger_who_passes_the_bar_in_a_single_frame_stays_unknown():
    tracker = FaceTracker(vote_window=5, min_votes=2)
    stranger_frames = [UNKNOWN, UNKNOWN, Match(1, "alice", 0.95, 0.2), UNKNOWN, UNKNOWN, UNKNOWN]
    published = [tracker.update(np.array([box(100)]), [match])[1][0] for match in stranger_frames]
    assert all(not match.is_known for match in published)
    assert all(match.frames_to_confirm == 0 for match in published)  # the vote is "unknown", nobody pending


def test_a_new_track_is_named_once_two_frames_agree_and_a_single_vote_is_enough_when_asked():
    strict, lenient = FaceTracker(min_votes=2), FaceTracker(min_votes=1)
    pending = strict.update(np.array([box(100)]), [ALICE])[1][0]
    assert pending.name is None and pending.frames_to_confirm == 1 and pending.similarity == ALICE.similarity
    confirmed = strict.update(np.array([box(101)]), [ALICE])[1][0]
    assert confirmed.name == "alice" and confirmed.frames_to_confirm == 0
    assert lenient.update(np.array([box(100)]), [ALICE])[1][0].name == "alice"
    with pytest.raises(ValueError, match="min_votes"):
        FaceTracker(vote_window=3, min_votes=4)
