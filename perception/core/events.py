"""The schema of events.jsonl, and every state and level the pipeline reports, in one place.

Each line of events.jsonl is one of the records below, serialised by its `to_dict()` with its `type` first.
Records are built where the thing happens (a source's state change, a warning level change, a processed
frame) and written by the event log sink; `parse_event` reads a line back and checks it against the schema
(unknown keys, missing keys and wrong types are refused), which is what the tests do with real runs.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, TypeAdapter

_FORBID = ConfigDict(extra="forbid", strict=True)


class WarningLevel(enum.IntEnum):
    """Forward collision warning levels, ordered by severity (so `max` and `>` mean 'more urgent')."""

    NONE = 0
    CAUTION = 1
    WARNING = 2

    @property
    def label(self) -> str:
        """The name in events.jsonl and on the video: 'none', 'caution', 'warning'."""
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> WarningLevel:
        return cls[label.upper()]


class SourceState(str, enum.Enum):
    """A live source's health: `connected` once its first frame arrives; `stalled` when frames stop;
    `reconnecting` before each reopen attempt; `recovered` when frames come back; `gave_up` when the
    reconnect attempts are spent (the run then ends normally)."""

    CONNECTED = "connected"
    STALLED = "stalled"
    RECONNECTING = "reconnecting"
    RECOVERED = "recovered"
    GAVE_UP = "gave_up"


class DetectorState(str, enum.Enum):
    """A remote detector's health (an inference server): `unavailable` when a request fails as if the server
    were gone; `reconnecting` before each attempt; `recovered`; `gave_up` (the run then ends with an error).
    Meanwhile replays wait for it; live streams drop their frames (`frames_detector_unavailable`)."""

    UNAVAILABLE = "unavailable"
    RECONNECTING = "reconnecting"
    RECOVERED = "recovered"
    GAVE_UP = "gave_up"


class Stage(str, enum.Enum):
    """Keys of a frame's `latency_ms`, in pipeline order (all in milliseconds)."""

    GRAB = "grab"  # reading and decoding a file frame (absent for live feeds)
    BACKLOG = "backlog"  # live streams: how late the frame arrived against the stream's own clock
    WAIT = "wait"  # queued between grab and detection
    DETECT = "detect"  # the whole detect call, with its steps:
    PREPROCESS = "preprocess"
    INFERENCE = "inference"
    POSTPROCESS = "postprocess"
    TRACK = "track"  # camera motion (and the ego motion it implies), then the tracker update
    TTC = "ttc"  # distance, time to collision and the warning state
    SINK = "sink"  # drawing and writing the outputs so far
    E2E = "e2e"  # capture to the sinks


class RunStatus(str, enum.Enum):
    """How a run ended, in its `end` line."""

    OK = "ok"
    ERROR = "error"
    INTERRUPTED = "interrupted"


class _Record:
    """Serialisation shared by the records: `type` first, then the fields in declaration order; fields
    that are None and marked optional (`_omit_none`) are left out (source events carry per-state details)."""

    type: ClassVar[str]
    _omit_none: ClassVar[frozenset[str]] = frozenset()

    def _details(self, *skip: str) -> str:
        """A state change's details for a line on stderr: ` (key value, ...)`, or nothing."""
        shown = {k: v for k, v in self.to_dict().items() if k not in ("type", "state", "at_ns", *skip)}
        return f" ({', '.join(f'{k} {v}' for k, v in shown.items())})" if shown else ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.name in self._omit_none:
                continue
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
        return out


@dataclass(frozen=True, slots=True)
class StartEvent(_Record):
    """The first line: what runs on what."""

    type: ClassVar[str] = "start"
    __pydantic_config__ = _FORBID
    stream: str  # the stream's name (its output folder when a run has several)
    source: str
    live: bool
    fps: float
    model: str
    backend: str
    layout: str
    input_hw: list[int]
    requests: int
    labels: list[str]


@dataclass(frozen=True, slots=True)
class TrackRecord:
    """One confirmed track in a frame line. NaN estimates are written as null."""

    __pydantic_config__ = _FORBID
    id: int
    label: str  # driving label (config `classes`)
    class_name: str  # the model's own class name; written as "class"
    box: list[float]  # x1, y1, x2, y2 in frame pixels
    score: float
    ttc_s: float | None
    dist_m: float | None
    in_path: bool  # in the ego corridor (held for fcw.in_path_hold_s)
    lateral_m: float | None  # centre's offset from the camera axis on the road, right +
    lateral_speed_mps: float | None  # its rate, right +
    truncated: bool  # the box is cut by the frame border
    ttc_plausible: bool  # ttc_s is trusted (else drawn greyed, never acted on)
    lead: bool  # the nearest object in the ego path
    cut_in: bool  # reaching into the path ahead of the lead, moving further in

    def to_dict(self) -> dict[str, Any]:
        """The fields in order, `class_name` written as `class`."""
        return {("class" if f.name == "class_name" else f.name): getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class FrameEvent(_Record):
    """One processed frame: its timing by stage (`Stage`), and its confirmed tracks."""

    type: ClassVar[str] = "frame"
    __pydantic_config__ = _FORBID
    frame: int
    capture_ns: int  # time.monotonic_ns() at grab
    source_ts_s: float  # scene time (file timestamp, or arrival time for live feeds)
    latency_ms: dict[str, float]
    detections: int
    fcw: str  # the warning level after this frame
    tracks: list[TrackRecord]
    # The ego vehicle's motion from the image (perception/motion/); null where unknown.
    ego_speed_mps: float | None = None
    ego_speed_std_mps: float | None = None
    ego_yaw_rate_dps: float | None = None  # turning right positive
    ego_yaw_rate_std_dps: float | None = None
    ego_stopped: bool | None = None  # the static scene stands still in the image
    camera_motion_confidence: float | None = None  # 0..1: share of the features agreeing with the warp

    def to_dict(self) -> dict[str, Any]:
        out = _Record.to_dict(self)
        out["tracks"] = [track.to_dict() for track in self.tracks]
        return out


@dataclass(frozen=True, slots=True)
class FcwEvent(_Record):
    """An object's warning level changed at this frame (each object has its own; the frame's `fcw` is the
    highest): the track and the estimates that set it (null once the track is no longer reported)."""

    type: ClassVar[str] = "fcw"
    __pydantic_config__ = _FORBID
    level: str  # WarningLevel label
    previous: str
    track_id: int | None  # the track that sets the level (None: none does any more)
    ttc_s: float | None
    dist_m: float | None
    reason: str | None  # "lead", "cut_in" or "crossing"
    lateral_m: float | None  # its centre's offset from the camera axis on the road, right +
    lateral_speed_mps: float | None  # its rate, right +
    truncated: bool | None  # its box is cut by the frame border
    required_decel_mps2: float | None  # how hard the ego must brake to avoid it, after a reaction time
    frame: int
    source_ts_s: float


@dataclass(frozen=True, slots=True)
class SourceEvent(_Record):
    """A live source's state change, with the details that state has (others omitted)."""

    type: ClassVar[str] = "source"
    _omit_none: ClassVar[frozenset[str]] = frozenset(
        {"width", "height", "fps", "attempts", "attempt", "max_attempts", "delay_s", "reason"}
        | {"since_last_frame_s", "frames", "outage_s", "resized"}
    )
    __pydantic_config__ = _FORBID
    state: SourceState
    source: str
    at_ns: int  # monotonic; for connected/recovered, the capture time of the first frame in that state
    width: int | None = None  # connected, recovered
    height: int | None = None
    fps: float | None = None  # connected
    attempts: int | None = None  # connected, recovered, gave_up: open attempts it took
    attempt: int | None = None  # reconnecting: this attempt's number
    max_attempts: int | Literal["forever"] | None = None  # reconnecting
    delay_s: float | None = None  # reconnecting: wait before this attempt
    reason: str | None = None  # stalled
    since_last_frame_s: float | None = None  # stalled
    frames: int | None = None  # stalled: frames read so far
    outage_s: float | None = None  # recovered, gave_up
    resized: bool | None = None  # recovered: came back at another resolution

    def describe(self) -> str:
        """The one line printed on stderr."""
        return f"source {self.state.value}{self._details('source')}"


@dataclass(frozen=True, slots=True)
class DetectorEvent(_Record):
    """The shared detector's server changed state (written to every stream's log)."""

    type: ClassVar[str] = "detector"
    _omit_none: ClassVar[frozenset[str]] = frozenset(
        {"reason", "attempt", "max_attempts", "delay_s", "attempts", "outage_s"}
    )
    __pydantic_config__ = _FORBID
    state: DetectorState
    detector: str  # "URL model"
    at_ns: int  # monotonic
    reason: str | None = None  # unavailable, reconnecting: why the server is not usable
    attempt: int | None = None  # reconnecting
    max_attempts: int | Literal["forever"] | None = None  # reconnecting
    delay_s: float | None = None  # reconnecting: wait before this attempt
    attempts: int | None = None  # recovered, gave_up
    outage_s: float | None = None  # recovered, gave_up

    def describe(self) -> str:
        """The one line printed on stderr."""
        return f"detector {self.detector} {self.state.value}{self._details('detector')}"


@dataclass(frozen=True, slots=True)
class ErrorEvent(_Record):
    """The run failed: the stage and the one-line message (also printed as `error: ...`)."""

    type: ClassVar[str] = "error"
    __pydantic_config__ = _FORBID
    stage: str
    message: str


@dataclass(frozen=True, slots=True)
class EndEvent(_Record):
    """The last line of every run, however it ended."""

    type: ClassVar[str] = "end"
    __pydantic_config__ = _FORBID
    status: RunStatus
    frames_grabbed: int
    frames_processed: int
    frames_dropped: int  # replaced by a newer frame before detection took it (live)
    frames_stale: int  # older than source.max_frame_age_s when detection could start (live)
    frames_detector_unavailable: int  # live: dropped while a remote detector was unreachable
    elapsed_s: float
    fps: float
    interrupted: bool


Event = StartEvent | FrameEvent | FcwEvent | SourceEvent | DetectorEvent | ErrorEvent | EndEvent
EVENT_TYPES: dict[str, type] = {
    cls.type: cls
    for cls in (StartEvent, FrameEvent, FcwEvent, SourceEvent, DetectorEvent, ErrorEvent, EndEvent)
}
_ADAPTERS: dict[str, TypeAdapter] = {}


def parse_event(line: str | dict[str, Any]) -> Event:
    """A line of events.jsonl (its text, or the parsed JSON) back to its record, checked against the schema:
    raises ValueError naming the problem for an unknown type, missing or unknown keys, or a wrong type."""
    data = json.loads(line) if isinstance(line, str) else dict(line)
    kind = data.pop("type", None)
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown event type {kind!r}")
    if cls is FrameEvent:
        tracks = data.get("tracks")
        if isinstance(tracks, list):
            data["tracks"] = [
                {("class_name" if k == "class" else k): v for k, v in t.items()} if isinstance(t, dict) else t
                for t in tracks
            ]
    adapter = _ADAPTERS.get(kind) or _ADAPTERS.setdefault(kind, TypeAdapter(cls))
    # Validated as JSON, strictly: no string for a number, no number for a bool; an enum from its value.
    return adapter.validate_json(json.dumps(data))


__all__ = [
    "EVENT_TYPES",
    "DetectorEvent",
    "DetectorState",
    "EndEvent",
    "ErrorEvent",
    "Event",
    "FcwEvent",
    "FrameEvent",
    "RunStatus",
    "SourceEvent",
    "SourceState",
    "Stage",
    "StartEvent",
    "TrackRecord",
    "WarningLevel",
    "parse_event",
]
