"""The ROS 2 layer: the only subpackage that imports rclpy, cv_bridge or the generated messages.

Importing it (or ``face_recognition_ros`` itself) without ROS is fine; only the modules below need
a sourced ROS 2 workspace with this package built.
"""
