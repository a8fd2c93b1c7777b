"""What the threat stage (ranging, TTC, lead and warning) costs per frame, with optical flow only where a TTC
can matter against optical flow for every track, in one process, rounds interleaved.

    python benchmarks/ttc_cost.py [--clip ../shared/videos/highway_960x540_25fps.mp4] [--rounds 5]

Detections are computed once (ONNX Runtime), so only the stages after detection run in the timed loop:
`FrameProcessor.step`, whose `ttc` latency is what events.jsonl reports as `latency_ms.ttc`.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from perception.core.config import load_config
from perception.core.events import Stage
from perception.core.types import Frame
from perception.detect import create_detector
from perception.runtime.processor import build_processor

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))


def run(frames: list, detections: list, cfg, everywhere: bool) -> tuple[np.ndarray, float, float]:
    """Per-frame TTC-stage milliseconds, tracks per frame, tracks measured by flow per frame."""
    processor = build_processor(cfg)
    threats = processor.threats
    wanted = threats.wants_precise_ttc
    counted = []

    def precise(tracks):
        mask = np.ones(len(tracks), bool) if everywhere else wanted(tracks)
        counted.append((len(tracks), int(mask.sum())))
        return mask

    threats.wants_precise_ttc = precise
    ms = []
    for (t_s, image), dets in zip(frames, detections, strict=True):
        result = processor.step(Frame(image.copy(), len(ms), time.monotonic_ns(), t_s), dets)
        ms.append(result.latency_ms[Stage.TTC])
    n = np.array(counted)
    return np.array(ms), float(n[:, 0].mean()), float(n[:, 1].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=str(ASSETS / "videos" / "highway_960x540_25fps.mp4"))
    parser.add_argument("--model", default=str(ASSETS / "models" / "yolox_nano.onnx"))
    parser.add_argument("--config", help="YAML overriding configs/default.yaml")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cfg = load_config(args.config, {"detector": {"backend": "onnxruntime"}})
    cap = cv2.VideoCapture(args.clip)
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, image = cap.read()
        if not ok:
            break
        frames.append((len(frames) / fps, image))
    detector = create_detector(args.model, cfg)
    detections = [detector.detect(image) for _, image in frames]
    detector.close()

    results: dict[str, list] = {"where it matters": [], "every track": []}
    for _ in range(args.rounds):
        for mode in results:
            results[mode].append(run(frames, detections, cfg, everywhere=mode == "every track"))
    print(f"{Path(args.clip).name}: {len(frames)} frames, {args.rounds} rounds (medians over rounds)\n")
    print(
        "| optical flow for | TTC stage p50 (ms) | mean (ms) | p90 (ms) | tracks / frame | by flow / frame |"
    )
    print("|---|---|---|---|---|---|")
    for mode, rounds in results.items():
        p50 = np.median([np.percentile(ms, 50) for ms, _, _ in rounds])
        mean = np.median([ms.mean() for ms, _, _ in rounds])
        p90 = np.median([np.percentile(ms, 90) for ms, _, _ in rounds])
        print(f"| {mode} | {p50:.2f} | {mean:.2f} | {p90:.2f} | {rounds[0][1]:.1f} | {rounds[0][2]:.1f} |")
    ratio = [
        a[0].mean() / b[0].mean()
        for a, b in zip(results["where it matters"], results["every track"], strict=True)
    ]
    print(f"\nper-round ratio of means (where it matters / every track): median {np.median(ratio):.2f}")


if __name__ == "__main__":
    main()
