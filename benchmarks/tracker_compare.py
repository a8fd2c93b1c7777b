"""This project's tracker against Ultralytics' BYTETracker, fed the same detections in the same run.

    pip install -e ".[eval]" ultralytics lap   # BYTETracker comes with Ultralytics (and torch)
    python benchmarks/tracker_compare.py [--seq ../shared/mot/MOT15/TUD-Campus] [--seeds 5]

1. Accuracy on a MOTChallenge sequence's public detections, scored with py-motmetrics (IoU 0.5): all
   frames; every 2nd frame removed; a random 30 % of frames removed (timestamps kept, several seeds).
   Removed frames are neither tracked nor scored: they are frames a live source dropped.
2. Cost per frame at 10, 50 and 200 objects (synthetic moving boxes), median over frames after warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from perception.core.config import load_config
from perception.core.types import Detections
from perception.eval import mot
from perception.track.tracker import Tracker

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
REPO = Path(__file__).resolve().parents[1]


class _Boxes:
    """The slice of Ultralytics' `Boxes` that BYTETracker reads: conf, cls, xywh, boolean indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy, self.conf, self.cls = xyxy, conf, cls

    @property
    def xywh(self) -> np.ndarray:
        return np.concatenate(
            ((self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2, self.xyxy[:, 2:] - self.xyxy[:, :2]), 1
        )

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> _Boxes:
        return _Boxes(self.xyxy[index], self.conf[index], self.cls[index])


def byte_tracker(thresholds: dict | None = None):
    from ultralytics.trackers.byte_tracker import BYTETracker

    args = dict(
        track_high_thresh=0.25,
        track_low_thresh=0.1,
        new_track_thresh=0.25,
        track_buffer=30,
        match_thresh=0.8,
        fuse_score=True,
    )  # Ultralytics' bytetrack.yaml
    args.update(thresholds or {})
    return BYTETracker(SimpleNamespace(**args))


def run_byte(
    detections: dict[int, Detections], frames: np.ndarray, thresholds: dict | None = None
) -> np.ndarray:
    tracker = byte_tracker(thresholds)
    rows = []
    empty = Detections.empty()
    for frame in frames:
        d = detections.get(int(frame), empty)
        out = tracker.update(
            _Boxes(d.boxes_xyxy.astype(np.float64), d.scores, d.class_ids.astype(np.float64))
        )
        if len(out):
            rows.append(np.column_stack((np.full(len(out), frame), out[:, 4], out[:, :4], out[:, 5])))
    return np.concatenate(rows) if rows else np.zeros((0, 7))


def accuracy(seq: Path, seeds: int) -> None:
    info = mot.read_seqinfo(seq)
    gt = mot.read_ground_truth(seq / "gt" / "gt.txt")
    dets = mot.read_detections(seq / "det" / "det.txt")
    cfg = load_config(REPO / "configs" / "mot_public_detections.yaml")
    all_frames = np.arange(1, int(gt.frames.max()) + 1)
    variants = {"all frames": [all_frames], "every 2nd frame removed": [all_frames[::2]]}
    variants["random 30 % removed"] = [
        np.sort(np.random.default_rng(seed).choice(all_frames, round(0.7 * len(all_frames)), replace=False))
        for seed in range(seeds)
    ]
    same = dict(
        track_high_thresh=cfg.tracker.high_score_threshold,
        new_track_thresh=cfg.tracker.new_track_score_threshold,
    )
    trackers = {
        "perception (configs/mot_public_detections.yaml)": lambda f: mot.track_sequence(dets, f, info, cfg),
        "Ultralytics BYTETracker (bytetrack.yaml defaults)": lambda f: run_byte(dets, f),
        "Ultralytics BYTETracker (same score thresholds)": lambda f: run_byte(dets, f, same),
    }
    print(
        f"\n{info.name}: {len(all_frames)} frames at {info.fps:g} fps, {len(gt.ids)} gt boxes, "
        "public detections"
    )
    print("| frames | tracker | MOTA | IDF1 | ID switches | FP | FN | recall | precision |")
    print("|---|---|---|---|---|---|---|---|---|")
    for variant, frame_sets in variants.items():
        for name, run in trackers.items():
            ms = [mot.evaluate(gt, run(f), frames=f) for f in frame_sets]
            agg = {
                k: statistics.mean(m[k] for m in ms)
                for k in ("mota", "idf1", "id_switches", "fp", "fn", "recall", "precision")
            }
            label = variant + (f" (mean of {len(ms)} seeds)" if len(ms) > 1 else "")
            print(
                f"| {label} | {name} | {agg['mota']:.3f} | {agg['idf1']:.3f} | {agg['id_switches']:.1f} | "
                f"{agg['fp']:.1f} | {agg['fn']:.1f} | {agg['recall']:.3f} | {agg['precision']:.3f} |"
            )


def synthetic_scene(n_objects: int, n_frames: int, seed: int = 0) -> list[Detections]:
    """n objects moving at constant velocity on a 1920x1080 frame with jittered boxes."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform([100, 100], [1820, 980], (n_objects, 2))
    size = rng.uniform([20, 40], [80, 160], (n_objects, 2))
    velocity = rng.uniform(-3, 3, (n_objects, 2))
    frames = []
    for i in range(n_frames):
        c = centre + velocity * i + rng.normal(0, 1.0, centre.shape)
        boxes = np.concatenate((c - size / 2, c + size / 2), 1).astype(np.float32)
        scores = rng.uniform(0.3, 0.95, n_objects).astype(np.float32)
        frames.append(Detections(boxes, scores, np.zeros(n_objects, np.int32), np.zeros(n_objects, np.int32)))
    return frames


def cost(counts: list[int], n_frames: int = 300, warmup: int = 30) -> None:
    cfg = load_config()
    print(
        f"\nTracker cost per frame (ms), {n_frames} frames, median after {warmup} warm-up frames, "
        f"{os.cpu_count()} CPUs"
    )
    print("| objects | perception p50 | perception p99 | BYTETracker p50 | BYTETracker p99 |")
    print("|---|---|---|---|---|")
    for n in counts:
        scene = synthetic_scene(n, n_frames)
        ours, theirs = Tracker(cfg.tracker), byte_tracker()
        t_ours, t_theirs = [], []
        for i, d in enumerate(scene):  # alternate the two, so machine drift hits both alike
            t0 = time.perf_counter()
            ours.update(d, i / 25)
            t1 = time.perf_counter()
            theirs.update(_Boxes(d.boxes_xyxy.astype(np.float64), d.scores, d.class_ids.astype(np.float64)))
            t2 = time.perf_counter()
            if i >= warmup:
                t_ours.append((t1 - t0) * 1e3)
                t_theirs.append((t2 - t1) * 1e3)
        ours_ms, theirs_ms = np.percentile(t_ours, [50, 99]), np.percentile(t_theirs, [50, 99])
        print(f"| {n} | {ours_ms[0]:.2f} | {ours_ms[1]:.2f} | {theirs_ms[0]:.2f} | {theirs_ms[1]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq", type=Path, default=ASSETS / "mot" / "MOT15" / "TUD-Campus")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--objects", type=int, nargs="+", default=[10, 50, 200])
    args = parser.parse_args()
    accuracy(args.seq, args.seeds)
    cost(args.objects)


if __name__ == "__main__":
    main()
