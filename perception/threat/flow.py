"""Optical flow measures how much an object grew between two frames, far more steadily than its box.

Points on a grid inside the object's previous box are tracked by pyramidal Lucas-Kanade into the new
frame and back; the distances between pairs of points that track consistently grow with the object's
image size. Only the points matter, not the box's edges: a box cut by the frame border still measures
the growth of the part in view.
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.threat.linefit import nanmedian_rows

MIN_BOX_PX = 24.0  # smaller boxes: Lucas-Kanade windows would straddle the background
_FLOW_GRID = 6  # points per side of the grid tracked inside each box
_FLOW_INSET = 0.2  # keep the grid this far inside the box, off the background
_FLOW_MIN_POINTS = 8
_FLOW_FB_MAX_PX = 0.7  # forward-backward disagreement beyond this: the point is not trusted
_FLOW_MARGIN_PX = 16  # room around the boxes for the points' motion between frames
_GRID_FRAC = np.linspace(_FLOW_INSET, 1 - _FLOW_INSET, _FLOW_GRID)
_PAIR_I, _PAIR_J = np.triu_indices(_FLOW_GRID * _FLOW_GRID, 1)  # each pair of grid points once
_LK = dict(winSize=(7, 7), maxLevel=2, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.01))


def flow_region(prev_boxes: np.ndarray, frame_hw: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """The part of both frames (x0, y0, x1, y1) that `flow_scale` reads for these boxes: around those big
    enough to measure, with room for their motion; None where none is. It grows with the set of boxes, so
    the region of some boxes lies within that of any set holding them."""
    heights = prev_boxes[:, 3] - prev_boxes[:, 1]
    b = prev_boxes[heights >= MIN_BOX_PX]
    if len(b) == 0:
        return None
    margin = _FLOW_MARGIN_PX + 0.3 * heights[heights >= MIN_BOX_PX].max()
    x0, y0 = (max(int(b[:, i].min() - margin), 0) for i in (0, 1))
    x1 = min(int(b[:, 2].max() + margin) + 1, frame_hw[1])
    y1 = min(int(b[:, 3].max() + margin) + 1, frame_hw[0])
    return x0, y0, x1, y1


def flow_scale(prev_gray: np.ndarray, gray: np.ndarray, prev_boxes: np.ndarray) -> np.ndarray:
    """Per box, how much the object grew between two frames: the median ratio of distances between
    pairs of points tracked by pyramidal Lucas-Kanade from a grid inside the box (inset, to stay on
    the object). NaN where the box is too small or too few points track both ways consistently.
    Only `flow_region(prev_boxes)` of either frame is read."""
    m = len(prev_boxes)
    out = np.full(m, np.nan)
    heights = prev_boxes[:, 3] - prev_boxes[:, 1]
    usable = np.flatnonzero(heights >= MIN_BOX_PX)
    if len(usable) == 0:
        return out
    b = prev_boxes[usable]
    xs = b[:, 0, None] + (b[:, 2] - b[:, 0])[:, None] * _GRID_FRAC  # (M, G)
    ys = b[:, 1, None] + (b[:, 3] - b[:, 1])[:, None] * _GRID_FRAC
    pts = np.stack(np.broadcast_arrays(xs[:, None, :], ys[:, :, None]), axis=-1).reshape(-1, 1, 2)
    # Work on the region around the boxes only: the pyramids are built over it, not the whole frame.
    x0, y0, x1, y1 = flow_region(prev_boxes, gray.shape[:2])
    prev_gray, gray = prev_gray[y0:y1, x0:x1], gray[y0:y1, x0:x1]
    pts = (pts - np.array([x0, y0])).astype(np.float32)
    nxt, ok_fwd, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, pts, None, **_LK)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(gray, prev_gray, nxt, None, **_LK)
    p = _FLOW_GRID * _FLOW_GRID
    fb = (back - pts).reshape(-1, p, 2)
    fb_err = np.sqrt(fb[..., 0] * fb[..., 0] + fb[..., 1] * fb[..., 1])  # np.linalg.norm's sum, in float32
    valid = (ok_fwd.reshape(-1, p) == 1) & (ok_back.reshape(-1, p) == 1) & (fb_err < _FLOW_FB_MAX_PX)
    p0, p1 = pts.reshape(-1, p, 2).astype(np.float64), nxt.reshape(-1, p, 2).astype(np.float64)
    d0, d1 = _pair_distances(p0), _pair_distances(p1)  # (M, pairs)
    pair = valid[:, _PAIR_I] & valid[:, _PAIR_J] & (d0 > 0.25 * heights[usable, None])
    ratios = np.where(pair, d1 / np.where(d0 > 0, d0, 1), np.nan)
    enough = valid.sum(1) >= _FLOW_MIN_POINTS
    scale = nanmedian_rows(ratios)
    out[usable] = np.where(enough, scale, np.nan)
    return out


def _pair_distances(points: np.ndarray) -> np.ndarray:
    """(M, P, 2) points -> (M, P (P - 1) / 2) distances between each pair of a row's points, once each."""
    d = points[:, _PAIR_I] - points[:, _PAIR_J]
    return np.sqrt(d[..., 0] * d[..., 0] + d[..., 1] * d[..., 1])
