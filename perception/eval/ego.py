"""Score the ego motion read from the image (speed, yaw rate, stopped) against per-frame ground truth.

The pipeline runs on the source exactly as `perception run` would (fast mode: every frame). The truth CSV
has one row per frame: `frame,t_s,speed_mps[,yaw_rate_dps]` (the motion from the previous frame to this
one; yaw rate turning right positive), e.g. from a drive's poses or its CAN bus.

Reported: coverage (scored frames with an estimate), speed error (absolute, m/s, and relative to the true
speed: median and p90), yaw-rate error (deg/s: median and p90), turn direction agreement over the frames
turning faster than 5 deg/s, frames read as stopped (and how many of them truly were: below 0.3 m/s).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.core.types import EgoMotion, FrameResult
from perception.detect import create_detector
from perception.eval.ttc import read_truth
from perception.runtime.pipeline import Pipeline, Stream
from perception.runtime.processor import build_processor
from perception.sources.files import open_source

TURNING_DPS = 5.0  # turn direction is scored where the truth turns at least this fast
STOPPED_MPS = 0.3  # a true speed below this counts as stopped


class _Collect:
    """A sink keeping each frame's ego motion."""

    def __init__(self) -> None:
        self.ego: dict[int, EgoMotion] = {}

    def write(self, result: FrameResult) -> None:
        self.ego[result.frame.index] = result.ego

    def close(self) -> None:
        pass


def evaluate_ego(source: Path | str, truth_csv: Path, model: str, cfg: Config) -> dict:
    """Run the pipeline on `source` and score its ego motion against `truth_csv`."""
    truth = read_truth(truth_csv)
    if "speed_mps" not in truth[0]:
        raise PerceptionError(f"truth file {truth_csv}: expected columns frame,t_s,speed_mps[,yaw_rate_dps]")
    collect = _Collect()
    opened = open_source(str(source), cfg.source)
    detector = create_detector(model, cfg)
    try:
        Pipeline(detector, cfg, [Stream(opened, build_processor(cfg), [collect])]).run()
    finally:
        detector.close()
    return score_ego(truth, collect.ego)


def score_ego(truth: list[dict], estimates: dict[int, EgoMotion]) -> dict:
    """The scores from truth rows and estimates by frame index."""
    rows = [r for r in truth if int(r["frame"]) in estimates]
    true_speed = np.array([r["speed_mps"] for r in rows], float)
    speed = np.array([estimates[int(r["frame"])].speed_mps for r in rows], float)
    has_yaw = bool(rows) and "yaw_rate_dps" in rows[0]
    true_yaw = np.array([r.get("yaw_rate_dps", math.nan) for r in rows], float)
    yaw = np.array([estimates[int(r["frame"])].yaw_rate_dps for r in rows], float)
    stopped = np.array([estimates[int(r["frame"])].stopped is True for r in rows])
    speed_err = np.abs(speed - true_speed)
    rel_err = speed_err / np.where(true_speed >= STOPPED_MPS, true_speed, np.nan)
    scores: dict = {
        "frames": len(rows),
        "speed_coverage": _share(int(np.isfinite(speed).sum()), len(rows)),
        "speed_error_mps": _stats(speed_err),
        "speed_rel_error": _stats(rel_err),
        "stopped_frames": int(stopped.sum()),
        "stopped_frames_truly_stopped": int((stopped & (true_speed < STOPPED_MPS)).sum()),
        "truly_stopped_frames": int((true_speed < STOPPED_MPS).sum()),
    }
    if has_yaw:
        turning = np.abs(true_yaw) > TURNING_DPS
        judged = turning & np.isfinite(yaw)
        scores["yaw_coverage"] = _share(int(np.isfinite(yaw).sum()), len(rows))
        scores["yaw_rate_error_dps"] = _stats(np.abs(yaw - true_yaw))
        scores["turning_frames"] = int(turning.sum())
        scores["turn_direction_agreement"] = _share(
            int((np.sign(yaw[judged]) == np.sign(true_yaw[judged])).sum()), int(turning.sum())
        )
    return scores


def _stats(errors: np.ndarray) -> dict[str, float | None]:
    finite = errors[np.isfinite(errors)]
    if len(finite) == 0:
        return {"median": None, "p90": None}
    return {"median": round(float(np.median(finite)), 4), "p90": round(float(np.percentile(finite, 90)), 4)}


def _share(count: int, total: int) -> float | None:
    return round(count / total, 4) if total else None
