"""Score TTC, distance and forward collision warnings against a ground-truth CSV (see synthetic.py).

The pipeline runs on the video exactly as `perception run` would (fast mode: every frame). Each truth
row is matched to the track whose box overlaps the true box best (IoU >= 0.3). Reported:
- TTC: median relative error over frames whose true TTC is within [1, 6] s and that have an estimate,
  and the share of such frames with an estimate;
- distance: median relative error over matched frames;
- warnings: the first `warning` (and `caution`) event, and the real time left to collision then.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from perception.config import Config
from perception.detect import create_detector
from perception.events import FcwEvent
from perception.pipeline import Pipeline, Stream
from perception.processor import build_processor
from perception.sources import open_source
from perception.track import iou_matrix
from perception.types import FrameResult

MATCH_IOU = 0.3
TTC_RANGE_S = (1.0, 6.0)


class _Collect:
    """A sink that keeps what the evaluation needs per frame (small: a few numbers per track)."""

    def __init__(self) -> None:
        self.frames: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.events: list[FcwEvent] = []

    def write(self, result: FrameResult) -> None:
        t = result.tracks
        self.frames[result.frame.index] = (t.boxes_xyxy.copy(), t.ttc_s.copy(), t.dist_m.copy(), t.ids.copy())
        self.events.extend(result.events)

    def close(self) -> None:
        pass


def read_truth(path: Path) -> list[dict]:
    with path.open() as f:
        return [
            {k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def evaluate_ttc(video: Path, truth_csv: Path, model: str, cfg: Config) -> dict:
    truth = read_truth(truth_csv)
    collect = _Collect()
    source = open_source(str(video), cfg.source)
    detector = create_detector(model, cfg)
    try:
        Pipeline(detector, cfg, [Stream(source, build_processor(cfg), [collect])]).run()
    finally:
        detector.close()

    ttc_err, dist_err, in_range, matched = [], [], 0, 0
    for row in truth:
        frame = int(row["frame"])
        boxes, ttc, dist, _ = collect.frames.get(frame, (np.zeros((0, 4)),) * 4)
        if len(boxes) == 0:
            continue
        true_box = np.array([[row["x1"], row["y1"], row["x2"], row["y2"]]])
        iou = iou_matrix(true_box, boxes)[0]
        best = int(np.argmax(iou))
        if iou[best] < MATCH_IOU:
            continue
        matched += 1
        if np.isfinite(dist[best]):
            dist_err.append(abs(dist[best] - row["dist_m"]) / row["dist_m"])
        if TTC_RANGE_S[0] <= row["ttc_s"] <= TTC_RANGE_S[1]:
            in_range += 1
            if np.isfinite(ttc[best]):
                ttc_err.append(abs(ttc[best] - row["ttc_s"]) / row["ttc_s"])
    truth_in_range = sum(TTC_RANGE_S[0] <= r["ttc_s"] <= TTC_RANGE_S[1] for r in truth)
    by_frame = {int(r["frame"]): r for r in truth}

    def first(level: str) -> dict | None:
        event = next((e for e in collect.events if e.level == level), None)
        if event is None:
            return None
        row = by_frame.get(event.frame, {})
        left = row.get("collision_in_s", math.nan)
        return {
            "frame": event.frame,
            "t_s": event.source_ts_s,
            "ttc_s": event.ttc_s,
            "collision_in_s": None if not np.isfinite(left) else round(left, 3),
        }

    return {
        "frames": len(truth),
        "matched_frames": matched,
        "ttc_frames_in_range": truth_in_range,
        "ttc_estimated_share": round(len(ttc_err) / truth_in_range, 3) if truth_in_range else None,
        "ttc_median_rel_error": round(float(np.median(ttc_err)), 4) if ttc_err else None,
        "dist_median_rel_error": round(float(np.median(dist_err)), 4) if dist_err else None,
        "first_caution": first("caution"),
        "first_warning": first("warning"),
        "warnings": sum(e.level == "warning" for e in collect.events),
    }
