"""Command line: `perception run SOURCE --model PATH --out DIR`.

Every failure a user can fix ends as one line on stderr (`error: ...`) and a non-zero exit; whatever
was produced before it stays on disk, flushed and closed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from perception import __version__, triton_cli
from perception.config import Config, load_config
from perception.detect import create_detector, inference_requests
from perception.detector_cli import add_backend_argument, add_commands
from perception.detector_cli import run as run_detector_command
from perception.errors import PerceptionError
from perception.pipeline import Pipeline, StageError
from perception.sinks import Annotator, DisplaySink, EventLog, Sink, VideoSink
from perception.sources import open_source

EXIT_ERROR = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perception", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"perception {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run", help="detect, track and time-to-collision on a video, folder, camera or stream"
    )
    run.add_argument("source", help="video file, image folder, camera index (0) or rtsp:// / http(s):// URL")
    run.add_argument(
        "--model",
        help="detector model: .onnx, OpenVINO IR, .pt, .engine (default: config detector.default_model)",
    )
    add_backend_argument(run)
    run.add_argument(
        "--out", required=True, type=Path, help="output folder for annotated.mp4 and events.jsonl"
    )
    run.add_argument("--config", help="YAML overriding configs/default.yaml")
    run.add_argument(
        "--mode", choices=["fast", "realtime"], help="file replay: every frame, or paced like live"
    )
    run.add_argument(
        "--fps", type=float, help="frame rate of an image folder (default: seqinfo.ini, else config)"
    )
    run.add_argument("--show", action="store_true", help="show the annotated frames in a window (q to stop)")

    mot = commands.add_parser(
        "eval-mot", help="track a MOTChallenge sequence and score it against its ground truth"
    )
    mot.add_argument(
        "seq_dir", type=Path, help="sequence folder with seqinfo.ini, gt/gt.txt and det/ or img1/"
    )
    source = mot.add_mutually_exclusive_group()
    source.add_argument("--det", type=Path, help="public detections (default: SEQ_DIR/det/det.txt)")
    source.add_argument("--model", help="run this detector over SEQ_DIR/img1 instead (pedestrians)")
    mot.add_argument("--config", help="YAML overriding configs/default.yaml")
    mot.add_argument("--out", type=Path, help="result file (default: out/eval-mot/SEQ_NAME.txt)")
    mot.add_argument("--json", action="store_true", help="print the metrics as one JSON object")

    ttc = commands.add_parser("eval-ttc", help="score TTC, distance and warnings against a ground-truth CSV")
    ttc.add_argument("video", help="video to run (e.g. a scenario from python -m perception.synthetic)")
    ttc.add_argument("--truth", required=True, type=Path, help="per-frame ground truth CSV")
    ttc.add_argument("--model", required=True, help="detector model")
    ttc.add_argument("--config", help="YAML overriding configs/default.yaml")
    ttc.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    add_commands(commands)
    triton_cli.add_commands(commands)
    from perception.bench import add_parser as add_bench_parser

    add_bench_parser(commands)
    return parser


def _run(args: argparse.Namespace) -> int:
    overrides: dict = {}
    if args.mode:
        overrides["source"] = {"mode": args.mode}
    if args.show:
        overrides["output"] = {"show": True}
    if args.backend:
        overrides["detector"] = {"backend": args.backend}
    cfg = load_config(args.config, overrides)
    args.model = args.model or cfg.detector.default_model

    health = _HealthRelay()
    source = open_source(args.source, cfg.source, fps=args.fps, on_health=health)
    try:
        detector = create_detector(args.model, cfg, inference_requests(cfg.detector, not source.is_live))
    except BaseException:
        source.close()
        raise

    args.out.mkdir(parents=True, exist_ok=True)
    labels = cfg.labels
    print(
        f"perception: {source.name} ({'live' if source.is_live else 'replay'}, {source.fps:g} fps) -> "
        f"{Path(args.model).name} [{detector.backend}, {detector.layout}, "
        f"{detector.input_hw[0]}x{detector.input_hw[1]}, {detector.requests} request(s) in flight] "
        f"-> {args.out}",
        file=sys.stderr,
    )

    with contextlib.ExitStack() as outputs:
        sinks, events = _open_sinks(outputs, cfg, args.out, source.fps, detector.class_names)
        if events is not None:
            events.event(
                "start",
                source=source.name,
                live=source.is_live,
                fps=source.fps,
                model=str(args.model),
                backend=detector.backend,
                layout=detector.layout,
                input_hw=list(detector.input_hw),
                requests=detector.requests,
                labels=labels,
            )

        annotate = Annotator(labels, detector.class_names) if (cfg.output.video or cfg.output.show) else None
        progress = _progress_bar(source.frame_count)
        pipeline = Pipeline(
            source,
            detector,
            cfg,
            sinks,
            annotate=annotate,
            on_frame=(lambda _r: progress.update()) if progress else None,
        )
        stop_signal = _install_signal_handlers(pipeline)
        health.events, health.active = events, True
        try:
            summary = pipeline.run()
        except StageError as exc:
            if events is not None:
                events.event("error", stage=exc.stage, message=_one_line(exc.error))
            raise
        finally:
            health.active = False
            if progress:
                progress.close()
        if events is not None:
            events.event(
                "end",
                frames_grabbed=summary.frames_grabbed,
                frames_processed=summary.frames_processed,
                frames_dropped=summary.frames_dropped,
                frames_stale=summary.frames_stale,
                elapsed_s=round(summary.elapsed_s, 3),
                fps=round(summary.fps, 2),
                interrupted=summary.interrupted or bool(stop_signal),
            )

    if summary.frames_processed == 0 and not (summary.interrupted or stop_signal):
        if summary.frames_stale:
            raise PerceptionError(
                f"none of the {summary.frames_grabbed} frames read from {source.name} was processed: "
                f"{summary.frames_stale} were older than source.max_frame_age_s "
                f"({cfg.source.max_frame_age_s:g} s) when detection could start"
            )
        raise PerceptionError(f"no frame could be read from {source.name}")
    print(
        f"perception: {summary.frames_processed} frames in {summary.elapsed_s:.1f} s "
        f"({summary.fps:.1f} fps), {summary.frames_dropped} dropped, {summary.frames_stale} stale, "
        f"e2e latency p50 {summary.e2e_percentile(50):.0f} ms "
        f"p99 {summary.e2e_percentile(99):.0f} ms -> {args.out}",
        file=sys.stderr,
    )
    if stop_signal:
        return EXIT_SIGTERM if stop_signal[0] == signal.SIGTERM else EXIT_SIGINT
    return 0


def _eval_ttc(args: argparse.Namespace) -> int:
    import json

    from perception.ttc_eval import evaluate_ttc

    if not args.truth.is_file():
        raise PerceptionError(f"truth file not found: {args.truth}")
    scores = evaluate_ttc(Path(args.video), args.truth, args.model, load_config(args.config))
    if args.json:
        print(json.dumps(scores))
    else:
        for key, value in scores.items():
            print(f"{key}: {value}")
    return 0


def _eval_mot(args: argparse.Namespace) -> int:
    import json

    from perception import mot

    cfg = load_config(args.config)
    info = mot.read_seqinfo(args.seq_dir, cfg.source.image_folder_fps)
    gt = mot.read_ground_truth(args.seq_dir / "gt" / "gt.txt")
    if args.model:
        detections = mot.detect_sequence(
            info.image_dir, create_detector(args.model, cfg), cfg.labels.index("pedestrian")
        )
    else:
        detections = mot.read_detections(args.det or args.seq_dir / "det" / "det.txt")
    frames = np.arange(1, max(int(gt.frames.max(initial=0)), max(detections, default=0)) + 1)
    results = mot.track_sequence(detections, frames, info.fps, cfg.tracker)
    out = args.out or Path("out") / "eval-mot" / f"{info.name}.txt"
    mot.write_results(out, results)
    metrics = mot.evaluate(gt, results)
    if args.json:
        print(json.dumps({"sequence": info.name, **metrics}))
    else:
        print(f"{info.name}: {len(frames)} frames at {info.fps:g} fps, results in {out}")
        print(
            "  "
            + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        )
    return 0


def _open_sinks(
    outputs: contextlib.ExitStack, cfg: Config, out: Path, fps: float, class_names: list[str]
) -> tuple[list[Sink], EventLog | None]:
    """Every sink is registered with `outputs`, so it is closed however the run ends."""
    sinks: list[Sink] = []
    events = None
    if cfg.output.video:
        video = VideoSink(out / "annotated.mp4", fps, cfg.output.video_fourcc)
        sinks.append(outputs.enter_context(contextlib.closing(video)))
    if cfg.output.show:
        sinks.append(outputs.enter_context(contextlib.closing(DisplaySink())))
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

    def __call__(self, state: str, fields: dict[str, Any]) -> None:
        if not self.active:
            return
        if self.events is not None:
            self.events.event("source", state=state, **fields)
        details = ", ".join(f"{k} {v}" for k, v in fields.items() if k not in ("source", "at_ns"))
        print(f"perception: source {state}" + (f" ({details})" if details else ""), file=sys.stderr)


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


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, PerceptionError) and text:
        return text.splitlines()[0]
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "eval-mot":
            return _eval_mot(args)
        if args.command == "eval-ttc":
            return _eval_ttc(args)
        if args.command == "bench":
            from perception.bench import run as run_bench

            return run_bench(args)
        if args.command in triton_cli.COMMANDS:
            return triton_cli.run(args)
        return run_detector_command(args)
    except PerceptionError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
    except StageError as exc:
        if os.environ.get("PERCEPTION_DEBUG"):
            traceback.print_exception(exc.error)
        prefix = "" if isinstance(exc.error, PerceptionError) else f"{exc.stage} stage failed: "
        print(f"error: {prefix}{_one_line(exc.error)}", file=sys.stderr)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
