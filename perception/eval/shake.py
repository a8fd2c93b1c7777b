"""Tracking on a shaking camera: known per-frame transforms of a clip, and the score of a tracker's run on
the shaken copy against its own run on the original moved through the same transforms (benchmarks/shake.py
and the tests use it).

The shake is a seeded, bounded random walk: translation up to `step_px` a frame in x and y (the total within
2 x step_px), roll about the image centre up to a third of `roll_deg` a frame (the total within +-roll_deg).
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.core.config import Config
from perception.core.types import Detections, Frame
from perception.eval import mot
from perception.runtime.processor import build_processor

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


def shake(frames: list[np.ndarray], warps: np.ndarray) -> list[np.ndarray]:
    """The frames moved by their warps (uncovered borders black, as a stabiliser's crop would leave)."""
    h, w = frames[0].shape[:2]
    return [
        cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_CONSTANT)
        for image, m in zip(frames, warps, strict=True)
    ]


def track(frames: list[np.ndarray], dets: list[Detections], cfg: Config, fps: float) -> np.ndarray:
    """Rows (frame, id, x1, y1, x2, y2, score) from the project's processor (tracking only)."""
    processor = build_processor(cfg, threats=False)
    rows = []
    for i, (image, d) in enumerate(zip(frames, dets, strict=True)):
        t = processor.step(Frame(image, i, 0, i / fps), d).tracks
        rows.append(np.column_stack((np.full(len(t), i + 1), t.ids, t.boxes_xyxy, t.scores)))
    return np.concatenate(rows)


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
