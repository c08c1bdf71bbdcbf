"""Drawing recognition results onto frames (CLI --annotate and the ROS debug image)."""

from __future__ import annotations

import cv2
import numpy as np

from .types import FaceResult

KNOWN_COLOUR = (40, 200, 40)  # RGB
UNKNOWN_COLOUR = (230, 60, 40)


def annotate(image: np.ndarray, faces: list[FaceResult]) -> np.ndarray:
    """A copy of the RGB ``image`` with boxes, landmarks, names and scores drawn on it."""
    canvas = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        colour = KNOWN_COLOUR if face.match.is_known else UNKNOWN_COLOUR
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        for x, y in face.landmarks:
            cv2.circle(canvas, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
        label = f"{face.match.name or 'unknown'} {face.match.similarity:.2f}"
        if face.track_id >= 0:
            label = f"#{face.track_id} {label}"
        scale = 0.5 * thickness
        (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y1 - height - baseline - 2)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 2, top + height + baseline + 2), colour, -1)
        cv2.putText(canvas, label, (x1 + 1, top + height + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    thickness, cv2.LINE_AA)
    return canvas
