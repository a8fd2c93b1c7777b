"""`perception bench`: latency and throughput of the pipeline against baselines, in one run.

Every mode runs on the same video with the same warm detector, set up as `perception run` sets it up for
the mode (in fast mode two requests in flight by default, see `detector.requests`), and the modes
alternate over `--repeat` rounds, so machine drift (other users of a shared machine) hits them alike:

- `pipeline`: the real threaded Pipeline (grab, detect, track+TTC, sink threads), as `perception run`
  runs it, with an in-memory sink instead of video and event files.
- `sequential`: the same stage code in one plain loop, with a detector set up for one request at a time
  (all threads on it): what the threads buy.
- `detector`: the detector alone on frames decoded beforehand, its requests in parallel as in the
  pipeline: the limit the pipeline can approach.
- `ultralytics`: `YOLO(model).track(source, stream=True)`, the usual way to do the same job.

Warm-up frames (the first `bench.warmup_frames` of each run) are left out of every figure and reported
apart. Outputs: bench.json (every figure), report.md (tables with ratios), and two PNG plots.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from perception.config import Config, load_config
from perception.detect import Detector, create_detector, inference_requests
from perception.errors import PerceptionError
from perception.pipeline import Pipeline
from perception.sources import Source, open_source
from perception.types import FrameResult

PERCENTILES = (50, 90, 99)
MODES = ("pipeline", "sequential", "detector", "ultralytics")
# Stages in pipeline order; `queues` is the time spent waiting in the queues after detection.
STAGES = (
    "grab",
    "wait",
    "detect",
    "preprocess",
    "inference",
    "postprocess",
    "track",
    "ttc",
    "sink",
    "queues",
)
STAGES += ("e2e", "e2e_due")
SCHEMA_VERSION = 1


def latency_stats(values_ms: list[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean in ms (NaN when there is no sample), and the sample count."""
    if not values_ms:
        nan = float("nan")
        return {"p50": nan, "p90": nan, "p99": nan, "max": nan, "mean": nan, "n": 0}
    arr = np.asarray(values_ms, np.float64)
    p50, p90, p99 = np.percentile(arr, PERCENTILES)
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(arr.max()),
        "mean": float(arr.mean()),
        "n": int(arr.size),
    }


@dataclass
class RunResult:
    """One run of one mode: per-frame latencies (ms, by stage) and counts."""

    mode: str
    frames: list[dict[str, float]] = field(default_factory=list)  # per processed frame, in order
    done_ns: list[int] = field(default_factory=list)  # when each frame left the last stage
    frames_grabbed: int = 0
    frames_dropped: int = 0  # replaced in the latest-frame queue by a newer one (realtime)
    frames_stale: int = 0  # too old when detection could start (realtime)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mib: float = 0.0
    source_fps: float = 0.0

    @property
    def frames_processed(self) -> int:
        return len(self.frames)


class _Limited:
    """A source that ends after `limit` frames (None: never early)."""

    def __init__(self, source: Source, limit: int | None) -> None:
        self._source, self._limit, self._count = source, limit, 0
        self.name, self.is_live, self.fps = source.name, source.is_live, source.fps
        self.frame_count = source.frame_count

    def read(self):
        if self._limit is not None and self._count >= self._limit:
            return None
        self._count += 1
        return self._source.read()

    def close(self) -> None:
        self._source.close()


class _Collector:
    """In-memory sink: keeps each frame's latencies, adding `e2e_due` (from the moment the frame was due
    by its timestamp, measured from the first frame: in realtime this includes a late decode) and
    `queues` (time waiting between detect, track and sink)."""

    def __init__(self, result: RunResult, paced: bool) -> None:
        self.result = result
        self.paced = paced
        self._origin_ns: int | None = None  # when source time 0 was due

    def write(self, res: FrameResult) -> None:
        now = time.monotonic_ns()
        frame, lat = res.frame, dict(res.latency_ms)
        if self._origin_ns is None:
            self._origin_ns = frame.capture_ns - int(frame.source_ts_s * 1e9)
        due_ns = self._origin_ns + int(frame.source_ts_s * 1e9)
        if "e2e" not in lat:  # the sequential loop ends here
            lat["e2e"] = (now - frame.capture_ns) / 1e6
        if self.paced:
            lat["e2e_due"] = max((now - due_ns) / 1e6, lat["e2e"])
        inner = sum(lat.get(k, 0.0) for k in ("wait", "detect", "track", "ttc"))
        lat["queues"] = max(lat["e2e"] - inner - lat.get("sink", 0.0), 0.0)
        lat["source_ts_s"] = frame.source_ts_s
        self.result.frames.append(lat)
        self.result.done_ns.append(now)

    def close(self) -> None:
        pass


def _measure(mode: str, body: Callable[[RunResult], None]) -> RunResult:
    result = RunResult(mode)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    body(result)
    result.elapsed_s = time.monotonic() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    result.peak_rss_mib = usage1.ru_maxrss / 1024  # KiB on Linux
    return result


def run_pipeline(spec: str, detector: Detector, cfg: Config, limit: int | None) -> RunResult:
    def body(result: RunResult) -> None:
        source = _Limited(open_source(spec, cfg.source), limit)
        result.source_fps = source.fps
        summary = Pipeline(source, detector, cfg, [_Collector(result, source.is_live)]).run()
        result.frames_grabbed = summary.frames_grabbed
        result.frames_dropped, result.frames_stale = summary.frames_dropped, summary.frames_stale

    return _measure("pipeline", body)


def run_sequential(spec: str, detector: Detector, cfg: Config, limit: int | None) -> RunResult:
    """The pipeline's own stage code, one frame after another in this thread."""

    def body(result: RunResult) -> None:
        source = _Limited(open_source(spec, cfg.source), limit)
        stages = Pipeline(source, detector, cfg, [])  # used for its tracker and threat assessment only
        collector = _Collector(result, source.is_live)
        try:
            while (frame := source.read()) is not None:
                result.frames_grabbed += 1
                lat = {"grab": frame.decode_ms or 0.0, "wait": (time.monotonic_ns() - frame.capture_ns) / 1e6}
                t0 = time.monotonic_ns()
                detections = detector.detect(frame.image)
                t1 = time.monotonic_ns()
                tracks = stages.tracker.update(detections, frame.source_ts_s)
                h, w = frame.image.shape[:2]
                np.clip(tracks.boxes_xyxy, 0, (w, h, w, h), out=tracks.boxes_xyxy)
                t2 = time.monotonic_ns()
                warning, events = stages._assess_threats(tracks, frame)
                t3 = time.monotonic_ns()
                lat.update(detect=(t1 - t0) / 1e6, track=(t2 - t1) / 1e6, ttc=(t3 - t2) / 1e6, sink=0.0)
                lat.update(getattr(detector, "timings_ms", ()))
                collector.write(FrameResult(frame, detections, tracks, lat, warning, events))
        finally:
            source.close()

    return _measure("sequential", body)


def decode_frames(spec: str, cfg: Config, limit: int | None) -> list[np.ndarray]:
    """Every frame decoded up front, for the detector-alone baseline."""
    source = _Limited(open_source(spec, cfg.source.model_copy(update={"mode": "fast"})), limit)
    images = []
    try:
        while (frame := source.read()) is not None:
            images.append(frame.image)
    finally:
        source.close()
    return images


def run_detector(images: list[np.ndarray], detector: Detector) -> RunResult:
    """The detector's requests each on a thread taking the next image, as the pipeline runs them, with
    nothing else to do: the most frames per second this detector makes here."""
    lanes = [detector] + [detector.fork() for _ in range(detector.requests - 1)]

    def body(result: RunResult) -> None:
        lock = threading.Lock()
        order = iter(range(len(images)))

        def work(lane: Detector) -> None:
            while (index := _next(order, lock)) is not None:
                t0 = time.monotonic_ns()
                lane.detect(images[index])
                detect_ms = (time.monotonic_ns() - t0) / 1e6
                steps = getattr(lane, "timings_ms", {})
                with lock:
                    result.frames.append({"detect": detect_ms, "e2e": detect_ms, **steps})
                    result.done_ns.append(time.monotonic_ns())

        with ThreadPoolExecutor(len(lanes)) as pool:
            list(pool.map(work, lanes))  # re-raises a lane's error
        result.frames_grabbed = len(images)

    return _measure("detector", body)


def _next(order: Iterator[int], lock: threading.Lock) -> int | None:
    with lock:
        return next(order, None)


def run_ultralytics(spec: str, model: str, cfg: Config, limit: int | None) -> RunResult:
    """`YOLO(model).track(source, stream=True)` at our thresholds; its per-frame time is the time between
    results (it decodes, detects and tracks in one loop), and its own pre/infer/post split is kept."""
    from perception.detect.ultralytics import load_ultralytics

    yolo_cls = load_ultralytics().YOLO

    def body(result: RunResult) -> None:
        yolo = yolo_cls(model, task="detect")
        stream = yolo.track(
            source=spec, stream=True, verbose=False, conf=cfg.detector.conf_threshold, persist=False
        )
        last = time.monotonic_ns()
        for res in stream:
            now = time.monotonic_ns()
            speed = res.speed or {}
            result.frames.append(
                {
                    "e2e": (now - last) / 1e6,
                    "preprocess": float(speed.get("preprocess") or 0.0),
                    "inference": float(speed.get("inference") or 0.0),
                    "postprocess": float(speed.get("postprocess") or 0.0),
                }
            )
            result.done_ns.append(now)
            result.frames_grabbed += 1
            last = now
            if limit is not None and result.frames_grabbed >= limit:
                break
        stream.close()

    return _measure("ultralytics", body)


# -- figures -------------------------------------------------------------------------------------------
def _measured_fps(run: RunResult, warmup: int) -> float:
    """Frames per second after warm-up, from when the last warm-up frame finished to the last frame."""
    done = run.done_ns
    if len(done) <= warmup + 1 or warmup == 0:
        return run.frames_processed / run.elapsed_s if run.elapsed_s > 0 else 0.0
    return (len(done) - warmup) / ((done[-1] - done[warmup - 1]) / 1e9)


def _drift(frames: list[dict[str, float]], key: str) -> dict[str, float]:
    """Does latency grow over the run (a backlog)? Slope of e2e over source time, and half against half."""
    series = [(f["source_ts_s"], f[key]) for f in frames if key in f and "source_ts_s" in f]
    if len(series) < 4:
        return {}
    t, v = np.asarray(series).T
    slope = float(np.polyfit(t, v, 1)[0]) if np.ptp(t) > 0 else 0.0
    half = len(v) // 2
    return {
        "slope_ms_per_s": slope,
        "first_half_p50_ms": float(np.median(v[:half])),
        "second_half_p50_ms": float(np.median(v[half:])),
    }


def summarise(runs: list[RunResult], warmup: int) -> dict[str, Any]:
    """Figures of one mode over all its repeats; warm-up frames apart."""
    measured = [f for r in runs for f in r.frames[warmup:]]
    warm = [f for r in runs for f in r.frames[:warmup]]
    keys = [k for k in STAGES if any(k in f for f in measured)]
    fps = [_measured_fps(r, warmup) for r in runs]
    return {
        "fps_median": float(np.median(fps)) if fps else 0.0,
        "fps_runs": fps,
        "frames": {
            "grabbed": sum(r.frames_grabbed for r in runs),
            "processed": sum(r.frames_processed for r in runs),
            "dropped": {
                "replaced_by_newer": sum(r.frames_dropped for r in runs),
                "stale": sum(r.frames_stale for r in runs),
            },
            "warmup": len(warm),
            "measured": len(measured),
        },
        "latency_ms": {k: latency_stats([f[k] for f in measured if k in f]) for k in keys},
        "warmup_latency_ms": {k: latency_stats([f[k] for f in warm if k in f]) for k in keys},
        "drift": _drift(measured, "e2e_due" if any("e2e_due" in f for f in measured) else "e2e"),
        "runs": [
            {
                "elapsed_s": r.elapsed_s,
                "frames_grabbed": r.frames_grabbed,
                "frames_processed": r.frames_processed,
                "frames_dropped": r.frames_dropped,
                "frames_stale": r.frames_stale,
                "fps": _measured_fps(r, warmup),
                "cpu_s": r.cpu_s,
                "cpu_percent": 100 * r.cpu_s / r.elapsed_s if r.elapsed_s > 0 else 0.0,
                "peak_rss_mib": r.peak_rss_mib,
            }
            for r in runs
        ],
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("perception", "numpy", "opencv-python", "onnxruntime", "openvino", "torch", "ultralytics"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def _machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform()}


def checks(bench: dict[str, Any]) -> dict[str, float]:
    """The figures the pipeline is judged by: throughput ratios against the baselines, and in realtime
    the end-to-end p99 against the detector's p50 plus one frame interval (the most a frame should wait)."""
    modes = bench["modes"]
    pipe = modes["pipeline"]
    out: dict[str, float] = {"pipeline_fps": pipe["fps_median"]}
    for name in ("detector", "sequential", "ultralytics"):
        if name in modes and modes[name]["fps_median"] > 0:
            out[f"fps_ratio_vs_{name}"] = pipe["fps_median"] / modes[name]["fps_median"]
            # Each round runs every mode back to back: the ratio within a round is the one drift spares.
            rounds = [p / b for p, b in zip(pipe["fps_runs"], modes[name]["fps_runs"], strict=False) if b > 0]
            if len(rounds) > 1:
                out[f"fps_ratio_vs_{name}_round_median"] = float(np.median(rounds))
    if bench["mode"] == "realtime":
        out["e2e_p99_ms"] = pipe["latency_ms"]["e2e_due"]["p99"]
        out["frame_interval_ms"] = 1000.0 / bench["source_fps"]
        if "detector" in modes:
            out["e2e_p99_budget_ms"] = (
                modes["detector"]["latency_ms"]["detect"]["p50"] + out["frame_interval_ms"]
            )
    return out


def _no_nan(value: Any) -> Any:
    """NaN (a stage with no sample) as null, so bench.json is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


# -- outputs -------------------------------------------------------------------------------------------
def _fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN -> "-"


def write_report(path: Path, bench: dict[str, Any]) -> None:
    modes, det = bench["modes"], bench["detector"]
    pipe_fps = modes["pipeline"]["fps_median"]
    lines = [
        f"# perception bench: {Path(bench['source']).name}, {Path(bench['model']).name} "
        f"[{det['backend']}, {det['input_hw'][0]}x{det['input_hw'][1]}, {det['requests']} request(s) in "
        f"flight], mode {bench['mode']}",
        "",
        f"{bench['repeat']} round(s), modes alternated; {bench['warmup_frames']} warm-up frames per run "
        f"left out; {bench['machine']['cpu_count']} CPUs ({bench['machine']['cpu']}).",
        "",
        "| mode | FPS (median) | FPS (runs) | pipeline / mode | frames measured | dropped | "
        "e2e p50 | e2e p90 | e2e p99 | e2e max | CPU % | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in modes.items():
        e2e = m["latency_ms"].get("e2e_due") or m["latency_ms"].get("e2e", latency_stats([]))
        ratio = pipe_fps / m["fps_median"] if m["fps_median"] > 0 else float("nan")
        drops = m["frames"]["dropped"]
        cpu = np.median([r["cpu_percent"] for r in m["runs"]])
        lines.append(
            f"| {name} | {_fmt(m['fps_median'])} | {', '.join(_fmt(v) for v in m['fps_runs'])} | "
            f"{_fmt(ratio, 2)} | {m['frames']['measured']} | "
            f"{drops['replaced_by_newer'] + drops['stale']} | {_fmt(e2e['p50'])} | {_fmt(e2e['p90'])} | "
            f"{_fmt(e2e['p99'])} | {_fmt(e2e['max'])} | {_fmt(float(cpu), 0)} | "
            f"{_fmt(max(r['peak_rss_mib'] for r in m['runs']), 0)} |"
        )
    lines += [
        "",
        "e2e: pipeline and sequential, from capture (realtime: from when the frame was due) to the end "
        "of the sinks; detector: one detect call; ultralytics: time between results. "
        "Peak RSS is the process's high-water mark so far (all modes share the process). "
        "`detector` and `ultralytics` run unpaced in either mode.",
        "",
        "## Latency by stage (ms, after warm-up)",
        "",
        "| mode | stage | p50 | p90 | p99 | max | warm-up max |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in modes.items():
        for stage, s in m["latency_ms"].items():
            warm = m["warmup_latency_ms"].get(stage, {}).get("max", float("nan"))
            lines.append(
                f"| {name} | {stage} | {_fmt(s['p50'])} | {_fmt(s['p90'])} | {_fmt(s['p99'])} | "
                f"{_fmt(s['max'])} | {_fmt(warm)} |"
            )
    lines += ["", "## Checks", ""] + [f"- {k}: {v:.3f}" for k, v in bench["checks"].items()]
    drift = modes["pipeline"]["drift"]
    if drift:
        lines += [
            "",
            f"Pipeline e2e over the run: slope {drift['slope_ms_per_s']:+.2f} ms per second of video, "
            f"p50 {drift['first_half_p50_ms']:.1f} ms (first half) vs {drift['second_half_p50_ms']:.1f} ms "
            "(second half).",
        ]
    path.write_text("\n".join(lines) + "\n")


def write_plots(out: Path, runs: dict[str, list[RunResult]], warmup: int) -> list[str]:
    """latency_cdf.png (per stage, pipeline, plus the baselines' per-frame time) and e2e_over_time.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5))
    series: list[tuple[str, list[float]]] = []
    pipe = [f for r in runs["pipeline"] for f in r.frames[warmup:]]
    for stage in ("grab", "wait", "detect", "track", "ttc", "queues", "e2e", "e2e_due"):
        series.append((f"pipeline {stage}", [f[stage] for f in pipe if stage in f]))
    for name in ("sequential", "detector", "ultralytics"):
        if name in runs:
            series.append((f"{name} per frame", [f["e2e"] for r in runs[name] for f in r.frames[warmup:]]))
    for label, values in series:
        if values:
            v = np.sort(np.maximum(values, 1e-3))
            ax.plot(v, np.arange(1, v.size + 1) / v.size, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of frames")
    ax.set_title("Latency CDF after warm-up")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "latency_cdf.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4))
    for name in ("pipeline", "sequential", "detector", "ultralytics"):
        if name in runs and runs[name]:
            frames = runs[name][-1].frames
            ax.plot([f.get("e2e_due", f["e2e"]) for f in frames], label=f"{name} (last run)", lw=1)
    if warmup:
        ax.axvspan(0, warmup, color="grey", alpha=0.2, label="warm-up")
    ax.set_xlabel("frame")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_title("Per-frame end-to-end latency over the run")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "e2e_over_time.png", dpi=100)
    plt.close(fig)
    return ["latency_cdf.png", "e2e_over_time.png"]


# -- command -------------------------------------------------------------------------------------------
def add_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="latency and throughput of the pipeline against baselines")
    bench.add_argument("source", help="video file or image folder")
    bench.add_argument("--model", required=True, help="detector model (.onnx, OpenVINO IR folder, ...)")
    bench.add_argument(
        "--backend",
        choices=["auto", "onnxruntime", "openvino", "tensorrt", "ultralytics", "triton"],
        help="backend",
    )
    bench.add_argument("--mode", choices=["fast", "realtime"], help="fast: every frame; realtime: paced")
    bench.add_argument("--compare", help="comma-separated baselines: sequential,detector,ultralytics")
    bench.add_argument("--frames", type=int, help="at most this many frames per run (default: all)")
    bench.add_argument("--repeat", type=int, help="rounds of every mode (default: config bench.repeat)")
    bench.add_argument("--warmup", type=int, help="warm-up frames per run (default: bench.warmup_frames)")
    bench.add_argument("--imgsz", type=int, nargs=2, metavar=("H", "W"), help="model input size")
    bench.add_argument("--config", help="YAML overriding configs/default.yaml")
    bench.add_argument("--out", type=Path, default=Path("out/bench"), help="output folder")


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {"output": {"video": False, "events": False, "show": False}}
    if args.mode:
        overrides["source"] = {"mode": args.mode}
    detector: dict[str, Any] = {}
    if args.backend:
        detector["backend"] = args.backend
    if args.imgsz:
        detector["input_size"] = list(args.imgsz)
    if detector:
        overrides["detector"] = detector
    bench: dict[str, Any] = {}
    if args.compare is not None:
        bench["compare"] = [c.strip() for c in args.compare.split(",") if c.strip()]
    if args.repeat is not None:
        bench["repeat"] = args.repeat
    if args.warmup is not None:
        bench["warmup_frames"] = args.warmup
    if bench:
        overrides["bench"] = bench
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.frames is not None and args.frames < 1:
        raise PerceptionError("--frames must be at least 1")
    warmup = cfg.bench.warmup_frames
    if not Path(args.source).exists():
        raise PerceptionError(f"source not found: {args.source}")
    requests = inference_requests(cfg.detector, throughput=cfg.source.mode == "fast")
    detector = create_detector(args.model, cfg, requests)
    # A plain loop runs one request at a time: it gets a detector set up for that (all threads on one).
    single = detector if detector.requests == 1 else create_detector(args.model, cfg)
    images = decode_frames(args.source, cfg, args.frames) if "detector" in cfg.bench.compare else []
    modes = ["pipeline", *dict.fromkeys(cfg.bench.compare)]
    runs: dict[str, list[RunResult]] = {m: [] for m in modes}
    errors: dict[str, str] = {}
    for round_index in range(cfg.bench.repeat):
        shift = round_index % len(modes)
        for mode in modes[shift:] + modes[:shift]:  # rotate the order each round
            if mode in errors:
                continue
            print(f"bench: round {round_index + 1}/{cfg.bench.repeat}: {mode}", file=sys.stderr)
            if mode == "pipeline":
                runs[mode].append(run_pipeline(args.source, detector, cfg, args.frames))
            elif mode == "sequential":
                runs[mode].append(run_sequential(args.source, single, cfg, args.frames))
            elif mode == "detector":
                runs[mode].append(run_detector(images, detector))
            else:
                try:
                    runs[mode].append(run_ultralytics(args.source, str(args.model), cfg, args.frames))
                except Exception as exc:  # a model Ultralytics cannot load: report it, keep the rest
                    errors[mode] = (
                        f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
                    )
    runs = {m: r for m, r in runs.items() if r}

    args.out.mkdir(parents=True, exist_ok=True)
    bench = {
        "schema_version": SCHEMA_VERSION,
        "command": sys.argv,
        "source": str(args.source),
        "model": str(args.model),
        "mode": cfg.source.mode,
        "repeat": cfg.bench.repeat,
        "warmup_frames": warmup,
        "frames_limit": args.frames,
        "detector": {
            "backend": detector.backend,
            "layout": detector.layout,
            "input_hw": list(detector.input_hw),
            "requests": detector.requests,
            "requests_sequential": single.requests,
            "intra_op_threads": cfg.detector.intra_op_threads,
            "intra_op_spinning": cfg.detector.intra_op_spinning,
            "openvino_hint": cfg.detector.openvino_hint,
        },
        "machine": _machine(),
        "versions": _versions(),
        "modes": {m: summarise(r, warmup) for m, r in runs.items()},
        "source_fps": runs["pipeline"][0].source_fps,
        "errors": errors,
        "notes": "peak_rss_mib is the process high-water mark when the run ended (modes share one process)",
    }
    bench["checks"] = checks(bench)
    bench["plots"] = write_plots(args.out, runs, warmup)
    (args.out / "bench.json").write_text(json.dumps(_no_nan(bench), indent=1, allow_nan=False))
    write_report(args.out / "report.md", bench)
    print((args.out / "report.md").read_text().split("\n\n")[2], file=sys.stderr)
    for mode, message in errors.items():
        print(f"bench: {mode} failed: {message}", file=sys.stderr)
    print(f"bench: wrote {args.out}/bench.json, report.md, {', '.join(bench['plots'])}", file=sys.stderr)
    return 0
