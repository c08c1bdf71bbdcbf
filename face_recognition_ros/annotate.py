"""Drawing recognition results onto frames (CLI --annotate and the ROS debug image)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .types import FaceResult

KNOWN_COLOUR = (40, 200, 40)  # RGB
UNKNOWN_COLOUR = (230, 60, 40)
FONT = cv2.FONT_HERSHEY_SIMPLEX
#: label text height as a share of the face box height: readable, yet small beside a neighbour's face
LABEL_HEIGHT_SHARE = 0.16
#: bounds on the label's text height in pixels (tiny faces still get a legible label)
MIN_LABEL_PX, MAX_LABEL_PX = 9, 36
_FONT_PX_AT_SCALE_1 = cv2.getTextSize("Ag", FONT, 1.0, 1)[0][1]


@dataclass(frozen=True)
class LabelPlacement:
    """Where a face's label goes: its background rectangle, text origin, font scale and stroke."""

    x: int
    y: int
    width: int
    height: int
    text_origin: tuple[int, int]
    scale: float
    thickness: int


def place_label(label: str, box: np.ndarray, image_width: int, image_height: int) -> LabelPlacement:
    """A label sized to its face and kept inside the image: above the box when there is room, else
    inside its top edge; shifted left when it would run off the right edge."""
    x1, y1, _, y2 = (float(v) for v in box)
    face_height = max(1.0, y2 - y1)
    text_px = float(np.clip(LABEL_HEIGHT_SHARE * face_height, MIN_LABEL_PX, MAX_LABEL_PX))
    scale = text_px / _FONT_PX_AT_SCALE_1
    thickness = max(1, round(text_px / 14))
    (text_width, text_height), baseline = cv2.getTextSize(label, FONT, scale, thickness)
    pad = max(1, thickness)
    width = min(image_width, text_width + 2 * pad)
    height = min(image_height, text_height + baseline + 2 * pad)
    x = int(np.clip(round(x1), 0, max(0, image_width - width)))
    above = round(y1) - height
    y = int(above if above >= 0 else np.clip(round(y1), 0, max(0, image_height - height)))
    return LabelPlacement(x, y, width, height, (x + pad, y + pad + text_height), scale, thickness)


def annotate(image: np.ndarray, faces: list[FaceResult]) -> np.ndarray:
    """A copy of the RGB ``image`` with boxes, landmarks, names and scores drawn on it."""
    canvas = image.copy()
    height, width = image.shape[:2]
    for face in faces:
        colour = KNOWN_COLOUR if face.match.is_known else UNKNOWN_COLOUR
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        line = max(1, round(min(x2 - x1, y2 - y1) / 60))
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, line)
        for x, y in face.landmarks:
            cv2.circle(canvas, (int(round(x)), int(round(y))), line + 1, colour, -1)
        label = f"{face.match.name or 'unknown'} {face.match.similarity:.2f}"
        if face.track_id >= 0:
            label = f"#{face.track_id} {label}"
        place = place_label(label, face.box, width, height)
        cv2.rectangle(canvas, (place.x, place.y), (place.x + place.width - 1, place.y + place.height - 1), colour, -1)
        cv2.putText(canvas, label, place.text_origin, FONT, place.scale, (255, 255, 255), place.thickness, cv2.LINE_AA)
    return canvas
