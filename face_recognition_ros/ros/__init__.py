"""The ROS 2 layer: the only subpackage that imports rclpy or the generated messages.

It converts and wires: parameters (``parameters.py`` turns the core's table into descriptors),
messages (``conversions.py``), the two nodes and their shared ``main`` (``node_main.py``). The logic
they run is the ROS-free core (``recognizer``, ``stream``, ``node_parameters``). Importing this
package (or ``face_recognition_ros`` itself) without ROS is fine; only the modules below need a
sourced ROS 2 workspace with this package built.
"""
