"""Prometheus metrics of every stream, labelled `stream`, in a registry of their own: never the process-wide
default one, so two monitors (tests) or a host application that also uses prometheus-client cannot collide.

Updating them is the per-frame cost of monitoring, so each stream keeps its labelled children (one dict
lookup per stage, no label resolution per frame). Frame counts the pipeline keeps itself (grabbed, dropped,
stale) are read when /metrics is scraped, from a callable per stream, and cost nothing per frame.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from perception.core.events import DetectorState, FcwEvent, SourceState, WarningLevel
from perception.core.types import FrameResult

# Stage latencies live between ~1 ms (track, sink) and ~1 s (a backlog on a slow machine): finer where
# a frame period is spent (25 fps = 40 ms), coarser beyond.
LATENCY_BUCKETS_S = (
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip

# A stream's state: `starting` until its first frame, `running` while a source without health events
# (a file) delivers, the live source's own `SourceState` when it reports one, `ended` after the run.
STARTING, RUNNING, ENDED = "starting", "running", "ended"
STREAM_STATES = (STARTING, RUNNING, *(s.value for s in SourceState), ENDED)
UP_STATES = frozenset({RUNNING, SourceState.CONNECTED.value, SourceState.RECOVERED.value})


class Counts(Protocol):
    """What a pipeline counts itself for a stream (RunSummary has these), read at scrape time."""

    frames_grabbed: int
    frames_dropped: int
    frames_stale: int
    frames_detector_unavailable: int


class _CountsCollector(Collector):
    """perception_frames_{grabbed,dropped,stale,detector_unavailable}_total from each stream's `counts()`,
    when scraped."""

    FAMILIES = (
        ("grabbed", "frames_grabbed", "Frames read from the source"),
        ("dropped", "frames_dropped", "Frames replaced by a newer one before detection took them (live)"),
        ("stale", "frames_stale", "Frames older than source.max_frame_age_s when detection could start"),
        (
            "detector_unavailable",
            "frames_detector_unavailable",
            "Frames dropped while a remote detector was unreachable (live)",
        ),
    )

    def __init__(self) -> None:
        self.counts: dict[str, Callable[[], Counts]] = {}

    def collect(self) -> Iterator[CounterMetricFamily]:
        families = [
            (CounterMetricFamily(f"perception_frames_{name}", doc, labels=["stream"]), attr)
            for name, attr, doc in self.FAMILIES
        ]
        for stream, counts in list(self.counts.items()):
            values = counts()
            for family, attr in families:
                family.add_metric([stream], getattr(values, attr))
        for family, _ in families:
            yield family

    def describe(self) -> list[Any]:
        return []  # the families vary with the streams; collected only


class Metrics:
    """Every metric the monitor exports, for all streams."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.processed = Counter(
            "perception_frames_processed", "Frames through every stage to the sinks", ["stream"], registry=r
        )
        self.tracks = Gauge("perception_tracks", "Confirmed tracks in the last frame", ["stream"], registry=r)
        self.latency = Histogram(
            "perception_stage_latency_seconds",
            "Time per pipeline stage (Stage names; e2e: capture to sinks; sink: sinks before the monitor)",
            ["stream", "stage"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.warnings = Counter(
            "perception_warnings",
            "Forward collision warnings raised: the level rose to this one",
            ["stream", "level"],
            registry=r,
        )
        self.warning_level = Gauge(
            "perception_warning_level",
            "Current forward collision warning level: 0 none, 1 caution, 2 warning",
            ["stream"],
            registry=r,
        )
        self.reconnects = Counter(
            "perception_reconnects", "Reconnect attempts of a live source", ["stream"], registry=r
        )
        self.source_events = Counter(
            "perception_source_events", "Live source state changes, by state", ["stream", "state"], registry=r
        )
        self.up = Gauge(
            "perception_stream_up",
            "1 while the stream delivers frames (running, connected, recovered), else 0",
            ["stream"],
            registry=r,
        )
        self.state = Enum(
            "perception_stream_state",
            "The stream's state",
            ["stream"],
            states=list(STREAM_STATES),
            registry=r,
        )
        self.viewers = Gauge(
            "perception_live_view_clients", "Clients watching the stream's MJPEG view", ["stream"], registry=r
        )
        self.live_frames = Counter(
            "perception_live_view_frames",
            "Frames taken for the live view (at most monitor.max_fps, only while watched)",
            ["stream"],
            registry=r,
        )
        self.detector_up = Gauge(
            "perception_detector_up",
            "1 while the shared detector answers, 0 while its server is unavailable or reconnecting",
            registry=r,
        )
        self.detector_up.set(1)
        self.detector_events = Counter(
            "perception_detector_events",
            "A remote detector's server state changes, by state",
            ["state"],
            registry=r,
        )
        self._counts = _CountsCollector()
        r.register(self._counts)

    def detector_event(self, state: DetectorState) -> None:
        self.detector_events.labels(state.value).inc()
        self.detector_up.set(1 if state is DetectorState.RECOVERED else 0)

    def stream(self, name: str) -> StreamMetrics:
        return StreamMetrics(self, name)

    def count_with(self, name: str, counts: Callable[[], Counts] | None) -> None:
        if counts is None:
            self._counts.counts.pop(name, None)
        else:
            self._counts.counts[name] = counts


class StreamMetrics:
    """One stream's children of every metric, resolved once."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._metrics = metrics
        self.name = name
        self._processed = metrics.processed.labels(name)
        self._tracks = metrics.tracks.labels(name)
        self._level = metrics.warning_level.labels(name)
        self._warnings = {
            level: metrics.warnings.labels(name, level.label) for level in WarningLevel if level > 0
        }
        self._latency: dict[Any, Any] = {}  # Stage (or str) -> histogram child
        self._reconnects = metrics.reconnects.labels(name)
        self._up = metrics.up.labels(name)
        self._state = metrics.state.labels(name)
        self.viewers = metrics.viewers.labels(name)
        self.live_frames = metrics.live_frames.labels(name)
        self._reconnects.inc(0)  # exported from the start, at 0
        for child in self._warnings.values():
            child.inc(0)
        self.set_state(STARTING)

    def frame(self, result: FrameResult) -> None:
        self._processed.inc()
        self._tracks.set(len(result.tracks))
        self._level.set(int(result.warning.level))
        for stage, ms in result.latency_ms.items():
            child = self._latency.get(stage)
            if child is None:
                label = str(getattr(stage, "value", stage))
                child = self._latency[stage] = self._metrics.latency.labels(self.name, label)
            child.observe(ms / 1e3)
        for event in result.events:
            if isinstance(event, FcwEvent):
                level = WarningLevel.from_label(event.level)
                if level > WarningLevel.from_label(event.previous):
                    self._warnings[level].inc()

    def source_event(self, state: SourceState) -> None:
        self._metrics.source_events.labels(self.name, state.value).inc()
        if state is SourceState.RECONNECTING:
            self._reconnects.inc()

    def set_state(self, state: str) -> None:
        self._state.state(state)
        self._up.set(1 if state in UP_STATES else 0)
