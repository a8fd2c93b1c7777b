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

import cv2
import numpy as np

from perception.core.config import Config, MotionConfig, load_config
from perception.core.types import Detections, Frame
from perception.detect import create_detector
from perception.eval import mot
from perception.motion import CameraMotionEstimator
from perception.runtime.processor import build_processor

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
STRENGTHS = {"gentle": (12.0, 0.4), "strong": (20.0, 1.5)}  # step_px, roll_deg


def shake_transforms(n: int, hw: tuple[int, int], step_px: float, roll_deg: float, seed: int) -> np.ndarray:
    """(n, 2, 3) absolute warps of frames 0..n-1 (frame 0 included: the walk starts at rest)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    offset, roll, out = np.zeros(2), 0.0, []
    for i in range(n):
        if i:
            offset = np.clip(offset + rng.uniform(-step_px, step_px, 2), -2 * step_px, 2 * step_px)
            roll = float(np.clip(roll + rng.uniform(-roll_deg, roll_deg) / 3, -roll_deg, roll_deg))
        m = cv2.getRotationMatrix2D((w / 2, h / 2), roll, 1.0)
        m[:, 2] += offset
        out.append(m)
    return np.array(out)


def warp_boxes(boxes_xyxy: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """The enclosing boxes of the warped boxes' corners."""
    x1, y1, x2, y2 = boxes_xyxy.T
    corners = np.stack(
        [np.stack((x, y, np.ones_like(x)), -1) for x, y in ((x1, y1), (x2, y1), (x1, y2), (x2, y2))]
    )
    moved = corners @ warp.T  # (4, N, 2)
    return np.concatenate((moved.min(0), moved.max(0)), axis=1)


def read_clip(path: Path, limit: int | None) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while limit is None or len(frames) < limit:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def track(frames: list[np.ndarray], dets: list[Detections], cfg: Config, fps: float) -> np.ndarray:
    """Rows (frame, id, x1, y1, x2, y2, score) from the project's processor (tracking only)."""
    processor = build_processor(cfg, threats=False)
    rows = []
    for i, (image, d) in enumerate(zip(frames, dets, strict=True)):
        t = processor.step(Frame(image, i, 0, i / fps), d).tracks
        rows.append(np.column_stack((np.full(len(t), i + 1), t.ids, t.boxes_xyxy, t.scores)))
    return np.concatenate(rows)


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


def score(reference: np.ndarray, shaken: np.ndarray, warps: np.ndarray) -> dict:
    """The shaken run against the reference run moved through the same warps."""
    frames = reference[:, 0].astype(np.int64)
    boxes = np.concatenate([warp_boxes(reference[frames == f, 2:6], warps[f - 1]) for f in np.unique(frames)])
    order = np.concatenate([np.flatnonzero(frames == f) for f in np.unique(frames)])
    n = len(order)
    gt = mot.GroundTruth(
        frames[order], reference[order, 1].astype(np.int64), boxes, np.ones(n, bool), np.zeros(n, bool),
        np.ones(n, np.int64), np.ones(n),
    )  # fmt: skip
    return mot.evaluate(gt, shaken, frames=np.arange(1, len(warps) + 1))


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
    original = read_clip(args.clip, args.frames)
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
                shaken = [
                    cv2.warpAffine(image, m, (hw[1], hw[0]), borderMode=cv2.BORDER_CONSTANT)
                    for image, m in zip(original, warps, strict=True)
                ]
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
