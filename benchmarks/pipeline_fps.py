"""Frames per second and per-stage latency of `perception run`, measured the way a user runs it.

    python benchmarks/pipeline_fps.py [--source CLIP] [--model ONNX] [--runs 3] [--input-size 448x800 ...]

Each configuration is run `--runs` times in turn (interleaved, so machine noise hits all alike); the
table gives the median over runs of whole-run fps, and medians over all frames of each stage's latency.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
STAGES = ("grab", "wait", "detect", "track", "ttc", "e2e")


def run_once(source: Path, model: Path, input_size: str, mode: str) -> dict:
    h, w = (int(v) for v in input_size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bench.yaml"
        config.write_text(f"detector:\n  input_size: [{h}, {w}]\n")
        cmd = [
            sys.executable,
            "-m",
            "perception.cli",
            "run",
            str(source),
            "--model",
            str(model),
            "--out",
            tmp,
            "--config",
            str(config),
            "--mode",
            mode,
        ]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        events = [json.loads(line) for line in (Path(tmp) / "events.jsonl").read_text().splitlines()]
    frames = [e for e in events if e["type"] == "frame"]
    end = events[-1]
    return {
        "fps": end["fps"],
        "processed": end["frames_processed"],
        "dropped": end["frames_dropped"],
        "latency": {s: [f["latency_ms"][s] for f in frames] for s in STAGES},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ASSETS / "videos" / "highway_960x540_25fps.mp4")
    parser.add_argument("--model", type=Path, default=ASSETS / "models" / "yolox_nano.onnx")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--input-size", nargs="+", default=["448x800", "384x640"])
    parser.add_argument("--mode", choices=["fast", "realtime"], default="fast")
    args = parser.parse_args()

    results: dict[str, list[dict]] = {size: [] for size in args.input_size}
    for _ in range(args.runs):
        for size in args.input_size:
            results[size].append(run_once(args.source, args.model, size, args.mode))

    print(
        f"source {args.source.name}, model {args.model.name}, mode {args.mode}, {args.runs} runs, "
        f"{os.cpu_count()} CPUs"
    )
    header = (
        "| input | fps (median) | fps (runs) | frames | dropped | "
        + " | ".join(f"{s} ms p50" for s in STAGES)
        + " | e2e ms p99 |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for size, runs in results.items():
        fps = [r["fps"] for r in runs]
        lat = {s: sorted(v for r in runs for v in r["latency"][s]) for s in STAGES}
        p50 = " | ".join(f"{statistics.median(lat[s]):.1f}" for s in STAGES)
        p99 = lat["e2e"][int(0.99 * (len(lat["e2e"]) - 1))]
        print(
            f"| {size} | {statistics.median(fps):.1f} | {', '.join(f'{v:.1f}' for v in fps)} | "
            f"{runs[0]['processed']} | {runs[0]['dropped']} | {p50} | {p99:.1f} |"
        )


if __name__ == "__main__":
    main()
