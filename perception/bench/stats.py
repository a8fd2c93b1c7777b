"""Figures from runs: latency percentiles per stage, throughput after warm-up, drift, and the checks the
pipeline is judged by (throughput ratios, realtime latency budget)."""

from __future__ import annotations

from typing import Any

import numpy as np

from perception.bench.runners import RunResult
from perception.core.events import Stage

PERCENTILES = (50, 90, 99)
# The pipeline's stages in order (events.Stage), then what the benchmark adds: `queues`, the time spent
# waiting in the queues after detection, and `e2e_due`, end to end from when the frame was due (realtime).
STAGES = (
    *(s.value for s in Stage if s not in (Stage.BACKLOG, Stage.E2E)),
    "queues",
    Stage.E2E.value,
    "e2e_due",
)


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


def checks(bench: dict[str, Any]) -> dict[str, float]:
    """The figures the pipeline is judged by: throughput ratios against the baselines, and in realtime
    the end-to-end p99 against the detector's p50 plus one frame interval (the most a frame should wait)."""
    modes = bench["modes"]
    pipe = modes["pipeline"]
    out: dict[str, float] = {"pipeline_fps": pipe["fps_median"]}
    # CPU time per frame: what each mode costs the machine, whatever share of it other processes left it. On a
    # shared machine a mode with more runnable threads gets more of the CPU, so FPS ratios lean its way; the
    # ratio of CPU per frame does not (the detector's cost over the pipeline's: the share of the pipeline's
    # work that is detection).
    cpu_ms = {name: _cpu_ms_per_frame(m) for name, m in modes.items()}
    for name in modes:
        if name != "pipeline" and modes[name]["fps_median"] > 0:
            out[f"fps_ratio_vs_{name}"] = pipe["fps_median"] / modes[name]["fps_median"]
            # Each round runs every mode back to back: the ratio within a round is the one drift spares.
            rounds = [p / b for p, b in zip(pipe["fps_runs"], modes[name]["fps_runs"], strict=False) if b > 0]
            if len(rounds) > 1:
                out[f"fps_ratio_vs_{name}_round_median"] = float(np.median(rounds))
    if len(cpu_ms) > 1 and cpu_ms["pipeline"] > 0:
        for name, ms in cpu_ms.items():
            out[f"cpu_ms_per_frame_{name}"] = ms
        for name in ("detector", "ultralytics"):
            if name in cpu_ms:  # what the pipeline's FPS over this mode's would be were the CPU the limit
                out[f"cpu_ratio_{name}_vs_pipeline"] = cpu_ms[name] / cpu_ms["pipeline"]
    if bench["mode"] == "realtime":
        out["e2e_p99_ms"] = pipe["latency_ms"]["e2e_due"]["p99"]
        out["frame_interval_ms"] = 1000.0 / bench["source_fps"]
        if "detector" in modes:
            out["e2e_p99_budget_ms"] = (
                modes["detector"]["latency_ms"]["detect"]["p50"] + out["frame_interval_ms"]
            )
    return out


def _cpu_ms_per_frame(mode: dict[str, Any]) -> float:
    frames = sum(r["frames_processed"] for r in mode["runs"])
    return 1000 * sum(r["cpu_s"] for r in mode["runs"]) / frames if frames else float("nan")


def no_nan(value: Any) -> Any:
    """NaN (a stage with no sample) as null, so bench.json is strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [no_nan(v) for v in value]
    return value
