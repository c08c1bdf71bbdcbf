"""Face recognition for ROS 2 service robots.

The core (detection, alignment, embedding, gallery, matching, tracking, pipeline) imports no ROS
module; everything that touches rclpy lives in :mod:`face_recognition_ros.ros`. This file stays
import-light on purpose: rosidl generates the same Python package name for the messages
(``face_recognition_ros.msg``), and the colcon build installs these modules beside them.
"""

__version__ = "0.1.0"
