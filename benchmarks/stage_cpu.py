"""Where the CPU goes per frame: the pipeline against the detector alone, by thread, on a busy machine.

    python benchmarks/stage_cpu.py [--model M] [--imgsz 384 640] [--rounds 3] [--backend auto]

Runs `perception bench`'s own pipeline and detector-alone modes (same detector, same requests, alternating)
on the highway clip and samples every thread's CPU time (/proc/self/task) while they run. CPU time per frame
does not depend on how much of the machine other processes took (FPS does), so it shows what the work
around the detector costs: FFmpeg's decoder threads (`av:h264*`), the grab thread (conversion to BGR), the
process thread (tracking, distance, TTC, warnings), the sink thread, OpenCV's and the runtime's worker
threads. The pipeline can keep at most detector / (detector + the rest) of the detector's own rate when the
CPU is the limit. Stage wall times (`track`, `ttc` medians) split the process thread.
"""

from __future__ import annotations

import argparse
import collections
import os
import threading
import time
from pathlib import Path

import numpy as np

from perception.bench.runners import decode_frames, run_detector, run_pipeline
from perception.core.config import load_config
from perception.detect import create_detector, inference_requests

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
CLIP = ASSETS / "videos" / "highway_960x540_25fps.mp4"
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, tuple[str, float]]:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:
            continue  # the thread ended meanwhile
        out[int(tid)] = (comm, (int(stat[11]) + int(stat[12])) / TICK)
    return out


def group(name: str) -> str:
    """Python threads by stage (perception-detect, ...), FFmpeg's by prefix, the runtime's as named."""
    if name.startswith("perception-"):
        return "-".join(name.split("-")[:2])
    if name.startswith("ThreadPoolExecutor"):
        return "perception-detect"  # the detector-alone mode's request threads
    if name.startswith("av:"):
        return "ffmpeg decode"
    return f"other ({name})"


def measure(run) -> tuple[dict[str, float], int, float]:
    """CPU seconds per thread group while `run()` runs, the frames it processed and its wall time."""
    names: dict[int, str] = {}
    last: dict[int, tuple[str, float]] = {}
    stop = threading.Event()
    start = thread_cpu()

    def sample() -> None:
        while not stop.is_set():
            for t in threading.enumerate():
                if t.native_id:
                    names[t.native_id] = t.name
            last.update(thread_cpu())
            time.sleep(0.02)

    monitor = threading.Thread(target=sample, daemon=True)
    monitor.start()
    t0 = time.monotonic()
    result = run()
    wall = time.monotonic() - t0
    stop.set()
    monitor.join()
    last.update(thread_cpu())
    skip = {threading.get_native_id(), monitor.native_id}
    groups: dict[str, float] = collections.Counter()
    for tid, (comm, cpu) in last.items():
        if tid not in skip:
            groups[group(names.get(tid, comm))] += cpu - start.get(tid, ("", 0.0))[1]
    return groups, result, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ASSETS / "models" / "yolox_nano.onnx"))
    ap.add_argument("--imgsz", type=int, nargs=2, default=[384, 640])
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    no_outputs = {"video": False, "events": False, "show": False}
    cfg = load_config(
        None, {"detector": {"backend": args.backend, "input_size": args.imgsz}, "output": no_outputs}
    )
    detector = create_detector(args.model, cfg, inference_requests(cfg.detector, True), CLIP)
    precision = getattr(detector, "cfg", cfg.detector).precision
    print(f"{Path(args.model).name} on {detector.backend} {precision}, {detector.requests} request(s), "
          f"{detector.input_hw[0]}x{detector.input_hw[1]}, {os.cpu_count()} CPUs")  # fmt: skip
    images = decode_frames(str(CLIP), cfg, None)
    per_frame: dict[str, list[dict[str, float]]] = {"pipeline": [], "detector": []}
    fps: dict[str, list[float]] = {"pipeline": [], "detector": []}
    stages: dict[str, list[float]] = collections.defaultdict(list)
    for r in range(args.rounds):
        for mode in ("pipeline", "detector")[:: 1 if r % 2 == 0 else -1]:
            run = (lambda: run_pipeline(str(CLIP), detector, cfg, None)) if mode == "pipeline" else (
                lambda: run_detector(images, detector)
            )  # fmt: skip
            groups, result, wall = measure(run)
            n = result.frames_processed
            per_frame[mode].append({k: 1000 * v / n for k, v in groups.items()})
            fps[mode].append(n / wall)
            if mode == "pipeline":
                for f in result.frames:
                    for stage in ("track", "ttc", "sink"):
                        if stage in f:
                            stages[stage].append(f[stage])
    print("\n| thread group | pipeline CPU ms/frame | detector alone CPU ms/frame |")
    print("|---|---|---|")
    keys = sorted(
        {k for m in per_frame.values() for d in m for k in d},
        key=lambda k: (not k.startswith("perception-detect"), k),
    )
    totals = {}
    for mode in per_frame:
        totals[mode] = float(np.median([sum(d.values()) for d in per_frame[mode]]))
    for k in keys:
        vals = [float(np.median([d.get(k, 0.0) for d in per_frame[m]])) for m in ("pipeline", "detector")]
        if max(vals) >= 0.05:
            print(f"| {k} | {vals[0]:.2f} | {vals[1]:.2f} |")
    print(f"| **all** | **{totals['pipeline']:.2f}** | **{totals['detector']:.2f}** |")
    ratio = totals["detector"] / totals["pipeline"]
    print(
        f"\nCPU-bound limit of pipeline / detector alone: {ratio:.2f} (detector CPU per frame / pipeline's)"
    )
    rounds = [p / d for p, d in zip(fps["pipeline"], fps["detector"], strict=True)]
    print(
        f"measured FPS: pipeline {np.median(fps['pipeline']):.1f}, detector alone "
        f"{np.median(fps['detector']):.1f}, ratio per round {', '.join(f'{x:.2f}' for x in rounds)} "
        "(on a shared machine, more threads get more CPU)"
    )
    print(
        "stage wall ms p50 in the pipeline: "
        + ", ".join(f"{k} {np.median(v):.2f}" for k, v in stages.items())
    )


if __name__ == "__main__":
    main()
