"""Plain data shared by every stage. Arrays, not lists of objects, so stages stay vectorised; every column
of a record is always filled (NaN or False where a value is unknown), so no stage checks lengths."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from perception.core.events import FcwEvent, WarningLevel


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
    """Confirmed tracks reported for one frame, one row each. The tracker fills identity and box; ranging,
    TTC and threat assessment fill their columns in place (NaN: unknown, until they do)."""

    ids: np.ndarray  # (N,) int64, stable across frames
    boxes_xyxy: np.ndarray  # (N, 4) float32, filtered box
    scores: np.ndarray  # (N,) float32, score of the detection matched this frame
    class_ids: np.ndarray  # (N,) int32
    label_ids: np.ndarray  # (N,) int32
    ttc_s: np.ndarray  # (N,) float32, time to collision
    ttc_std_s: np.ndarray  # (N,) float32, its standard deviation
    dist_m: np.ndarray  # (N,) float32, distance ahead
    in_path: np.ndarray  # (N,) bool, inside the ego corridor (held: see perception.threat.lead)
    dist_std_m: np.ndarray  # (N,) float32, uncertainty of dist_m
    lateral_m: np.ndarray  # (N,) float32, offset of the object's centre from the camera axis, right +
    lateral_std_m: np.ndarray  # (N,) float32, its uncertainty
    width_m: np.ndarray  # (N,) float32, the object's lateral extent on the road
    lateral_speed_mps: np.ndarray  # (N,) float32, rate of lateral_m, right +
    lateral_speed_std_mps: np.ndarray  # (N,) float32, its uncertainty
    truncated: np.ndarray  # (N,) bool, box cut by the frame border
    ttc_plausible: np.ndarray  # (N,) bool, ttc_s is trusted: measurable, consistent (threat/ttc.py)
    lead: np.ndarray  # (N,) bool, the lead: the nearest object in the ego path
    cut_in: np.ndarray  # (N,) bool, reaching into the ego path ahead of the lead and moving further in

    def __post_init__(self) -> None:
        n = len(self.ids)
        for f in fields(self):
            if f.name != "ids" and len(getattr(self, f.name)) != n:
                name = f.name
                raise ValueError(f"Tracks.{name} has {len(getattr(self, name))} rows, ids has {n}")

    @classmethod
    def new(
        cls,
        ids: np.ndarray,
        boxes_xyxy: np.ndarray,
        scores: np.ndarray,
        class_ids: np.ndarray,
        label_ids: np.ndarray,
    ) -> Tracks:
        """Tracks as a tracker reports them: estimates unknown, nothing in path yet."""
        n = len(ids)
        unknown = np.full((9, n), np.nan, np.float32)  # one block: its rows are the columns
        flags = np.zeros((5, n), bool)
        return cls(
            np.asarray(ids, np.int64),
            np.asarray(boxes_xyxy, np.float32).reshape(n, 4),
            np.asarray(scores, np.float32),
            np.asarray(class_ids, np.int32),
            np.asarray(label_ids, np.int32),
            *unknown[:3],  # ttc_s, ttc_std_s, dist_m
            flags[0],  # in_path
            *unknown[3:],  # dist_std_m, lateral_m, lateral_std_m, width_m, lateral speed and its std
            *flags[1:],  # truncated, ttc_plausible, lead, cut_in
        )

    @classmethod
    def empty(cls) -> Tracks:
        return cls.new(np.zeros(0), np.zeros((0, 4)), np.zeros(0), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(slots=True, frozen=True)
class CollisionWarning:
    """The forward collision warning level and the track that sets it."""

    level: WarningLevel = WarningLevel.NONE
    track_id: int | None = None
    ttc_s: float | None = None
    dist_m: float | None = None


@dataclass(slots=True, frozen=True)
class EgoMotion:
    """How the ego car moves at this frame, from the camera's motion in the image (perception/motion/) or
    the car's own telemetry: NaN or None where unknown (no previous frame, too few features, no camera
    profile). The warning stage bends the ego path by it; without it the path is straight."""

    speed_mps: float = float("nan")  # ground speed
    speed_std_mps: float = float("nan")
    yaw_rate_dps: float = float("nan")  # rotation about the vertical axis, turning right positive
    yaw_rate_std_dps: float = float("nan")
    stopped: bool | None = None  # the background stands still in the image
    camera_motion_confidence: float | None = None  # 0..1: share of the features agreeing with the warp


@dataclass(slots=True)
class FrameResult:
    """Everything known about one frame when it reaches the sinks."""

    frame: Frame
    detections: Detections
    tracks: Tracks
    latency_ms: dict[str, float]  # per stage (events.Stage), plus "e2e" from capture to sink
    warning: CollisionWarning = field(default_factory=CollisionWarning)  # after this frame
    events: list[FcwEvent] = field(default_factory=list)  # what happened at this frame (warning changes)
    ego: EgoMotion = field(default_factory=EgoMotion)  # the camera's own motion (unknown by default)
