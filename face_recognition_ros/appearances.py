"""Who was seen when: a stream's per-frame results folded into time intervals per person."""

from __future__ import annotations

from dataclasses import dataclass, field

from .types import FaceResult

UNKNOWN = "unknown"
#: frames of one person closer than this in time belong to one appearance (a blink, a missed detection)
DEFAULT_MAX_GAP_S = 1.0


@dataclass
class Appearance:
    start_s: float
    end_s: float
    frames: int = 1


@dataclass
class Timeline:
    """Appearances per name (``UNKNOWN`` for faces no one was matched to), in order of first sighting."""

    max_gap_s: float = DEFAULT_MAX_GAP_S
    people: dict[str, list[Appearance]] = field(default_factory=dict)

    def add(self, time_s: float, faces: list[FaceResult]) -> None:
        """Record one frame's faces, seen at ``time_s`` seconds into the stream (times must not decrease)."""
        for name in sorted({face.match.name if face.match.is_known and face.match.name else UNKNOWN for face in faces}):
            spans = self.people.setdefault(name, [])
            if spans and time_s - spans[-1].end_s <= self.max_gap_s:
                spans[-1].end_s = time_s
                spans[-1].frames += 1
            else:
                spans.append(Appearance(time_s, time_s))

    def seconds_seen(self, name: str) -> float:
        return sum(span.end_s - span.start_s for span in self.people.get(name, []))

    def to_json(self) -> dict:
        return {name: [{"start_s": round(s.start_s, 2), "end_s": round(s.end_s, 2), "frames": s.frames} for s in spans]
                for name, spans in self.people.items()}

    def lines(self) -> list[str]:
        """One line per name: the intervals it was seen in."""
        width = max((len(name) for name in self.people), default=0)
        return [f"{name:<{width}}  " + ", ".join(f"{s.start_s:.1f}-{s.end_s:.1f} s" for s in spans)
                for name, spans in self.people.items()]
