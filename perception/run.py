"""`perception run`: open the streams, the shared detector and every stream's outputs, run the pipeline,
and end every stream's event log with its `end` line however the run ends.

One stream writes into `--out` itself; several write into `--out/<name>/` each (names from
perception/streams.py). Every failure a user can fix ends as one line `error: ...` and a non-zero exit;
whatever was written before it stays on disk, flushed and closed.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from perception.cli_flags import flag_overrides
from perception.config import Config, load_config
from perception.detect import Detector, create_detector, inference_requests
from perception.detect.extra import ExtraDetector, create_extra_detectors, run_class_names
from perception.detector_cli import report_detector
from perception.errors import PerceptionError, first_line
from perception.events import (
    DetectorEvent,
    DetectorState,
    EndEvent,
    ErrorEvent,
    RunStatus,
    SourceEvent,
    StartEvent,
)
from perception.pipeline import Pipeline, RunSummary, StageError, Stream
from perception.processor import build_processor
from perception.sinks import Annotator, DisplaySink, EventLog, Sink, VideoSink
from perception.sources import Source, open_source
from perception.streams import StreamSpec, stream_specs

EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@dataclass
class _Opened:
    """One stream while the run is on: its spec, source, outputs and the relay of its health events."""

    spec: StreamSpec
    cfg: Config
    source: Source
    out: Path
    health: _HealthRelay
    events: EventLog | None = None
    sinks: list[Sink] = field(default_factory=list)


def run_command(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, flag_overrides(args))
    specs = stream_specs(args.source, args.streams, args.fps)
    model = args.model or cfg.detector.default_model
    with contextlib.ExitStack() as outputs:
        opened = _open_sources(outputs, cfg, specs, args.out)
        throughput = not any(o.source.is_live for o in opened)
        requests = inference_requests(cfg.detector, throughput)
        # Backend auto checks reduced precision on real frames: the first stream's, when a file or folder.
        sample = next((o.spec.source for o in opened if not o.source.is_live), None)
        detector = create_detector(model, cfg, requests, sample)
        outputs.callback(detector.close)
        extras = create_extra_detectors(cfg, detector, requests)
        for extra in extras:
            outputs.callback(extra.close)
        class_names = run_class_names(detector, extras)
        relay = _DetectorRelay(opened)
        if hasattr(detector, "on_health"):  # a remote detector: its server's health, what to do while down
            detector.on_health = relay
            detector.outage_policy = "wait" if throughput else "drop"  # a replay loses no frame
        _describe(opened, detector, extras, model, args.out)
        for o in opened:
            _open_outputs(outputs, o, detector, class_names, model)
        streams, progress = _streams(opened, class_names)
        pipeline = Pipeline(detector, cfg, streams, extras)
        stop_signal = _install_signal_handlers(pipeline)
        for o in opened:
            o.health.events, o.health.active = o.events, True
        relay.active = True
        error: StageError | None = None
        try:
            total = pipeline.run()
        except StageError as exc:
            error = exc
            raise
        finally:
            relay.active = False
            if progress is not None:
                progress.close()
            for o, stream in zip(opened, streams, strict=True):
                o.health.active = False
                _end_log(o, stream.summary, error, bool(stop_signal))
    _report(opened, streams, total, cfg, args.out)
    if stop_signal:
        return EXIT_SIGTERM if stop_signal[0] == signal.SIGTERM else EXIT_SIGINT
    return 0


def _open_sources(
    outputs: contextlib.ExitStack, cfg: Config, specs: list[StreamSpec], out: Path
) -> list[_Opened]:
    """Every source opened (a wrong one fails the run before anything is written), each closed at exit."""
    opened = []
    for spec in specs:
        scfg = _stream_config(cfg, spec)
        health = _HealthRelay(spec.name if len(specs) > 1 else "")
        source = open_source(spec.source, scfg.source, fps=spec.fps, on_health=health)
        outputs.callback(source.close)
        opened.append(_Opened(spec, scfg, source, out if len(specs) == 1 else out / spec.name, health))
    return opened


def _stream_config(cfg: Config, spec: StreamSpec) -> Config:
    """The config with a stream's own camera profile and mode, checked like the rest at load."""
    update: dict = {}
    if spec.camera is not None:
        update["camera"] = {"profile": spec.camera}
    if spec.mode is not None:
        update["source"] = {"mode": spec.mode}
    if not update:
        return cfg
    data = cfg.model_dump()
    for section, values in update.items():
        data[section].update(values)
    return Config.model_validate(data)


def _describe(
    opened: list[_Opened], detector: Detector, extras: list[ExtraDetector], model: str, out: Path
) -> None:
    for o in opened:
        kind = "live" if o.source.is_live else "replay"
        print(
            f"perception: {o.spec.name}: {o.source.name} ({kind}, {o.source.fps:g} fps) -> {o.out}",
            file=sys.stderr,
        )
    print(
        f"perception: {Path(model).name} [{detector.backend}, {detector.layout}, "
        f"{detector.input_hw[0]}x{detector.input_hw[1]}, {detector.requests} request(s) in flight, "
        f"{len(opened)} stream(s)] -> {out}",
        file=sys.stderr,
    )
    report_detector(detector)
    for extra in extras:
        every = f", every {extra.every_n_frames} frames" if extra.every_n_frames > 1 else ""
        d = extra.detector
        print(
            f"perception: + {extra.name} [{d.backend}, {d.layout}, {d.input_hw[0]}x{d.input_hw[1]}{every}]",
            file=sys.stderr,
        )
        report_detector(d, extra.name)


def _open_outputs(
    outputs: contextlib.ExitStack, o: _Opened, detector: Detector, class_names: list[str], model: str
) -> None:
    """A stream's sinks, each registered with `outputs` so it is closed however the run ends."""
    cfg = o.cfg
    o.out.mkdir(parents=True, exist_ok=True)
    if cfg.output.video:
        video = VideoSink(o.out / "annotated.mp4", o.source.fps, cfg.output.video_fourcc)
        o.sinks.append(outputs.enter_context(contextlib.closing(video)))
    if cfg.output.show:
        o.sinks.append(outputs.enter_context(contextlib.closing(DisplaySink(o.spec.name))))
    if cfg.output.events:
        o.events = outputs.enter_context(
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


def _streams(opened: list[_Opened], class_names: list[str]):
    """The pipeline's streams, and a progress bar over every file's frames (none for live feeds)."""
    counts = [o.source.frame_count for o in opened]
    progress = None
    if all(c is not None for c in counts):
        from tqdm import tqdm

        progress = tqdm(total=sum(counts), unit="frame", disable=None, dynamic_ncols=True)
    streams = []
    for o in opened:
        cfg = o.cfg
        annotate = Annotator(cfg.labels, class_names) if (cfg.output.video or cfg.output.show) else None
        on_frame = (lambda _r, bar=progress: bar.update()) if progress is not None else None
        streams.append(Stream(o.source, build_processor(cfg), o.sinks, annotate, on_frame, o.spec.name))
    return streams, progress


def _end_log(o: _Opened, summary: RunSummary, error: StageError | None, signalled: bool) -> None:
    """A stream's last lines: its error (its own, or the shared detector's), then `end` with the status."""
    failure = summary.error or error
    if failure is not None:
        status = RunStatus.ERROR
    elif summary.interrupted or signalled:
        status = RunStatus.INTERRUPTED
    else:
        status = RunStatus.OK
    if o.events is None:
        return
    if failure is not None:
        o.events.event(ErrorEvent(failure.stage, one_line(failure.error)))
    o.events.event(
        EndEvent(
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
    )


def _report(opened: list[_Opened], streams: list[Stream], total: RunSummary, cfg: Config, out: Path) -> None:
    """A line per stream (and in total); an error if a stream failed or none processed a frame."""
    failed = []
    for o, stream in zip(opened, streams, strict=True):
        s = stream.summary
        if s.error is not None:
            failed.append(f"{o.spec.name} ({one_line(s.error.error)})")
        elif s.frames_processed == 0 and not s.interrupted:
            failed.append(f"{o.spec.name} ({_nothing_processed(s, o.source.name, cfg)})")
        prefix = f"{o.spec.name}: " if len(opened) > 1 else ""
        print(f"perception: {prefix}{_line(s)} -> {o.out}", file=sys.stderr)
    if len(opened) > 1:
        print(f"perception: all {len(opened)} streams: {_line(total)} -> {out}", file=sys.stderr)
    if len(opened) == 1 and failed:
        s = streams[0].summary
        if s.error is not None:
            raise s.error
        raise PerceptionError(_nothing_processed(s, opened[0].source.name, cfg))
    if failed:
        raise PerceptionError(f"{len(failed)} of {len(opened)} streams failed: {'; '.join(failed)}")


def _line(s: RunSummary) -> str:
    return (
        f"{s.frames_processed} frames in {s.elapsed_s:.1f} s ({s.fps:.1f} fps), {s.frames_dropped} dropped, "
        f"{s.frames_stale} stale, e2e latency p50 {s.e2e_percentile(50):.0f} ms "
        f"p99 {s.e2e_percentile(99):.0f} ms"
    )


def _nothing_processed(s: RunSummary, source: str, cfg: Config) -> str:
    if s.frames_stale:
        return (
            f"none of the {s.frames_grabbed} frames read from {source} was processed: "
            f"{s.frames_stale} were older than source.max_frame_age_s "
            f"({cfg.source.max_frame_age_s:g} s) when detection could start"
        )
    return f"no frame could be read from {source}"


class _HealthRelay:
    """A live source's state changes (connected, stalled, reconnecting, recovered, gave_up) while the run is
    on: a `source` line in its events.jsonl and one line on stderr each. Called from the grab thread."""

    def __init__(self, name: str) -> None:
        self.prefix = f"{name}: " if name else ""
        self.events: EventLog | None = None
        self.active = False

    def __call__(self, event: SourceEvent) -> None:
        if not self.active:
            return
        if self.events is not None:
            self.events.event(event)
        print(f"perception: {self.prefix}{event.describe()}", file=sys.stderr)


class _DetectorRelay:
    """The shared detector's server health (a Triton server going away and coming back): a `detector` line in
    every stream's events.jsonl and one line on stderr. Called from a detect thread."""

    def __init__(self, opened: list[_Opened]) -> None:
        self.opened = opened
        self.active = False

    def __call__(self, state: str, fields: dict) -> None:
        if not self.active:
            return
        event = DetectorEvent(DetectorState(state), **fields)
        for o in self.opened:
            if o.events is not None:
                o.events.event(event)
        print(f"perception: {event.describe()}", file=sys.stderr)


def _install_signal_handlers(pipeline: Pipeline) -> list[int]:
    """SIGINT and SIGTERM stop the pipeline cleanly instead of killing it mid-write."""
    received: list[int] = []

    def handle(signum: int, _frame) -> None:
        received.append(signum)
        pipeline.stop()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return received


def one_line(error: BaseException) -> str:
    """Our own errors as they are; anything else with its type, so a user can tell it is not ours."""
    return first_line(error, with_type=not isinstance(error, PerceptionError))
