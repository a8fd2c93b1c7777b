"""Plain data shared by every stage. Arrays, not lists of objects, so stages stay vectorised."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Frame:
    """One image as grabbed. `capture_ns` is time.monotonic_ns() at grab, the origin of every latency;
    `source_ts_s` is the scene time (file timestamp, or capture time for live feeds) that motion
    models use, so a dropped frame shows up as a longer time step rather than a wrong velocity."""

    image: np.ndarray  # H x W x 3, BGR uint8
    index: int  # position in the source, counting frames that were dropped too
    capture_ns: int
    source_ts_s: float
    decode_ms: float | None = None  # time to read and decode a file frame; None for live feeds,
    # whose read() mostly waits for the next frame to arrive
    backlog_ms: float | None = None  # live streams: how much later than the stream's own clock this
    # frame arrived, against the least-delayed frame since connecting (frames queued in the network or
    # decoder: a reader falling behind); None where unknown


@dataclass(slots=True)
class Detections:
    """N boxes from one frame, in frame pixels."""

    boxes_xyxy: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int32, the model's class (e.g. COCO id)
    label_ids: np.ndarray  # (N,) int32, index into the driving taxonomy (config `classes`)

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def subset(self, index: np.ndarray) -> Detections:
        return Detections(
            self.boxes_xyxy[index], self.scores[index], self.class_ids[index], self.label_ids[index]
        )


@dataclass(slots=True)
class Tracks:
    """Confirmed tracks reported for one frame. NaN in `ttc_s` or `dist_m` means unknown."""

    ids: np.ndarray  # (N,) int64, stable across frames
    boxes_xyxy: np.ndarray  # (N, 4) float32, filtered box
    scores: np.ndarray  # (N,) float32, score of the detection matched this frame
    class_ids: np.ndarray  # (N,) int32
    label_ids: np.ndarray  # (N,) int32
    ttc_s: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (N,) float32
    ttc_std_s: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (N,) its uncertainty
    dist_m: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (N,) distance ahead
    in_path: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (N,) inside the ego corridor

    @classmethod
    def empty(cls) -> Tracks:
        return cls(
            np.zeros(0, np.int64),
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
            np.zeros(0, np.float32),
        )

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class FrameResult:
    """Everything known about one frame when it reaches the sinks."""

    frame: Frame
    detections: Detections
    tracks: Tracks
    latency_ms: dict[str, float]  # per stage, plus "e2e" from capture to sink
    warning: CollisionWarning | None = None  # forward collision warning state after this frame
    events: list[dict] = field(default_factory=list)  # things that happened at this frame (e.g. FCW changes)


@dataclass(slots=True, frozen=True)
class CollisionWarning:
    """The forward collision warning level and the track that sets it."""

    level: str  # "none" | "caution" | "warning"
    track_id: int | None = None
    ttc_s: float | None = None
    dist_m: float | None = None
