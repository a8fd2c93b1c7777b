"""Outputs of `perception bench`: report.md (tables with ratios), the machine and versions it ran on, and the
two plots (matplotlib, optional: the `bench` extra)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from perception.bench.runners import RunResult
from perception.bench.stats import latency_stats
from perception.detect.auto.machine import package_versions


def versions() -> dict[str, str]:
    return package_versions(
        ("perception", "numpy", "opencv-python", "onnxruntime", "openvino", "torch", "ultralytics")
    )


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform()}


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
    lines += [f"\n{mode} left out: {message}" for mode, message in bench.get("errors", {}).items()]
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
