"""The node's parameter table (``node_parameters``) as rclpy parameter descriptors."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from face_recognition_ros.node_parameters import ParamSpec


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """Description, read-only flag and range of one parameter, for ``declare_parameter``."""
    result = ParameterDescriptor(description=spec.description, read_only=not spec.dynamic)
    if spec.minimum is not None and spec.type_name == "double":
        result.floating_point_range = [
            FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
        ]
    elif spec.minimum is not None and spec.type_name == "int":
        result.integer_range = [IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)]
    return result
