"""Score TTC, distance and forward collision warnings against per-frame ground truth.

The pipeline runs on the source exactly as `perception run` would (fast mode: every frame). Two kinds of
truth CSV (one row per frame, a `frame` column):

- Boxes (synthetic scenarios, perception.synthetic: `dist_m`, `ttc_s`, `collision_in_s`, `x1..y2`): each
  row is matched to the track whose box overlaps the true box best (IoU >= 0.3). Reported: TTC median
  relative error over frames whose true TTC is within [1, 6] s that have an estimate, and their share;
  distance median relative error; the first `warning` and `caution` and the real time left to collision.
- The lead's distance only (a real drive with a range sensor, e.g. lidar: `frame` and one distance column
  in metres): compared with the pipeline's lead each frame. The true TTC is distance / closing speed,
  the closing speed from a least-squares line over the distances of frames i-k..i+k (k = truth_half_window).
  Reported: lead coverage (scored frames whose lead has a TTC, and a trusted one), TTC relative error
  (median, p90) overall and by distance band, distance relative error, and every caution and warning.

Both report every caution and warning with its frame (`alarms`).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.core.events import FcwEvent
from perception.core.types import FrameResult
from perception.detect import create_detector
from perception.runtime.pipeline import Pipeline, Stream
from perception.runtime.processor import build_processor
from perception.sources.files import open_source
from perception.track.tracker import iou_matrix

MATCH_IOU = 0.3
TTC_RANGE_S = (1.0, 6.0)
DIST_BANDS_M = (0.0, 10.0, 20.0, 40.0, 80.0)


class _Collect:
    """A sink that keeps what the evaluation needs per frame (small: a few numbers per track)."""

    def __init__(self) -> None:
        self.frames: dict[int, dict[str, np.ndarray]] = {}
        self.t_s: dict[int, float] = {}
        self.events: list[FcwEvent] = []

    def write(self, result: FrameResult) -> None:
        t = result.tracks
        self.frames[result.frame.index] = {
            "boxes": t.boxes_xyxy.copy(),
            "ttc": t.ttc_s.copy(),
            "trusted": t.ttc_plausible.copy(),
            "dist": t.dist_m.copy(),
            "ids": t.ids.copy(),
            "lead": t.lead.copy(),
        }
        self.t_s[result.frame.index] = result.frame.source_ts_s
        self.events.extend(result.events)

    def close(self) -> None:
        pass


def read_truth(path: Path) -> list[dict]:
    try:
        with path.open() as f:
            rows = [
                {k: (float(v) if v not in ("", None) else math.nan) for k, v in row.items()}
                for row in csv.DictReader(f)
            ]
    except (OSError, ValueError) as exc:
        raise PerceptionError(f"truth file {path}: {exc}") from None
    if not rows or "frame" not in rows[0]:
        raise PerceptionError(f"truth file {path}: expected a header with a 'frame' column and rows")
    return rows


def parse_frames(spec: str | None) -> tuple[int, int] | None:
    """'12-46' -> (12, 46), inclusive; None -> None."""
    if spec is None:
        return None
    try:
        first, last = (int(v) for v in spec.split("-"))
    except ValueError:
        raise PerceptionError(f"--frames: expected FIRST-LAST (e.g. 12-46), got {spec!r}") from None
    if last < first:
        raise PerceptionError(f"--frames: {spec!r} ends before it starts")
    return first, last


def evaluate_ttc(
    source: Path | str,
    truth_csv: Path,
    model: str,
    cfg: Config,
    frames: tuple[int, int] | None = None,
    truth_column: str | None = None,
    truth_half_window: int = 5,
) -> dict:
    all_rows = read_truth(truth_csv)
    truth = [r for r in all_rows if frames is None or frames[0] <= r["frame"] <= frames[1]]
    collect = _Collect()
    opened = open_source(str(source), cfg.source)
    fps = opened.fps
    detector = create_detector(model, cfg)
    try:
        Pipeline(detector, cfg, [Stream(opened, build_processor(cfg), [collect])]).run()
    finally:
        detector.close()
    if {"x1", "y1", "x2", "y2"} <= set(all_rows[0]):
        scores = _score_boxes(truth, collect)
    else:
        column = truth_column or _distance_column(all_rows, truth_csv)
        if column not in all_rows[0]:
            raise PerceptionError(f"truth file {truth_csv}: no column {column!r}")
        scores = _score_lead(all_rows, truth, column, collect, fps, truth_half_window)
    scores["alarms"] = [
        {k: getattr(e, k) for k in ("frame", "level", "previous", "track_id", "ttc_s", "dist_m", "reason")}
        for e in collect.events
    ]
    scores["cautions"] = sum(e["level"] == "caution" for e in scores["alarms"])
    scores["warnings"] = sum(e["level"] == "warning" for e in scores["alarms"])
    return scores


def _distance_column(rows: list[dict], path: Path) -> str:
    names = [k for k in rows[0] if k != "frame"]
    if "dist_m" in names:
        return "dist_m"
    if len(names) != 1:
        raise PerceptionError(f"truth file {path}: name the distance column with --truth-column ({names})")
    return names[0]


def _score_boxes(truth: list[dict], collect: _Collect) -> dict:
    ttc_err, dist_err, in_range, matched = [], [], 0, 0
    for row in truth:
        got = collect.frames.get(int(row["frame"]))
        if got is None or len(got["boxes"]) == 0:
            continue
        true_box = np.array([[row["x1"], row["y1"], row["x2"], row["y2"]]])
        iou = iou_matrix(true_box, got["boxes"])[0]
        best = int(np.argmax(iou))
        if iou[best] < MATCH_IOU:
            continue
        matched += 1
        if np.isfinite(got["dist"][best]):
            dist_err.append(abs(got["dist"][best] - row["dist_m"]) / row["dist_m"])
        if TTC_RANGE_S[0] <= row["ttc_s"] <= TTC_RANGE_S[1]:
            in_range += 1
            if np.isfinite(got["ttc"][best]):
                ttc_err.append(abs(got["ttc"][best] - row["ttc_s"]) / row["ttc_s"])
    truth_in_range = sum(TTC_RANGE_S[0] <= r["ttc_s"] <= TTC_RANGE_S[1] for r in truth)
    by_frame = {int(r["frame"]): r for r in truth}

    def first(level: str) -> dict | None:
        event = next((e for e in collect.events if e.level == level), None)
        if event is None:
            return None
        left = by_frame.get(event.frame, {}).get("collision_in_s", math.nan)
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
        "ttc_median_rel_error": _round(np.median(ttc_err)) if ttc_err else None,
        "dist_median_rel_error": _round(np.median(dist_err)) if dist_err else None,
        "first_caution": first("caution"),
        "first_warning": first("warning"),
    }


def truth_ttc(dist_m: np.ndarray, dt_s: float, half_window: int) -> np.ndarray:
    """TTC per frame from a distance series: distance / -slope of a least-squares line over frames
    i-k..i+k (NaN near the ends, where any of them is missing, or where the gap is not closing)."""
    n, k = len(dist_m), half_window
    ttc = np.full(n, np.nan)
    x = np.arange(-k, k + 1) * dt_s
    for i in range(k, n - k):
        y = dist_m[i - k : i + k + 1]
        if np.isfinite(y).all():
            slope = np.polyfit(x, y, 1)[0]
            if slope < 0:
                ttc[i] = dist_m[i] / -slope
    return ttc


def _score_lead(
    all_rows: list[dict],
    scored: list[dict],
    column: str,
    collect: _Collect,
    fps: float,
    half_window: int,
) -> dict:
    frames_all = np.array([int(r["frame"]) for r in all_rows])
    dist_all = np.full(frames_all.max() + 1, np.nan)
    dist_all[frames_all] = [r[column] for r in all_rows]
    ttc_all = truth_ttc(dist_all, 1.0 / fps, half_window)

    rows = []  # per scored frame: truth distance, truth TTC, lead distance, lead TTC, trusted
    for r in scored:
        i = int(r["frame"])
        got = collect.frames.get(i)
        lead = np.flatnonzero(got["lead"]) if got is not None else np.zeros(0, int)
        if len(lead):
            j = lead[0]
            rows.append((dist_all[i], ttc_all[i], got["dist"][j], got["ttc"][j], bool(got["trusted"][j])))
        else:
            rows.append((dist_all[i], ttc_all[i], np.nan, np.nan, False))
    a = np.array(rows, dtype=float).reshape(-1, 5)
    visible = np.isfinite(a[:, 0])
    has_lead = visible & np.isfinite(a[:, 2])
    has_ttc = visible & np.isfinite(a[:, 3])
    trusted = has_ttc & (a[:, 4] > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ttc_err = np.abs(a[:, 3] - a[:, 1]) / a[:, 1]
        dist_err = np.abs(a[:, 2] - a[:, 0]) / a[:, 0]
        dist_signed = (a[:, 2] - a[:, 0]) / a[:, 0]
    both = has_ttc & np.isfinite(a[:, 1])
    bands = {}
    for lo, hi in zip(DIST_BANDS_M[:-1], DIST_BANDS_M[1:], strict=True):
        sel = both & (a[:, 0] >= lo) & (a[:, 0] < hi)
        if sel.any():
            bands[f"{lo:g}-{hi:g} m"] = {
                "frames": int(sel.sum()),
                "ttc_median_rel_error": _round(np.median(ttc_err[sel])),
                "ttc_p90_rel_error": _round(np.percentile(ttc_err[sel], 90)),
            }
    n_visible = int(visible.sum())
    return {
        "frames": len(scored),
        "lead_visible_frames": n_visible,
        "lead_found_share": _share(has_lead.sum(), n_visible),
        "lead_ttc_share": _share(has_ttc.sum(), n_visible),
        "lead_trusted_ttc_share": _share(trusted.sum(), n_visible),
        "ttc_scored_frames": int(both.sum()),
        "ttc_median_rel_error": _round(np.median(ttc_err[both])) if both.any() else None,
        "ttc_p90_rel_error": _round(np.percentile(ttc_err[both], 90)) if both.any() else None,
        "ttc_by_distance": bands,
        "dist_median_rel_error": _round(np.median(dist_err[has_lead])) if has_lead.any() else None,
        "dist_p90_rel_error": _round(np.percentile(dist_err[has_lead], 90)) if has_lead.any() else None,
        "dist_median_signed_error": _round(np.median(dist_signed[has_lead])) if has_lead.any() else None,
    }


def _share(count: int, total: int) -> float | None:
    return round(float(count) / total, 3) if total else None


def _round(value: float) -> float:
    return round(float(value), 4)
