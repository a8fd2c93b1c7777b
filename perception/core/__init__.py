"""The bottom layer every stage shares: plain records (`types`), the events.jsonl schema and every enum
(`events`), the YAML config (`config`, `camera_profile`), errors, and box matching."""

from perception.core.config import Config, load_config
from perception.core.errors import PerceptionError
from perception.core.types import CollisionWarning, Detections, Frame, FrameResult, Tracks

__all__ = [
    "CollisionWarning",
    "Config",
    "Detections",
    "Frame",
    "FrameResult",
    "PerceptionError",
    "Tracks",
    "load_config",
]
