"""`perception run SOURCE`: one source through the pipeline into the output folder.

Every failure a user can fix ends as one line on stderr (`error: ...`) and a non-zero exit; whatever was
produced before it stays on disk, flushed and closed, and once events.jsonl is open every exit path ends it
with an `end` line (after an `error` line when the run failed).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from perception import interrupts
from perception.cli_flags import add_flags, flag_overrides
from perception.config import Config, load_config
from perception.detect import Detector, create_detector, inference_requests
from perception.errors import PerceptionError, first_line
from perception.events import EndEvent, ErrorEvent, RunStatus, SourceEvent, StartEvent
from perception.outputs import RunFolder, check_display
from perception.pipeline import Pipeline, RunSummary, StageError
from perception.processor import build_processor
from perception.sinks import Annotator, DisplaySink, EventLog, Sink, TracksFile, VideoSink
from perception.sources import Source, open_source

EXIT_SIGINT = interrupts.EXIT_SIGINT
EXIT_SIGTERM = 143


def add_run_command(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="detect, track and time-to-collision on a video, folder, camera or stream",
        allow_abbrev=False,
    )
    run.add_argument("source", help="video file, image folder, camera index (0) or rtsp:// / http(s):// URL")
    run.add_argument(
        "--model",
        help="detector model: .onnx, OpenVINO IR, .pt, .engine (default: config detector.default_model)",
    )
    run.add_argument(
        "--out",
        type=Path,
        help="output folder for annotated.mp4, events.jsonl and tracks.txt (default: runs/SOURCE_NAME, "
        "numbered when it exists); one run at a time per folder",
    )
    run.add_argument("--config", help="YAML overriding configs/default.yaml")
    add_flags(run, "--backend", "--mode", "--imgsz", "--conf", "--classes", "--show")
    run.add_argument(
        "--fps", type=float, help="frame rate of an image folder (default: seqinfo.ini, else config)"
    )


def run(args: argparse.Namespace) -> int:
    """Everything a user can get wrong is checked before the model loads: flags, config, display, the
    output folder (created, writable, not in use by another run)."""
    if args.fps is not None and not (math.isfinite(args.fps) and args.fps > 0):
        raise PerceptionError(f"--fps must be a positive number of frames per second, got {args.fps:g}")
    cfg = load_config(args.config, flag_overrides(args))
    if cfg.output.show:
        check_display()
    names = [name for name, on in _OUTPUT_FILES if getattr(cfg.output, on)]
    folder = RunFolder.claim(args.out, args.source, tuple(names))
    failed = True
    try:
        code = _run_into(folder, args, cfg)
        failed = False
        return code
    finally:
        folder.release(failed=failed)


_OUTPUT_FILES = (("annotated.mp4", "video"), ("events.jsonl", "events"), ("tracks.txt", "tracks"))


def _run_into(folder: RunFolder, args: argparse.Namespace, cfg: Config) -> int:
    out = folder.path
    model = args.model or cfg.detector.default_model
    health = _HealthRelay()
    source = open_source(args.source, cfg.source, fps=args.fps, on_health=health)
    with contextlib.ExitStack() as outputs:
        outputs.callback(source.close)
        detector = create_detector(model, cfg, inference_requests(cfg.detector, not source.is_live))
        outputs.callback(detector.close)
        interrupts.check()
        print(
            f"perception: {source.name} ({'live' if source.is_live else 'replay'}, {source.fps:g} fps) -> "
            f"{Path(model).name} [{detector.backend}, {detector.layout}, "
            f"{detector.input_hw[0]}x{detector.input_hw[1]}, {detector.requests} request(s) in flight] "
            f"-> {out}",
            file=sys.stderr,
        )
        # A Ctrl-C while the outputs open is held back until the log is known, so the log still ends.
        held: list[int] = []
        default_handler = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
        try:
            sinks, events = _open_sinks(outputs, cfg, out, source.fps, detector.class_names)
        except BaseException:
            signal.signal(signal.SIGINT, default_handler)
            raise
        folder.created = False  # outputs exist now: the folder stays whatever happens
        summary, status, failure = RunSummary(), RunStatus.ERROR, None
        stop_signal: list[int] = []
        try:
            signal.signal(signal.SIGINT, default_handler)
            if held:
                raise KeyboardInterrupt
            if events is not None:
                events.event(_start_event(source, str(model), detector, cfg))
            annotate = (
                Annotator(cfg.labels, detector.class_names) if (cfg.output.video or cfg.output.show) else None
            )
            progress = _progress_bar(source.frame_count)
            pipeline = Pipeline(
                source,
                detector,
                build_processor(cfg),
                cfg,
                sinks,
                annotate=annotate,
                on_frame=(lambda _r: progress.update()) if progress else None,
            )
            summary = pipeline.summary
            interrupts.check()
            stop_signal = _install_signal_handlers(pipeline)
            health.events, health.active = events, True
            try:
                pipeline.run()
            finally:
                health.active = False
                if progress:
                    progress.close()
            status = RunStatus.INTERRUPTED if summary.interrupted or stop_signal else RunStatus.OK
            if summary.frames_processed == 0 and status is RunStatus.OK:
                status = RunStatus.ERROR
                raise PerceptionError(_nothing_processed(summary, source.name, cfg))
        except StageError as exc:
            failure = (exc.stage, exc.error)
            raise
        except KeyboardInterrupt:
            status = RunStatus.INTERRUPTED
            raise
        except BaseException as exc:
            failure = ("run", exc)
            raise
        finally:
            late = _finish(sinks, events, failure, status, summary, folder.free_reserve)
        if late is not None:
            raise late

    print(
        f"perception: {summary.frames_processed} frames in {summary.elapsed_s:.1f} s "
        f"({summary.fps:.1f} fps), {summary.frames_dropped} dropped, {summary.frames_stale} stale, "
        f"e2e latency p50 {summary.e2e_percentile(50):.0f} ms "
        f"p99 {summary.e2e_percentile(99):.0f} ms -> {out}",
        file=sys.stderr,
    )
    if stop_signal:
        return EXIT_SIGTERM if stop_signal[0] == signal.SIGTERM else EXIT_SIGINT
    return 0


def _start_event(source: Source, model: str, detector: Detector, cfg: Config) -> StartEvent:
    return StartEvent(
        source=source.name,
        live=source.is_live,
        fps=source.fps,
        model=model,
        backend=detector.backend,
        layout=detector.layout,
        input_hw=list(detector.input_hw),
        requests=detector.requests,
        labels=cfg.labels,
    )


def _nothing_processed(summary: RunSummary, source_name: str, cfg: Config) -> str:
    if summary.frames_stale:
        return (
            f"none of the {summary.frames_grabbed} frames read from {source_name} was processed: "
            f"{summary.frames_stale} were older than source.max_frame_age_s "
            f"({cfg.source.max_frame_age_s:g} s) when detection could start"
        )
    return f"no frame could be read from {source_name}"


def _finish(
    sinks: list[Sink],
    events: EventLog | None,
    failure: tuple[str, BaseException] | None,
    status: RunStatus,
    summary: RunSummary,
    make_room: Callable[[], None],
) -> StageError | None:
    """End every run the same way: the other outputs closed first (a failed video is cut back to its last
    whole fragment), the folder's reserved space given back (`make_room`: a full disk still takes the last
    lines), then the `error` line if the run failed, the `end` line, and the log closed. Returns what
    failed here in a run that had not failed (closing the video, writing the log), for the caller to raise."""
    late: StageError | None = None
    for sink in sinks:
        if sink is events:
            continue
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 - e.g. the video's last fragment on a full disk
            if failure is None and late is None:
                late, failure, status = StageError("sink", exc), ("sink", exc), RunStatus.ERROR
    make_room()
    if events is not None:
        try:
            if failure is not None:
                events.event(ErrorEvent(failure[0], one_line(failure[1])))
            events.event(_end_event(summary, status))
            events.close()
        except PerceptionError as exc:
            if failure is None:  # the run itself went well: losing its log is the error
                late = StageError("sink", exc)
    return late


def _end_event(summary: RunSummary, status: RunStatus) -> EndEvent:
    return EndEvent(
        status=status,
        frames_grabbed=summary.frames_grabbed,
        frames_processed=summary.frames_processed,
        frames_dropped=summary.frames_dropped,
        frames_stale=summary.frames_stale,
        elapsed_s=round(summary.elapsed_s, 3),
        fps=round(summary.fps, 2),
        interrupted=status is RunStatus.INTERRUPTED,
    )


def _open_sinks(
    outputs: contextlib.ExitStack, cfg: Config, out: Path, fps: float, class_names: list[str]
) -> tuple[list[Sink], EventLog | None]:
    """Every sink is registered with `outputs`, so it is closed however the run ends (closing is
    idempotent: a run that ends normally closes them itself, in its own order)."""
    sinks: list[Sink] = []
    events = None
    if cfg.output.video:
        video = VideoSink(out / "annotated.mp4", fps, cfg.output)
        sinks.append(outputs.enter_context(contextlib.closing(video)))
    if cfg.output.show:
        sinks.append(outputs.enter_context(contextlib.closing(DisplaySink())))
    if cfg.output.tracks:
        sinks.append(outputs.enter_context(contextlib.closing(TracksFile(out / "tracks.txt"))))
    if cfg.output.events:
        events = outputs.enter_context(
            contextlib.closing(EventLog(out / "events.jsonl", cfg.labels, class_names))
        )
        sinks.append(events)  # last, so its frame lines carry the other sinks' latency too
    return sinks, events


class _HealthRelay:
    """A live source's state changes (connected, stalled, reconnecting, recovered, gave_up) while the
    run is on: a `source` line in events.jsonl and one line on stderr each. Called from the grab thread."""

    def __init__(self) -> None:
        self.events: EventLog | None = None
        self.active = False

    def __call__(self, event: SourceEvent) -> None:
        if not self.active:
            return
        if self.events is not None:
            self.events.event(event)
        print(f"perception: {event.describe()}", file=sys.stderr)


def _progress_bar(total: int | None):
    """A bar for file sources only (live feeds have no end); hidden when stderr is not a terminal."""
    if total is None:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", disable=None, dynamic_ncols=True)


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
