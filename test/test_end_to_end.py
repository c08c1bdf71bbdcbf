"""The whole core on real photos: enroll the knn_examples people, recognise the test photos."""

from __future__ import annotations

from pathlib import Path

import pytest

from face_recognition_ros.gallery import Gallery
from face_recognition_ros.image_files import find_images, load_image
from face_recognition_ros.pipeline import PipelineConfig, RecognitionPipeline

NEVER_ENROLLED = "rose_leslie"


@pytest.fixture(scope="module")
def pipeline(media_dir: Path, tmp_path_factory) -> RecognitionPipeline:
    gallery = Gallery(tmp_path_factory.mktemp("gallery") / "gallery.db")
    pipe = RecognitionPipeline(PipelineConfig(encoder="dlib_resnet"), gallery=gallery)
    for person_dir in sorted((media_dir / "knn_examples" / "train").iterdir()):
        if person_dir.name == NEVER_ENROLLED:
            continue
        files = find_images([person_dir]).images
        pipe.enroll_images(person_dir.name, [load_image(f) for f in files], [str(f) for f in files])
    return pipe


def _names(pipe: RecognitionPipeline, path: Path) -> list[str | None]:
    result = pipe.process(load_image(path))
    return [face.match.name for face in sorted(result.faces, key=lambda face: face.box[0])]


@pytest.mark.parametrize(
    "photo, expected",
    [
        ("alex_lacamoire1.jpg", ["alex_lacamoire"]),
        ("johnsnow_test1.jpg", ["kit_harington"]),
        ("obama1.jpg", ["obama"]),
    ],
)
def test_enrolled_people_are_recognised_by_name(pipeline, media_dir, photo, expected):
    assert _names(pipeline, media_dir / "knn_examples" / "test" / photo) == expected


def test_two_enrolled_people_in_one_photo_are_both_named(pipeline, media_dir):
    # The photo also holds a small face in the background, which must stay unknown.
    names = _names(pipeline, media_dir / "knn_examples" / "test" / "obama_and_biden.jpg")
    assert sorted(name for name in names if name) == ["biden", "obama"]


def test_person_never_enrolled_is_reported_unknown_beside_a_known_one(pipeline, media_dir):
    names = _names(pipeline, media_dir / "knn_examples" / "test" / "kit_with_rose.jpg")
    assert sorted(names, key=str) == sorted(["kit_harington", None], key=str)


def test_stranger_photo_is_unknown_not_forced_onto_a_name(pipeline, media_dir):
    assert _names(pipeline, media_dir / "lin-manuel-miranda.png") == [None]


def test_frame_result_reports_every_stage_timing(pipeline, media_dir):
    result = pipeline.process(load_image(media_dir / "two_people.jpg"))
    assert len(result.faces) == 2
    assert set(result.timings_ms) >= {"detect", "align", "embed", "match", "total"}
    assert all(value >= 0 for value in result.timings_ms.values())


def test_gallery_written_by_another_handle_is_seen_without_restart(pipeline, media_dir):
    other = Gallery(pipeline.gallery.path)
    image = load_image(media_dir / "knn_examples" / "test" / "kit_with_rose.jpg")
    rose_dir = media_dir / "knn_examples" / "train" / NEVER_ENROLLED
    probe = RecognitionPipeline(PipelineConfig(encoder="dlib_resnet"), gallery=other,
                                detector=pipeline.detector, encoder=pipeline.encoder)
    probe.enroll_images(NEVER_ENROLLED, [load_image(f) for f in find_images([rose_dir]).images])
    try:
        assert NEVER_ENROLLED in [face.match.name for face in pipeline.process(image).faces]
    finally:
        other.forget(NEVER_ENROLLED)
    assert NEVER_ENROLLED not in [face.match.name for face in pipeline.process(image).faces]
