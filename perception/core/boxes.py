"""Matching detections to ground-truth boxes at an IoU: shared by the detector's accuracy check (the auto
choice of reduced precision) and evaluation (perception/eval/detection.py)."""

from __future__ import annotations

import numpy as np


def overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, M) IoU and intersection over a's area, for xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / (area_a[:, None] + area_b[None, :] - inter), inter / area_a[:, None]


def match_image(
    boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, ignore: np.ndarray, iou_threshold: float = 0.5
) -> np.ndarray:
    """Per detection (in the given order): 1 true positive, 0 false positive, -1 ignored."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    iou_gt = overlaps(boxes[order], gt)[0]
    iou_ign, inside = overlaps(boxes[order], ignore)
    on_ignored = ((iou_ign >= iou_threshold) | (inside >= 0.5)).any(1)
    outcome = np.zeros(len(order), np.int8)
    taken = np.zeros(len(gt), bool)
    for i in range(len(order)):  # sequential by nature: each match takes its box from later detections
        candidates = np.where(taken, -1.0, iou_gt[i])
        j = int(np.argmax(candidates)) if len(candidates) else -1
        if j >= 0 and candidates[j] >= iou_threshold:
            taken[j] = True
            outcome[i] = 1
        elif on_ignored[i]:
            outcome[i] = -1
    result = np.empty_like(outcome)
    result[order] = outcome
    return result
