"""Start the face recognizer on a camera topic, optionally fed by the video_source node.

    ros2 launch face_recognition_ros recognizer.launch.py --show-args
    ros2 launch face_recognition_ros recognizer.launch.py camera_topic:=/my_camera/image_raw
    ros2 launch face_recognition_ros recognizer.launch.py use_video_source:=true video_path:=clip.mp4

Arguments left empty keep the value from the config file (config/recognizer.yaml by default).
Only launch APIs present in both Humble and Jazzy are used.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "face_recognition_ros"


def _recognizer(context):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    camera_topic = arg("camera_topic")
    overrides = {name: arg(name) for name in ("gallery_path", "backend", "device") if arg(name)}
    return [
        Node(
            package=PACKAGE,
            executable="recognizer_node",
            name="face_recognizer",
            namespace=arg("namespace"),
            parameters=[arg("config_file"), overrides],
            remappings=[("image", camera_topic), ("image/compressed", camera_topic.rstrip("/") + "/compressed")],
            output="screen",
        )
    ]


def generate_launch_description() -> LaunchDescription:
    default_config = str(Path(get_package_share_directory(PACKAGE)) / "config" / "recognizer.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic to recognise faces on (with the node's "
                                          "'compressed' parameter, <camera_topic>/compressed is used)"),
        DeclareLaunchArgument("config_file", default_value=default_config,
                              description="YAML file with the recognizer's parameters"),
        DeclareLaunchArgument("gallery_path", default_value="",
                              description="Gallery: a file path (SQLite), or a postgresql:// URL (PostgreSQL, "
                                          "shared by several robots; never with a password: libpq reads it from "
                                          "~/.pgpass, $PGPASSFILE or a service file) ('' = the config file's "
                                          "value, by default gallery.db in the user's data directory)"),
        DeclareLaunchArgument("backend", default_value="",
                              description="Inference backend: torch, onnxruntime, tensorrt or auto "
                                          "('' = the config file's value)"),
        DeclareLaunchArgument("device", default_value="",
                              description="Inference device: cpu, cuda or cuda:N ('' = the config file's value)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="Namespace of the recognizer's topics and services"),
        DeclareLaunchArgument("use_video_source", default_value="false",
                              description="Also start video_source publishing video_path on camera_topic "
                                          "(try it without a camera)"),
        DeclareLaunchArgument("video_path", default_value="",
                              description="Video file or image folder for the video source"),
        DeclareLaunchArgument("video_loop", default_value="true",
                              description="Loop the video source at its end"),
        OpaqueFunction(function=_recognizer),
        Node(
            package=PACKAGE,
            executable="video_source",
            name="video_source",
            namespace=LaunchConfiguration("namespace"),
            parameters=[{"path": LaunchConfiguration("video_path"), "loop": LaunchConfiguration("video_loop")}],
            remappings=[("image", LaunchConfiguration("camera_topic"))],
            condition=IfCondition(LaunchConfiguration("use_video_source")),
            output="screen",
        ),
    ])
