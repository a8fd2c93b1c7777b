"""What writing the outputs costs per frame: `latency_ms.sink` of `perception run` (drawing, the video and
tracks.txt, measured up to the event log), the video's size, and the run's CPU time, for x264 presets, and
optionally for another checkout (e.g. the code before the H.264 video, which wrote mp4v through OpenCV);
then the video writers alone on the clip's decoded frames (no pipeline around them).

    python benchmarks/sink_cost.py [--runs 3] [--presets ultrafast,superfast,veryfast] [--before DIR]

Configurations are interleaved round by round, so machine noise hits them alike. `--before DIR` runs
`python -m perception.cli` with DIR first on PYTHONPATH and its own default config.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
REPO = Path(__file__).resolve().parents[1]


def run_once(source: Path, model: Path, code_dir: Path, preset: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "perception.cli", "run", str(source), "--model", str(model)]
        cmd += ["--out", str(out)]
        if preset is not None:
            config = Path(tmp) / "preset.yaml"
            config.write_text(f"output:\n  video_preset: {preset}\n")
            cmd += ["--config", str(config)]
        env = {**os.environ, "PYTHONPATH": str(code_dir)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=code_dir)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
        video_mb = (out / "annotated.mp4").stat().st_size / 1e6
    sink = [e["latency_ms"]["sink"] for e in events if e["type"] == "frame"]
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"sink": sink, "video_mb": video_mb, "cpu_s": cpu_s, "fps": events[-1]["fps"]}


def writers_alone(source: Path, presets: list[str], runs: int) -> None:
    """Per-frame wall and process CPU time (x264's own threads included) of each writer, frames in memory."""
    import time

    import cv2

    from perception.output.video import Mp4Writer

    cap, frames = cv2.VideoCapture(str(source)), []
    while (image := cap.read()[1]) is not None:
        frames.append(image)
    h, w = frames[0].shape[:2]
    times: dict[str, list[float]] = {"mp4v (OpenCV)": [], **{f"h264 {p}": [] for p in presets}}
    cpu: dict[str, list[float]] = {name: [] for name in times}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            for name in times:
                path = Path(tmp) / "v.mp4"
                opencv = name.startswith("mp4v")
                if opencv:
                    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
                else:
                    mp4 = Mp4Writer(path, 25.0, preset=name.split()[1])
                cpu0 = time.process_time()
                for i, image in enumerate(frames):
                    t0 = time.perf_counter()
                    if opencv:
                        writer.write(image)
                    else:
                        mp4.write(image, i / 25)
                    times[name].append((time.perf_counter() - t0) * 1e3)
                if opencv:
                    writer.release()
                else:
                    mp4.close()
                cpu[name].append((time.process_time() - cpu0) / len(frames) * 1e3)
    print("\n| writer alone | ms p50 | ms p90 | CPU ms per frame (median) |")
    print("|---|---|---|---|")
    for name, values in times.items():
        p50, p90 = np.percentile(values, [50, 90])
        print(f"| {name} | {p50:.2f} | {p90:.2f} | {statistics.median(cpu[name]):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ASSETS / "videos" / "highway_960x540_25fps.mp4")
    parser.add_argument("--model", type=Path, default=ASSETS / "models" / "yolox_nano.onnx")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--presets", default="ultrafast,superfast,veryfast")
    parser.add_argument("--before", type=Path, help="another checkout to measure with its defaults")
    args = parser.parse_args()

    configs: list[tuple[str, Path, str | None]] = []
    if args.before:
        configs.append((f"before ({args.before.name})", args.before.resolve(), None))
    configs += [(f"h264 {p}", REPO, p) for p in args.presets.split(",")]
    results: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    for round_index in range(args.runs):
        for name, code_dir, preset in configs:
            print(f"round {round_index + 1}/{args.runs}: {name}", file=sys.stderr)
            results[name].append(run_once(args.source.resolve(), args.model.resolve(), code_dir, preset))

    print("| video | sink ms p50 | sink ms p90 | sink ms p99 | CPU s per run (median) | fps (median) | MB |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        sink = np.concatenate([r["sink"] for r in runs])
        p50, p90, p99 = np.percentile(sink, [50, 90, 99])
        cpu = statistics.median(r["cpu_s"] for r in runs)
        fps = statistics.median(r["fps"] for r in runs)
        size = runs[0]["video_mb"]
        print(f"| {name} | {p50:.1f} | {p90:.1f} | {p99:.1f} | {cpu:.1f} | {fps:.1f} | {size:.2f} |")
    writers_alone(args.source, args.presets.split(","), args.runs)


if __name__ == "__main__":
    main()
