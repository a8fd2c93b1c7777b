"""`perception run SOURCE [SOURCE ...]`: the streams through one shared detector into their outputs.

One stream writes into the output folder itself; several write into `OUT/<name>/` each (names from
runtime/streams.py). Everything a user can get wrong is checked before the model loads (flags, config,
display, the output folder: created, writable, not in use by another run). Every failure a user can fix
ends as one line on stderr (`error: ...`) and a non-zero exit; whatever was produced before it stays on
disk, flushed and closed; once a stream's events.jsonl is open, every exit path ends it with an `end` line
(after an `error` line when that stream, or the shared detector, failed).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from perception.cli import interrupts
from perception.cli.detector import detector_tag, report_detector
from perception.cli.flags import add_flags, flag_overrides
from perception.cli.run_outputs import (
    DetectorRelay,
    HealthRelay,
    OpenedStream,
    finish_stream,
    one_line,
    open_outputs,
)
from perception.core.config import Config, load_config
from perception.core.errors import PerceptionError
from perception.core.events import EndEvent, RunStatus
from perception.detect import Detector, create_detector, inference_requests
from perception.detect.extra import ExtraDetector, create_extra_detectors, run_class_names
from perception.output.folder import RunFolder, check_display
from perception.output.foxglove_live import FoxgloveLive
from perception.output.monitor import Monitor
from perception.output.mqtt import MqttPublisher
from perception.output.recording import McapRecorder
from perception.output.sinks import Annotator
from perception.runtime.pipeline import Pipeline, RunSummary, StageError, Stream
from perception.runtime.processor import build_processor
from perception.runtime.streams import StreamSpec, stream_name, stream_specs
from perception.sources.files import open_source
from perception.sources.telemetry import load_telemetry

EXIT_SIGINT, EXIT_SIGTERM = interrupts.EXIT_SIGINT, interrupts.EXIT_SIGTERM
STOP = (signal.SIGINT, signal.SIGTERM)  # the signals that end a run cleanly
OUTPUT_FILES = (("annotated.mp4", "video"), ("events.jsonl", "events"), ("tracks.txt", "tracks"))
RECORDING = "run.mcap"  # one per run, in the run's folder (output.mcap)


def add_run_command(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="detect, track and time-to-collision on videos, folders, cameras or streams",
        allow_abbrev=False,
    )
    run.add_argument(
        "source",
        nargs="*",
        help="one or more sources (each a stream; they share one detector): video file, image folder, "
        "ROS bag or MCAP (.bag, .mcap, .db3, a ROS 2 bag folder; --topic), camera index (0) or "
        "rtsp:// / http(s):// URL",
    )
    run.add_argument(
        "--streams",
        type=Path,
        metavar="FILE",
        help="a YAML list of streams instead of sources (see perception/runtime/streams.py)",
    )
    run.add_argument(
        "--model",
        help="detector model: .onnx, OpenVINO IR, .pt, .engine (default: config detector.default_model)",
    )
    run.add_argument(
        "--out",
        type=Path,
        help="output folder for annotated.mp4, events.jsonl and tracks.txt, one folder per stream inside "
        "when there are several (default: runs/NAME, numbered when it exists); one run at a time per folder",
    )
    run.add_argument("--config", help="YAML overriding configs/default.yaml")
    add_flags(run, "--backend", "--mode", "--imgsz", "--conf", "--classes", "--show", "--serve")
    add_flags(run, "--mqtt", "--foxglove", "--topic", "--telemetry", "--telemetry-offset")
    run.add_argument(
        "--fps", type=float, help="frame rate of an image folder (default: seqinfo.ini, else config)"
    )


def run(args: argparse.Namespace) -> int:
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise PerceptionError(f"--fps must be a positive number of frames per second, got {args.fps:g}")
    cfg = load_config(args.config, flag_overrides(args))
    specs = stream_specs(args.source, args.streams, args.fps)
    if cfg.output.show:
        check_display()
    files = [name for name, on in OUTPUT_FILES if getattr(cfg.output, on)]
    if len(specs) > 1:
        files = [f"{spec.name}/{name}" for spec in specs for name in files]
    if cfg.output.mcap:
        files.append(RECORDING)
    name = stream_name(str(args.streams)) if args.streams is not None else specs[0].name
    folder = RunFolder.claim(args.out, name, tuple(files))
    failed = True
    try:
        code = _run_into(folder, specs, args, cfg)
        failed = False
        return code
    finally:
        folder.release(failed=failed)


def _run_into(folder: RunFolder, specs: list[StreamSpec], args: argparse.Namespace, cfg: Config) -> int:
    out = folder.path
    model = args.model or cfg.detector.default_model
    with contextlib.ExitStack() as resources:
        opened = _open_sources(resources, cfg, specs, out)
        _check_telemetry(cfg, opened)
        monitor = _open_monitor(resources, cfg, opened)
        _open_mqtt(resources, cfg, opened)
        _open_foxglove(resources, cfg, opened)
        throughput = not any(o.source.is_live for o in opened)
        requests = inference_requests(cfg.detector, throughput)
        # Backend auto checks reduced precision on real frames: the first stream's, when a file or folder.
        sample = next((o.spec.source for o in opened if not o.source.is_live), None)
        detector = create_detector(model, cfg, requests, sample)
        resources.callback(detector.close)
        extras = create_extra_detectors(cfg, detector, requests)
        for extra in extras:
            resources.callback(extra.close)
        class_names = run_class_names(detector, extras)
        relay = DetectorRelay(opened, monitor)
        if hasattr(detector, "on_health"):  # a remote detector: its server's health, what to do while down
            detector.on_health = relay
            detector.outage_policy = "wait" if throughput else "drop"  # a replay loses no frame
        interrupts.check()
        _describe(opened, detector, extras, model, out)
        # A Ctrl-C or SIGTERM while the outputs open is held back until the logs are known, so they still end.
        held: list[int] = []
        hold = lambda signum, _frame: held.append(signum)  # noqa: E731
        default_handlers = {sig: signal.signal(sig, hold) for sig in STOP}
        try:
            for o in opened:
                open_outputs(resources, o, detector, class_names, model)
            _open_recording(resources, cfg, opened, out)
        except BaseException:
            for sig, handler in default_handlers.items():
                signal.signal(sig, handler)
            raise
        folder.created = False  # outputs exist now: the folder stays whatever happens
        streams, progress = _streams(opened, class_names)
        pipeline = Pipeline(detector, cfg, streams, extras)
        for i, o in enumerate(opened if monitor is not None else []):
            monitor.count_with(o.spec.name, functools.partial(pipeline.counts, i))
        status, failure, stop_signal = RunStatus.ERROR, None, []
        try:
            for sig, handler in default_handlers.items():
                signal.signal(sig, handler)
            if held:
                interrupts.stop(held[0])
            interrupts.check()
            stop_signal = _install_signal_handlers(pipeline)
            for o in opened:
                o.health.events, o.health.active = o.events, True
            relay.active = True
            try:
                pipeline.run()
            finally:
                relay.active = False
                for o in opened:
                    o.health.active = False
                if progress is not None:
                    progress.close()
            status = RunStatus.INTERRUPTED if pipeline.summary.interrupted or stop_signal else RunStatus.OK
        except StageError as exc:
            failure = exc
            raise
        except KeyboardInterrupt:
            status = RunStatus.INTERRUPTED
            raise
        except BaseException as exc:
            failure = StageError("run", exc)
            raise
        finally:
            late = None
            for o, stream in zip(opened, streams, strict=True):
                ended = _ended(o, monitor)
                problem = finish_stream(o, stream.summary, failure, status, folder.free_reserve, ended)
                late = late or problem
        if late is not None:
            raise late
    _report(opened, streams, pipeline.summary, out)
    if stop_signal:
        return interrupts.exit_code(stop_signal[0])
    return 0


def _check_telemetry(cfg: Config, opened: list[OpenedStream]) -> None:
    """Telemetry belongs to one camera, and must cover its video (checked now, before the model loads, as far
    as the video's length is known; frame by frame during the run)."""
    if cfg.source.telemetry is None:
        return
    if len(opened) > 1:
        raise PerceptionError("--telemetry: one stream's telemetry, but this run has several streams")
    telemetry = load_telemetry(cfg.source.telemetry, cfg.source.telemetry_offset_s)
    first, last = telemetry.span_s
    source = opened[0].source
    end = (source.frame_count - 1) / source.fps if source.frame_count else 0.0
    if first > 0.5 or last < end - 0.5:  # as Telemetry.at holds its first and last records
        raise PerceptionError(
            f"telemetry {cfg.source.telemetry} covers {first:.1f}-{last:.1f} s of the video, which runs "
            f"0.0-{end:.1f} s (align it with --telemetry-offset)"
        )


def _open_sources(
    resources: contextlib.ExitStack, cfg: Config, specs: list[StreamSpec], out: Path
) -> list[OpenedStream]:
    """Every source opened (a wrong one fails the run before anything is written), each closed at exit."""
    opened = []
    for spec in specs:
        scfg = _stream_config(cfg, spec)
        health = HealthRelay(spec.name if len(specs) > 1 else "")
        source = open_source(spec.source, scfg.source, fps=spec.fps, on_health=health)
        resources.callback(source.close)
        opened.append(OpenedStream(spec, scfg, source, out if len(specs) == 1 else out / spec.name, health))
    return opened


def _open_monitor(resources: contextlib.ExitStack, cfg: Config, opened: list[OpenedStream]) -> Monitor | None:
    """The HTTP monitor when `monitor.serve` (--serve) is set, every stream registered (listed from the
    moment the address is printed) with its sink and its health events; before the detector loads, so a
    port already in use fails the run at once."""
    if cfg.monitor.address is None:
        return None
    monitor = resources.enter_context(Monitor(*cfg.monitor.address, cfg.monitor))
    for o in opened:
        o.monitor = resources.enter_context(contextlib.closing(monitor.stream(o.spec.name, o.source.name)))
        o.health.monitor = functools.partial(monitor.on_source, o.spec.name)
    print(f"perception: monitoring on {monitor.url} (/metrics, /health)", file=sys.stderr)
    return monitor


def _open_mqtt(resources: contextlib.ExitStack, cfg: Config, opened: list[OpenedStream]) -> None:
    """One MQTT connection for the run when `output.mqtt.url` (--mqtt) is set, a sink per stream; before
    the detector loads, so a missing paho-mqtt fails at once. An unreachable broker is not an error."""
    if cfg.output.mqtt.url is None:
        return
    publisher = resources.enter_context(MqttPublisher(cfg.output.mqtt))
    for o in opened:
        o.mqtt = publisher.stream(o.spec.name, o.source.name, o.source.is_live, o.cfg.labels)
        o.health.mqtt = o.mqtt.on_source


def _open_foxglove(resources: contextlib.ExitStack, cfg: Config, opened: list[OpenedStream]) -> None:
    """The live Foxglove server when `output.foxglove` (--foxglove) is set, a sink per stream; before the
    detector loads, so a port in use fails the run at once."""
    if cfg.output.foxglove is None:
        return
    server = resources.enter_context(contextlib.closing(FoxgloveLive(cfg.output)))
    for o in opened:
        o.live = server.stream(o.spec.name, o.cfg.labels)


def _open_recording(
    resources: contextlib.ExitStack, cfg: Config, opened: list[OpenedStream], out: Path
) -> None:
    """run.mcap when `output.mcap` is on; its sinks and the live server's before each event log (so the log's
    `sink` latency includes them), their images taken before the annotator draws on the frame (`_streams`)."""
    recorder = None
    if cfg.output.mcap:
        recorder = resources.enter_context(contextlib.closing(McapRecorder(out / RECORDING, cfg.output)))
    for o in opened:
        if recorder is not None:
            o.mcap = recorder.stream(o.spec.name, o.cfg.labels)
        for sink in (o.mcap, o.live):
            if sink is not None:
                o.sinks.insert(len(o.sinks) - (o.events is not None), sink)


def _ended(o: OpenedStream, monitor: Monitor | None) -> Callable[[EndEvent], None] | None:
    """Who hears a stream's `end` record besides its log: the monitor, the MQTT state topic."""
    hearers = [] if monitor is None else [functools.partial(monitor.stream_ended, o.spec.name)]
    if o.mqtt is not None:
        hearers.append(o.mqtt.ended)
    return (lambda end: [hear(end) for hear in hearers]) if hearers else None


def _stream_config(cfg: Config, spec: StreamSpec) -> Config:
    """The config with a stream's own camera profile and mode, validated like the rest."""
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
    opened: list[OpenedStream], detector: Detector, extras: list[ExtraDetector], model: str, out: Path
) -> None:
    for o in opened:
        kind = "live" if o.source.is_live else "replay"
        line = f"{o.spec.name}: {o.source.name} ({kind}, {o.source.fps:g} fps) -> {o.out}"
        print(f"perception: {line}", file=sys.stderr)
    print(
        f"perception: {Path(model).name} [{detector_tag(detector)}, {detector.requests} request(s) in "
        f"flight, {len(opened)} stream(s)] -> {out}",
        file=sys.stderr,
    )
    report_detector(detector)
    for extra in extras:
        every = f", every {extra.every_n_frames} frames" if extra.every_n_frames > 1 else ""
        print(f"perception: + {extra.name} [{detector_tag(extra.detector)}{every}]", file=sys.stderr)
        report_detector(extra.detector, extra.name)


def _streams(opened: list[OpenedStream], class_names: list[str]):
    """The pipeline's streams, and a progress bar over every file's frames (none for live feeds)."""
    counts = [o.source.frame_count for o in opened]
    progress = None
    if all(c is not None for c in counts):
        from tqdm import tqdm

        progress = tqdm(total=sum(counts), unit="frame", disable=None, dynamic_ncols=True)
    streams = []
    for o in opened:
        cfg = o.cfg
        drawn = cfg.output.video or cfg.output.show or o.monitor is not None  # the live view is annotated too
        annotate = Annotator(cfg.labels, class_names) if drawn else None
        for raw in (o.mcap, o.live):  # they record the frame before the annotator draws on it
            if raw is not None:
                annotate = raw.before_drawing(annotate)
        on_frame = (lambda _r, bar=progress: bar.update()) if progress is not None else None
        streams.append(Stream(o.source, build_processor(cfg), o.sinks, annotate, on_frame, o.spec.name))
    return streams, progress


def _report(opened: list[OpenedStream], streams: list[Stream], total: RunSummary, out: Path) -> None:
    """A line per stream (and in total); an error if a stream failed (its own line names the cause)."""
    failed = []
    for o, stream in zip(opened, streams, strict=True):
        s = stream.summary
        if s.error is not None:
            failed.append((o.spec.name, s.error))
        prefix = f"{o.spec.name}: " if len(opened) > 1 else ""
        print(f"perception: {prefix}{_line(s)} -> {o.out}", file=sys.stderr)
    if len(opened) > 1:
        print(f"perception: all {len(opened)} streams: {_line(total)} -> {out}", file=sys.stderr)
    if len(opened) == 1 and failed:
        raise failed[0][1]
    if failed:
        causes = "; ".join(f"{name} ({one_line(error.error)})" for name, error in failed)
        raise PerceptionError(f"{len(failed)} of {len(opened)} streams failed: {causes}")


def _line(s: RunSummary) -> str:
    return (
        f"{s.frames_processed} frames in {s.elapsed_s:.1f} s ({s.fps:.1f} fps), {s.frames_dropped} dropped, "
        f"{s.frames_stale} stale, e2e latency p50 {s.e2e_percentile(50):.0f} ms "
        f"p99 {s.e2e_percentile(99):.0f} ms"
    )


def _install_signal_handlers(pipeline: Pipeline) -> list[int]:
    """SIGINT and SIGTERM stop the pipeline cleanly instead of killing it mid-write."""
    received: list[int] = []

    def handle(signum: int, _frame) -> None:
        received.append(signum)
        pipeline.stop()

    for sig in STOP:
        signal.signal(sig, handle)
    return received
