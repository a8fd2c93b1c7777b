"""Tracking on a shaking camera, with and without camera motion compensation (perception/motion/).

    python benchmarks/shake.py [--clip ../shared/videos/highway_960x540_25fps.mp4] [--seeds 0 1 2]
                               [--frames N] [--model ../shared/models/yolox_nano.onnx] [--byte]

Each shaken copy of the real clip moves frame i by a known transform T_i: a seeded, bounded random walk
of translation (each frame moves up to `step_px` in x and y, the total offset stays within 2 x step_px)
and roll about the image centre (each frame up to a third of `roll_deg`, the total within +-roll_deg):
"gentle" 12 px / 0.4 deg, "strong" 20 px / 1.5 deg. The detector (YOLOX-Nano, ONNX Runtime, the default
config) runs on the original and on every copy. Each tracker configuration is scored against its own
tracks on the original moved through the same T_i (each box: the enclosing box of its warped corners),
with py-motmetrics at IoU 0.5: what the shake costs, not how good the tracker is. `--byte` adds
Ultralytics' BYTETracker on the same detections (it has no camera motion compensation: BoT-SORT's needs
the frames, which BOTSORT's API takes only through its own GMC; that one is run with `--botsort`).

Camera motion estimation time per frame (ms) is measured on the strong copies.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from detector_latency import read_frames  # benchmarks/: the clip decoded into memory

from perception.core.config import Config, MotionConfig, load_config
from perception.core.types import Detections
from perception.detect import create_detector
from perception.eval.shake import STRENGTHS, score, shake, shake_transforms, track
from perception.motion import CameraMotionEstimator

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))


def track_byte(dets: list[Detections]) -> np.ndarray:
    from tracker_compare import run_byte  # benchmarks/: Ultralytics' BYTETracker on our detections

    return run_byte({i + 1: d for i, d in enumerate(dets)}, np.arange(1, len(dets) + 1))


def track_botsort(frames: list[np.ndarray], dets: list[Detections]) -> np.ndarray:
    """Ultralytics' BOTSORT with its sparse-optical-flow GMC (botsort.yaml defaults, no ReID)."""
    from types import SimpleNamespace

    from tracker_compare import _Boxes
    from ultralytics.trackers.bot_sort import BOTSORT

    args = SimpleNamespace(
        track_high_thresh=0.25, track_low_thresh=0.1, new_track_thresh=0.25, track_buffer=30,
        match_thresh=0.8, fuse_score=True, gmc_method="sparseOptFlow", proximity_thresh=0.5,
        appearance_thresh=0.8, with_reid=False, model="auto",
    )  # fmt: skip
    tracker, rows = BOTSORT(args), []
    for i, (image, d) in enumerate(zip(frames, dets, strict=True)):
        out = tracker.update(
            _Boxes(d.boxes_xyxy.astype(np.float64), d.scores, d.class_ids.astype(float)), image
        )
        if len(out):
            rows.append(np.column_stack((np.full(len(out), i + 1), out[:, 4], out[:, :4], out[:, 5])))
    return np.concatenate(rows) if rows else np.zeros((0, 7))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=ASSETS / "videos" / "highway_960x540_25fps.mp4")
    parser.add_argument("--model", type=Path, default=ASSETS / "models" / "yolox_nano.onnx")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, help="only the first N frames")
    parser.add_argument("--byte", action="store_true", help="add Ultralytics BYTETracker (no compensation)")
    parser.add_argument("--botsort", action="store_true", help="add Ultralytics BOTSORT (its own GMC)")
    args = parser.parse_args()

    cfg = load_config()
    configs = {
        "compensated": cfg,
        "uncompensated": Config(**{**dict(cfg), "motion": MotionConfig(enabled=False)}),
    }
    original = read_frames(args.clip, args.frames)
    hw, fps = original[0].shape[:2], 25.0
    detector = create_detector(args.model, cfg)
    try:
        dets_orig = [detector.detect(image) for image in original]
        reference = {name: track(original, dets_orig, c, fps) for name, c in configs.items()}
        if args.byte:
            reference["ByteTrack (Ultralytics)"] = track_byte(dets_orig)
        if args.botsort:
            reference["BoT-SORT (Ultralytics, sparseOptFlow GMC)"] = track_botsort(original, dets_orig)
        print(f"{args.clip.name}: {len(original)} frames, {hw[1]}x{hw[0]}, detector {args.model.name}")
        print("| strength | seed | tracker | IDF1 | ID switches | MOTA |")
        print("|---|---|---|---|---|---|")
        motion_ms: list[float] = []
        summary: dict[tuple[str, str], list[dict]] = {}
        for strength, (step_px, roll_deg) in STRENGTHS.items():
            for seed in args.seeds:
                warps = shake_transforms(len(original), hw, step_px, roll_deg, seed)
                shaken = shake(original, warps)
                dets = [detector.detect(image) for image in shaken]
                if strength == "strong":
                    estimator = CameraMotionEstimator(cfg.motion)
                    for image, d in zip(shaken, dets, strict=True):
                        t0 = time.perf_counter()
                        estimator.estimate(image, d.boxes_xyxy)
                        motion_ms.append((time.perf_counter() - t0) * 1e3)
                runs = {name: track(shaken, dets, c, fps) for name, c in configs.items()}
                if args.byte:
                    runs["ByteTrack (Ultralytics)"] = track_byte(dets)
                if args.botsort:
                    runs["BoT-SORT (Ultralytics, sparseOptFlow GMC)"] = track_botsort(shaken, dets)
                for name, rows in runs.items():
                    m = score(reference[name], rows, warps)
                    summary.setdefault((strength, name), []).append(m)
                    cells = f"{m['idf1']:.3f} | {m['id_switches']} | {m['mota']:.3f}"
                    print(f"| {strength} | {seed} | {name} | {cells} |")
        print("\n| strength | tracker | IDF1 (mean) | IDF1 (min) | ID switches (mean) |")
        print("|---|---|---|---|---|")
        for (strength, name), ms in summary.items():
            idf1 = [m["idf1"] for m in ms]
            switches = statistics.mean(m["id_switches"] for m in ms)
            print(f"| {strength} | {name} | {statistics.mean(idf1):.3f} | {min(idf1):.3f} | {switches:.1f} |")
        q = np.percentile(motion_ms, [50, 90])
        print(
            f"\ncamera motion estimation: median {q[0]:.1f} ms, p90 {q[1]:.1f} ms per frame ({hw[1]}x{hw[0]})"
        )
    finally:
        detector.close()


if __name__ == "__main__":
    main()
