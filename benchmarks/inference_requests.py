"""Fast replay with 1, 2 or 3 inference requests in flight (`detector.requests`), interleaved.

    python benchmarks/inference_requests.py [--model M] [--input-size 384x640] [--rounds 5] [--requests 1 2 3]

One process, a warm detector per request count (threads split among its requests, as `perception run`
sets them up); every round runs each count once over the whole clip in `fast` mode with no outputs
written, in rotated order, so machine drift hits them alike. Printed: median FPS per count and the
median over rounds of its FPS divided by the FPS of the default (2) in the same round.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from perception.core.config import load_config
from perception.detect import create_detector
from perception.runtime.pipeline import Pipeline, Stream
from perception.runtime.processor import build_processor
from perception.sources.files import open_source

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ASSETS / "videos" / "highway_960x540_25fps.mp4")
    parser.add_argument("--model", type=Path, default=ASSETS / "models" / "yolox_nano.onnx")
    parser.add_argument("--input-size", default="384x640")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    h, w = (int(v) for v in args.input_size.split("x"))
    cfg = load_config(None, {"detector": {"input_size": [h, w]}, "output": {"video": False, "events": False}})
    detectors = {n: create_detector(args.model, cfg, requests=n) for n in args.requests}
    fps: dict[int, list[float]] = {n: [] for n in args.requests}
    for round_index in range(args.rounds):
        shift = round_index % len(args.requests)
        for n in args.requests[shift:] + args.requests[:shift]:
            source = open_source(str(args.source), cfg.source)
            fps[n].append(Pipeline(detectors[n], cfg, [Stream(source, build_processor(cfg), [])]).run().fps)
        print(f"round {round_index + 1}: " + ", ".join(f"{n}: {fps[n][-1]:.1f}" for n in args.requests))

    base = fps.get(2, fps[args.requests[0]])
    print(f"\n{args.model.name} at {args.input_size}, {args.rounds} rounds, fast mode, no outputs\n")
    print("| requests | FPS (median) | FPS (rounds) | FPS / 2 requests, same round (median) |")
    print("|---|---|---|---|")
    for n, values in fps.items():
        ratio = statistics.median(v / b for v, b in zip(values, base, strict=True))
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {n} | {statistics.median(values):.1f} | {runs} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
