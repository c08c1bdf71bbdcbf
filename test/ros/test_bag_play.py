"""`ros2 bag play` of a camera bag into the running recognizer gives the same names per frame as the off-ROS tool.

The off-ROS side is ``process_bag`` (what ``face-recognition-ros bag`` runs); the ROS side is the real
launch file and node, fed by the real ``ros2 bag play``. Both use the same gallery file and the same
models and thresholds, pinned in ``SETTINGS``. Identity voting is switched off on both sides (a vote
window of one frame) so that each frame's names depend on that frame alone; the tracker's other
settings are pinned too, so track ids must agree as well.

The player starts paused and is stepped one frame at a time with its ``play_next`` service, the next
frame only once the node has published the previous one: the node keeps only the newest frame by
design, so a timed playback on a busy machine could drop frames and make the comparison flaky.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ros_env import require_ros

require_ros()

from ament_index_python.packages import get_package_share_directory  # noqa: E402
from rosbag2_interfaces.srv import PlayNext  # noqa: E402

from face_recognition_ros.bags import process_bag, video_to_bag  # noqa: E402
from face_recognition_ros.recognizer import Recognizer  # noqa: E402
from face_recognition_ros.gallery import Gallery  # noqa: E402
from face_recognition_ros.image_files import load_image  # noqa: E402
from face_recognition_ros.pipeline import PipelineConfig, RecognitionPipeline  # noqa: E402
from face_recognition_ros.tracking import FaceTracker  # noqa: E402
from ros_helpers import RecognizerClient  # noqa: E402

CAMERA_TOPIC = "/camera/image_raw"
FRAME_ID = "hamilton_camera"
FRAMES = 20  # the clip's first frames: Lin-Manuel Miranda and Alex Lacamoire, some frames near the threshold
START_NS = 1_700_000_000_000_000_000
PEOPLE = {"Lin-Manuel Miranda": "lin-manuel-miranda.png", "Alex Lacamoire": "alex-lacamoire.png"}
# Parameters shared by PipelineConfig and the node (same names on both).
SETTINGS = {
    "encoder": "dlib_resnet",
    "backend": "onnxruntime",
    "device": "cpu",
    "detector_score_threshold": 0.8,
    "min_face_size": 20,
    "detector_max_size": 640,
    "max_faces": 10,
    "match_threshold": 0.908,
    "match_margin": 0.01,
}
TRACKING = {"track_iou_threshold": 0.3, "track_max_missed": 5, "track_vote_window": 1, "track_min_votes": 1}
STARTUP_TIMEOUT_S = 180.0  # model loading on a busy 2-core machine
FRAME_TIMEOUT_S = 30.0
PLAYER = "rosbag2_player"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bag_play")


@pytest.fixture(scope="module")
def camera_bag(workdir: Path, media_dir: Path) -> Path:
    bag = workdir / "camera"
    summary = video_to_bag(media_dir / "short_hamilton_clip.mp4", bag, topic=CAMERA_TOPIC, frame_id=FRAME_ID,
                           max_frames=FRAMES, start_time_ns=START_NS)
    assert summary.frames == FRAMES
    return bag


@pytest.fixture(scope="module")
def gallery_path(workdir: Path, media_dir: Path) -> Path:
    """A gallery holding the clip's two main people, enrolled without ROS."""
    path = workdir / "gallery.db"
    pipeline = RecognitionPipeline(PipelineConfig(**SETTINGS), gallery=Gallery(path))
    for name, photo in PEOPLE.items():
        assert pipeline.enroll_images(name, [load_image(media_dir / photo)]).samples_added == 1
    return path


@pytest.fixture(scope="module")
def offline_frames(workdir: Path, camera_bag: Path, gallery_path: Path) -> dict[tuple[int, int], dict]:
    """Stamp -> the off-ROS JSON record of that frame."""
    pipeline = RecognitionPipeline(PipelineConfig(**SETTINGS, gallery_path=str(gallery_path)))
    tracker = FaceTracker(iou_threshold=TRACKING["track_iou_threshold"], max_missed=TRACKING["track_max_missed"],
                          vote_window=TRACKING["track_vote_window"], min_votes=TRACKING["track_min_votes"])
    lines = io.StringIO()
    summary = process_bag(camera_bag, CAMERA_TOPIC, workdir / "offline_faces", Recognizer(pipeline, tracker),
                          json_lines=True, json_out=lines)
    assert (summary.images, summary.processed) == (FRAMES, FRAMES), summary
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    return {(r["stamp"]["sec"], r["stamp"]["nanosec"]): r for r in records}


@pytest.fixture(scope="module")
def recognizer(workdir: Path, gallery_path: Path):
    """The real launch file running the node on the test gallery, with a client that is connected to it."""
    default_config = Path(get_package_share_directory("face_recognition_ros")) / "config" / "recognizer.yaml"
    config = yaml.safe_load(default_config.read_text())
    config["/**"]["ros__parameters"].update(SETTINGS, **TRACKING, gallery_path=str(gallery_path))
    config_file = workdir / "recognizer.yaml"
    config_file.write_text(yaml.safe_dump(config))
    log = workdir / "launch.log"
    with log.open("wb") as output:
        launch = subprocess.Popen(
            ["ros2", "launch", "face_recognition_ros", "recognizer.launch.py", f"config_file:={config_file}",
             f"camera_topic:={CAMERA_TOPIC}"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    client = RecognizerClient(CAMERA_TOPIC)
    try:
        try:
            client.wait_for_services(STARTUP_TIMEOUT_S)
        except AssertionError as error:
            raise AssertionError(f"{error}; launch output:\n{_tail(log)}") from None
        yield client, log
    finally:
        client.close()
        _stop(launch)


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no output)"


def _stop(process: subprocess.Popen) -> None:
    """SIGINT (a clean ROS shutdown), then SIGKILL to the process group this test started."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _offline_faces(record: dict) -> list[tuple[int, str]]:
    return sorted((face["track_id"], face["name"] or "") for face in record["faces"])


def _ros_faces(identities) -> list[tuple[int, str]]:
    return sorted((face.track_id, face.name) for face in identities.faces)


def _names(faces: list[tuple[int, str]]) -> list[str]:
    return sorted(name for _, name in faces)


def _wait_for_player(client: RecognizerClient, play_next, player: subprocess.Popen, log: Path) -> None:
    """Until the player's service answers and its publisher is known on the camera topic."""
    deadline = time.monotonic() + 60.0
    while not play_next.wait_for_service(timeout_sec=0.5):
        assert player.poll() is None, f"ros2 bag play exited with {player.returncode}:\n{_tail(log)}"
        assert time.monotonic() < deadline, f"ros2 bag play did not come up:\n{_tail(log)}"
    while not any(info.node_name == PLAYER for info in client.node.get_publishers_info_by_topic(CAMERA_TOPIC)):
        assert time.monotonic() < deadline, f"ros2 bag play does not publish {CAMERA_TOPIC}:\n{_tail(log)}"
        time.sleep(0.1)
    time.sleep(1.0)  # let the node's subscription match the player's publisher too (discovery is per pair)


def test_offline_run_names_both_people_in_the_clip(offline_frames):
    # Without known names in the bag, the comparison below would only compare "unknown"s.
    named = [names for names in (_names(_offline_faces(r)) for r in offline_frames.values()) if any(names)]
    seen = {name for names in named for name in names if name}
    assert seen == set(PEOPLE), seen
    assert len(named) >= FRAMES // 2, f"only {len(named)} of {FRAMES} frames have a known face"
    assert any("" in names for names in named), "no frame mixes known and unknown faces"


def test_ros2_bag_play_gives_the_same_names_per_frame_as_the_offline_tool(recognizer, camera_bag, offline_frames,
                                                                          workdir):
    client, launch_log = recognizer
    play_next = client.node.create_client(PlayNext, f"/{PLAYER}/play_next")
    player_log = workdir / "player.log"
    with player_log.open("wb") as output:
        player = subprocess.Popen(
            ["ros2", "bag", "play", str(camera_bag), "--start-paused", "--disable-keyboard-controls"],
            stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    online = {}
    try:
        _wait_for_player(client, play_next, player, player_log)
        for stamp in sorted(offline_frames):
            response = client.call(play_next, PlayNext.Request(), timeout=FRAME_TIMEOUT_S)
            assert response.success, f"play_next refused before frame {stamp}:\n{_tail(player_log)}"
            try:
                online[stamp] = client.wait_for_identities(*stamp, timeout=FRAME_TIMEOUT_S)
            except AssertionError as error:
                raise AssertionError(f"{error} ({len(online)} frames done)\nnode:\n{_tail(launch_log)}\n"
                                     f"player:\n{_tail(player_log)}") from None
        assert not client.call(play_next, PlayNext.Request(), timeout=FRAME_TIMEOUT_S).success, \
            "the player had more frames than the bag"
    finally:
        _stop(player)

    assert sorted(online) == sorted(offline_frames)
    assert {ids.header.frame_id for ids in online.values()} == {FRAME_ID}
    assert {r["frame_id"] for r in offline_frames.values()} == {FRAME_ID}
    differing = {stamp: (_offline_faces(record), _ros_faces(online[stamp]))
                 for stamp, record in sorted(offline_frames.items())
                 if _names(_offline_faces(record)) != _names(_ros_faces(online[stamp]))}
    assert not differing, "names differ (stamp: off-ROS vs ROS): " + "; ".join(
        f"{stamp}: {_similarities(offline_frames[stamp])} vs {_ros_similarities(online[stamp])}"
        for stamp in differing)
    for stamp, record in offline_frames.items():
        assert _offline_faces(record) == _ros_faces(online[stamp]), f"track ids differ at {stamp}"


def _similarities(record: dict) -> list[tuple[str, float]]:
    return [(face["name"] or "", face["similarity"]) for face in record["faces"]]


def _ros_similarities(identities) -> list[tuple[str, float]]:
    return [(face.name, round(face.similarity, 4)) for face in identities.faces]
