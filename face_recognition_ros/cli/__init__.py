"""The ``face-recognition-ros`` command: every job of the package without ROS."""
