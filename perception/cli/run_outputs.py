"""A stream's outputs in a run: opened (video, window, tracks.txt, events.jsonl with its `start` line), the
relays that put source and detector health into the logs, and the end of every stream the same way however
the run ended: other outputs closed first, then the `error` line if it failed, the `end` line, the log closed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from perception.core.config import Config
from perception.core.errors import PerceptionError, first_line
from perception.core.events import (
    DetectorEvent,
    DetectorState,
    EndEvent,
    ErrorEvent,
    RunStatus,
    SourceEvent,
    StartEvent,
)
from perception.detect import Detector
from perception.output.mqtt import MqttStreamSink
from perception.output.recording import FoxgloveStreamSink
from perception.output.sinks import DisplaySink, EventLog, Sink, TracksFile, VideoSink
from perception.runtime.pipeline import RunSummary, StageError
from perception.runtime.streams import StreamSpec
from perception.sources.files import Source

if TYPE_CHECKING:
    from perception.output.monitor import Monitor


@dataclass
class OpenedStream:
    """One stream while the run is on: its spec, config, source, outputs and the relay of its health."""

    spec: StreamSpec
    cfg: Config
    source: Source
    out: Path
    health: HealthRelay
    events: EventLog | None = None
    sinks: list[Sink] = field(default_factory=list)
    monitor: Sink | None = None  # its monitoring sink, with --serve
    mqtt: MqttStreamSink | None = None  # its MQTT messages, with --mqtt
    mcap: FoxgloveStreamSink | None = None  # its channels in run.mcap, with output.mcap
    live: FoxgloveStreamSink | None = None  # its channels on the live Foxglove server, with --foxglove


def open_outputs(
    resources: contextlib.ExitStack, o: OpenedStream, detector: Detector, class_names: list[str], model: str
) -> None:
    """A stream's sinks, each registered so it is closed however the run ends (closing is idempotent: a
    run that ends normally closes them itself, in its own order, in `_finish`)."""
    cfg = o.cfg
    o.out.mkdir(parents=True, exist_ok=True)
    if cfg.output.video:
        video = VideoSink(o.out / "annotated.mp4", o.source.fps, cfg.output)
        o.sinks.append(resources.enter_context(contextlib.closing(video)))
    if cfg.output.show:
        o.sinks.append(resources.enter_context(contextlib.closing(DisplaySink(o.spec.name))))
    if cfg.output.tracks:
        o.sinks.append(resources.enter_context(contextlib.closing(TracksFile(o.out / "tracks.txt"))))
    if cfg.output.events:
        o.events = resources.enter_context(
            contextlib.closing(EventLog(o.out / "events.jsonl", cfg.labels, class_names))
        )
        o.sinks.append(o.events)  # last, so its frame lines carry the other sinks' latency too
        o.events.event(
            StartEvent(
                stream=o.spec.name,
                source=o.source.name,
                live=o.source.is_live,
                fps=o.source.fps,
                model=str(model),
                backend=detector.backend,
                layout=detector.layout,
                input_hw=list(detector.input_hw),
                requests=detector.requests,
                labels=cfg.labels,
            )
        )
    for extra in (o.monitor, o.mqtt):  # before the event log: its `sink` latency includes them
        if extra is not None:
            o.sinks.insert(len(o.sinks) - (o.events is not None), extra)


def finish_stream(
    o: OpenedStream,
    summary: RunSummary,
    failure: StageError | None,
    status: RunStatus,
    make_room: Callable[[], None],
    ended: Callable[[EndEvent], None] | None = None,
) -> StageError | None:
    """End a stream the same way whatever happened: its other outputs closed first (a failed video is cut
    back to its last whole fragment), the folder's reserved space given back (`make_room`: a full disk
    still takes the last lines), then the `error` line if the stream (or the run) failed, the `end` line,
    and the log closed; `ended` (the monitor) gets the `end` record too. Returns what failed here in a stream
    that had not failed, for the caller to raise."""
    failure = summary.error or failure
    if failure is None and status is RunStatus.OK and summary.frames_processed == 0:
        failure = StageError("run", PerceptionError(nothing_processed(summary, o.source.name, o.cfg)))
        summary.error = failure
    late: StageError | None = None
    for sink in o.sinks:
        if sink is o.events:
            continue
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - e.g. the video's last fragment on a full disk
            if failure is None and late is None:
                late = failure = summary.error = StageError("sink", exc)
    make_room()
    if failure is not None:
        status = RunStatus.ERROR
    end = end_event(summary, status)
    if ended is not None:
        ended(end)
    if o.events is not None:
        try:
            if failure is not None:
                o.events.event(ErrorEvent(failure.stage, one_line(failure.error)))
            o.events.event(end)
            o.events.close()
        except PerceptionError as exc:
            if failure is None:  # the run itself went well: losing its log is the error
                late = summary.error = StageError("sink", exc)
    return late


def end_event(summary: RunSummary, status: RunStatus) -> EndEvent:
    return EndEvent(
        status=status,
        frames_grabbed=summary.frames_grabbed,
        frames_processed=summary.frames_processed,
        frames_dropped=summary.frames_dropped,
        frames_stale=summary.frames_stale,
        frames_detector_unavailable=summary.frames_detector_unavailable,
        elapsed_s=round(summary.elapsed_s, 3),
        fps=round(summary.fps, 2),
        interrupted=status is RunStatus.INTERRUPTED,
    )


class HealthRelay:
    """A live source's state changes (connected, stalled, reconnecting, recovered, gave_up) while the run is
    on: a `source` line in its events.jsonl, one line on stderr each, and the monitor's health with --serve.
    Called from the grab thread."""

    def __init__(self, name: str) -> None:
        self.prefix = f"{name}: " if name else ""
        self.events: EventLog | None = None
        self.monitor: Callable[[SourceEvent], None] | None = None
        self.mqtt: Callable[[SourceEvent], None] | None = None
        self.active = False

    def __call__(self, event: SourceEvent) -> None:
        if not self.active:
            return
        if self.monitor is not None:
            self.monitor(event)
        if self.mqtt is not None:
            self.mqtt(event)
        if self.events is not None:
            self.events.event(event)
        print(f"perception: {self.prefix}{event.describe()}", file=sys.stderr)


class DetectorRelay:
    """The shared detector's server health (a Triton server going away and coming back): a `detector` line
    in every stream's events.jsonl, one line on stderr, and the monitor's health with --serve. Called from
    a detect thread."""

    def __init__(self, opened: list[OpenedStream], monitor: Monitor | None = None) -> None:
        self.opened = opened
        self.monitor = monitor
        self.active = False

    def __call__(self, state: str, fields: dict) -> None:
        if not self.active:
            return
        event = DetectorEvent(DetectorState(state), **fields)
        if self.monitor is not None:
            self.monitor.on_detector(event)
        for o in self.opened:
            if o.events is not None:
                o.events.event(event)
        print(f"perception: {event.describe()}", file=sys.stderr)


def one_line(error: BaseException) -> str:
    """Our own errors as they are; anything else with its type, so a user can tell it is not ours."""
    return first_line(error, with_type=not isinstance(error, PerceptionError))


def nothing_processed(s: RunSummary, source: str, cfg: Config) -> str:
    if s.frames_stale:
        return (
            f"none of the {s.frames_grabbed} frames read from {source} was processed: "
            f"{s.frames_stale} were older than source.max_frame_age_s "
            f"({cfg.source.max_frame_age_s:g} s) when detection could start"
        )
    return f"no frame could be read from {source}"
