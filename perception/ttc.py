"""Time-to-collision per track, from two cues fitted over a short window of timestamps, then fused.

- Scale: an object's image size s is proportional to 1/Z, so 1/s is proportional to its distance and,
  at a constant closing speed, falls linearly in time. A line fitted to 1/s and evaluated now gives
  TTC = (1/s)(now) / -(d(1/s)/dt), needing neither the object's real size nor its distance. (Fitting
  ln s would give the TTC of the window's middle: half a window late, exactly when it matters.)
- Distance: the same fit on the track's estimated distance (camera.estimate_distance), whose bottom
  edge cue is independent of the box's height.

Each fit rejects outliers (residuals beyond 3 robust sigmas, then refits) and carries an uncertainty
(OLS standard errors, propagated to TTC); the two TTCs are fused by inverse variance. Receding or static
objects, boxes cut by the frame edge, and tracks with too little history get NaN ("unknown").

Histories live in (slots x samples) ring buffers, so all fits are vectorised across tracks.
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.config import TTCConfig
from perception.types import Tracks

_SAMPLES_PER_SLOT = 64  # ring length; samples older than window_s are ignored anyway
_EDGE_MARGIN_PX = 2.0
_OUTLIER_SIGMAS = 3.0
_FLOW_GRID = 6  # points per side of the grid tracked inside each box
_FLOW_INSET = 0.2  # keep the grid this far inside the box, off the background
_FLOW_MIN_BOX_PX = 24.0  # smaller boxes: Lucas-Kanade windows would straddle the background
_FLOW_MIN_POINTS = 8
_FLOW_FB_MAX_PX = 0.7  # forward-backward disagreement beyond this: the point is not trusted
_FLOW_MARGIN_PX = 16  # room around the boxes for the points' motion between frames


def nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """np.nanmedian(values, axis=1) without its warnings, and ~10x faster on these small rows (NumPy's
    goes through masked arrays; here it is one sort, NaN sorting last): NaN for rows with no numbers."""
    if values.shape[1] == 0:
        return np.full(len(values), np.nan)
    ordered = np.sort(values, axis=1)
    count = (~np.isnan(values)).sum(1)
    rows = np.arange(len(values))
    lower, upper = ordered[rows, np.maximum(count - 1, 0) // 2], ordered[rows, count // 2 - (count == 0)]
    return np.where(count > 0, 0.5 * (lower + upper), np.nan)


def fit_ttc(
    dt_s: np.ndarray, y: np.ndarray, use: np.ndarray, cfg: TTCConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per row: TTC = a / -b (and its standard deviation) from a line y = a + b * dt fitted to y, a
    quantity proportional to distance sampled at dt <= 0 (relative to now); NaN where the samples do
    not show an approaching object."""
    for attempt in range(2):
        n = use.sum(1)
        n_safe = np.maximum(n, 1)
        x = np.where(use, dt_s, 0.0)
        yy = np.where(use, y, 0.0)
        x_mean, y_mean = x.sum(1) / n_safe, yy.sum(1) / n_safe
        xc = np.where(use, dt_s - x_mean[:, None], 0.0)
        sxx = (xc**2).sum(1)
        b = np.divide((xc * (yy - y_mean[:, None])).sum(1), sxx, out=np.zeros_like(sxx), where=sxx > 0)
        a = y_mean - b * x_mean
        resid = np.where(use, y - (a[:, None] + b[:, None] * dt_s), 0.0)
        if attempt == 0:  # drop samples beyond 3 robust sigmas (MAD), keep the rest, fit again
            mad = nanmedian_rows(np.where(use, np.abs(resid), np.nan))  # rows with no samples: NaN
            limit = _OUTLIER_SIGMAS * 1.4826 * np.nan_to_num(mad)
            kept = use & (np.abs(resid) <= limit[:, None] + 1e-12)
            use = np.where((kept.sum(1) >= cfg.min_samples)[:, None], kept, use)
    s2 = (resid**2).sum(1) / np.maximum(n - 2, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        var_b = s2 / sxx
        var_a = s2 * (1.0 / n_safe + x_mean**2 / sxx)
        cov_ab = -x_mean * s2 / sxx
        ttc = a / -b
        var_ttc = var_a / b**2 + a**2 * var_b / b**4 - 2 * a * cov_ab / b**3
    span = -np.where(use, dt_s, 0.0).min(1) if dt_s.size else np.zeros(len(dt_s))
    ok = (n >= cfg.min_samples) & (span >= cfg.min_span_s) & (sxx > 0) & (a > 0) & (b < 0)
    ok &= ttc <= cfg.max_ttc_s
    return np.where(ok, ttc, np.nan), np.where(ok, np.sqrt(np.maximum(var_ttc, 0.0)), np.nan)


class TTCEstimator:
    def __init__(self, cfg: TTCConfig | None = None, capacity: int = 32) -> None:
        self.cfg = cfg or TTCConfig()
        self._t_s = np.full((capacity, _SAMPLES_PER_SLOT), np.nan)
        self._inv_size = np.full((capacity, _SAMPLES_PER_SLOT), np.nan)
        self._dist_m = np.full((capacity, _SAMPLES_PER_SLOT), np.nan)
        self._write_pos = np.zeros(capacity, np.int64)
        self._last_t_s = np.full(capacity, -np.inf)
        self._last_box = np.full((capacity, 4), np.nan)
        self._log_size = np.full(capacity, np.nan)  # running log of image size, chained frame to frame
        self._slot_of: dict[int, int] = {}
        self._free_slots = list(range(capacity - 1, -1, -1))
        self._prev_gray: np.ndarray | None = None
        self._prev_t_s = -np.inf

    def reset(self) -> None:
        """Forget every track's history (tracking restarted: old IDs and pixel sizes mean nothing now)."""
        self.__init__(self.cfg, len(self._write_pos))

    def update(
        self, tracks: Tracks, t_s: float, frame_hw: tuple[int, int], image: np.ndarray | None = None
    ) -> np.ndarray:
        """Record this frame's sizes (and distances, where `tracks.dist_m` has them), set
        `tracks.ttc_s` and `tracks.ttc_std_s`, and return TTC in seconds per track (NaN: unknown).

        With the frame `image`, a track's size change from the previous frame is measured by optical
        flow of points inside its box (their spread grows with the object), which is far steadier than
        the detector's box; the box ratio is the fallback. A box cut by the frame edge grows as the
        object enters the view, not as it approaches: it adds no sample and gets no TTC.
        """
        self._release_stale(t_s)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image is not None else None
        n = len(tracks)
        if n == 0:
            self._prev_gray, self._prev_t_s = gray, t_s
            return tracks.ttc_s
        boxes = tracks.boxes_xyxy.astype(np.float64)
        h, w = frame_hw
        dist = tracks.dist_m
        m = _EDGE_MARGIN_PX
        whole = (boxes[:, 0] > m) & (boxes[:, 1] > m) & (boxes[:, 2] < w - m) & (boxes[:, 3] < h - m)
        slots = np.fromiter((self._slot(int(i)) for i in tracks.ids), np.int64, n)

        size = _box_size(boxes)
        last_box = self._last_box[slots]
        ratio = size / _box_size(last_box)  # NaN for new tracks
        linked = self._last_t_s[slots] == self._prev_t_s
        if gray is not None and self._prev_gray is not None and self._prev_gray.shape == gray.shape:
            rows = np.flatnonzero(linked)
            if len(rows):
                flow = flow_scale(self._prev_gray, gray, last_box[rows])
                ratio[rows] = np.where(np.isfinite(flow), flow, ratio[rows])
        log_size = self._log_size[slots]
        log_size = np.where(
            np.isfinite(log_size) & np.isfinite(ratio), log_size + np.log(ratio), np.log(size)
        )
        self._log_size[slots] = log_size
        self._last_box[slots] = boxes

        pos = self._write_pos[slots] % _SAMPLES_PER_SLOT
        self._t_s[slots, pos] = t_s
        self._inv_size[slots, pos] = np.where(whole, np.exp(-log_size), np.nan)
        self._dist_m[slots, pos] = np.where(whole, dist, np.nan)
        self._write_pos[slots] += 1
        self._last_t_s[slots] = t_s
        self._prev_gray, self._prev_t_s = gray, t_s

        dt = self._t_s[slots] - t_s  # <= 0
        recent = dt >= -self.cfg.window_s  # NaN compares False
        # Both cues in one fit: rows 0..n-1 the scale histories, n..2n-1 the distance histories.
        cues = np.vstack((self._inv_size[slots], self._dist_m[slots]))
        use = np.vstack((recent, recent)) & np.isfinite(cues)
        ttc_both, std_both = fit_ttc(np.vstack((dt, dt)), cues, use, self.cfg)
        ttc, std = _fuse(ttc_both[:n], std_both[:n], ttc_both[n:], std_both[n:])
        ttc[~whole] = np.nan
        std[~whole] = np.nan
        tracks.ttc_s[:], tracks.ttc_std_s[:] = ttc, std
        return tracks.ttc_s

    def _slot(self, track_id: int) -> int:
        slot = self._slot_of.get(track_id)
        if slot is None:
            if not self._free_slots:
                self._grow()
            slot = self._free_slots.pop()
            self._slot_of[track_id] = slot
        return slot

    def _release_stale(self, t_s: float) -> None:
        """Forget tracks not seen for two windows, so memory follows the number of live tracks."""
        if not self._slot_of:
            return
        horizon = t_s - 2 * self.cfg.window_s
        stale = [tid for tid, slot in self._slot_of.items() if self._last_t_s[slot] < horizon]
        for tid in stale:
            slot = self._slot_of.pop(tid)
            self._t_s[slot] = np.nan
            self._inv_size[slot] = np.nan
            self._dist_m[slot] = np.nan
            self._write_pos[slot] = 0
            self._last_t_s[slot] = -np.inf
            self._last_box[slot] = np.nan
            self._log_size[slot] = np.nan
            self._free_slots.append(slot)

    def _grow(self) -> None:
        extra = len(self._write_pos)
        self._free_slots.extend(range(2 * extra - 1, extra - 1, -1))
        blank = np.full((extra, _SAMPLES_PER_SLOT), np.nan)
        self._t_s = np.vstack((self._t_s, blank))
        self._inv_size = np.vstack((self._inv_size, blank))
        self._dist_m = np.vstack((self._dist_m, blank))
        self._write_pos = np.concatenate((self._write_pos, np.zeros(extra, np.int64)))
        self._last_t_s = np.concatenate((self._last_t_s, np.full(extra, -np.inf)))
        self._last_box = np.vstack((self._last_box, np.full((extra, 4), np.nan)))
        self._log_size = np.concatenate((self._log_size, np.full(extra, np.nan)))


def _box_size(boxes: np.ndarray) -> np.ndarray:
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.sqrt(np.clip(wh[:, 0] * wh[:, 1], 1e-6, None))


def flow_scale(prev_gray: np.ndarray, gray: np.ndarray, prev_boxes: np.ndarray) -> np.ndarray:
    """Per box, how much the object grew between two frames: the median ratio of distances between
    pairs of points tracked by pyramidal Lucas-Kanade from a grid inside the box (inset, to stay on
    the object). NaN where the box is too small or too few points track both ways consistently."""
    m = len(prev_boxes)
    out = np.full(m, np.nan)
    heights = prev_boxes[:, 3] - prev_boxes[:, 1]
    usable = np.flatnonzero(heights >= _FLOW_MIN_BOX_PX)
    if len(usable) == 0:
        return out
    b = prev_boxes[usable]
    frac = np.linspace(_FLOW_INSET, 1 - _FLOW_INSET, _FLOW_GRID)
    xs = b[:, 0, None] + (b[:, 2] - b[:, 0])[:, None] * frac  # (M, G)
    ys = b[:, 1, None] + (b[:, 3] - b[:, 1])[:, None] * frac
    pts = np.stack(np.broadcast_arrays(xs[:, None, :], ys[:, :, None]), axis=-1).reshape(-1, 1, 2)
    # Work on the region around the boxes only: the pyramids are built over it, not the whole frame.
    margin = _FLOW_MARGIN_PX + 0.3 * heights[usable].max()
    x0, y0 = (max(int(b[:, i].min() - margin), 0) for i in (0, 1))
    x1 = min(int(b[:, 2].max() + margin) + 1, gray.shape[1])
    y1 = min(int(b[:, 3].max() + margin) + 1, gray.shape[0])
    prev_gray, gray = prev_gray[y0:y1, x0:x1], gray[y0:y1, x0:x1]
    pts = (pts - np.array([x0, y0])).astype(np.float32)
    lk = dict(
        winSize=(7, 7), maxLevel=2, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.01)
    )
    nxt, ok_fwd, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, pts, None, **lk)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(gray, prev_gray, nxt, None, **lk)
    p = _FLOW_GRID * _FLOW_GRID
    fb_err = np.linalg.norm((back - pts).reshape(-1, p, 2), axis=2)
    valid = (ok_fwd.reshape(-1, p) == 1) & (ok_back.reshape(-1, p) == 1) & (fb_err < _FLOW_FB_MAX_PX)
    p0, p1 = pts.reshape(-1, p, 2).astype(np.float64), nxt.reshape(-1, p, 2).astype(np.float64)
    d0 = np.linalg.norm(p0[:, :, None] - p0[:, None, :], axis=3)
    d1 = np.linalg.norm(p1[:, :, None] - p1[:, None, :], axis=3)
    upper = np.triu(np.ones((p, p), bool), 1)
    pair = valid[:, :, None] & valid[:, None, :] & upper & (d0 > 0.25 * heights[usable, None, None])
    ratios = np.where(pair, d1 / np.where(d0 > 0, d0, 1), np.nan).reshape(len(usable), -1)
    enough = valid.sum(1) >= _FLOW_MIN_POINTS
    scale = nanmedian_rows(ratios)
    out[usable] = np.where(enough, scale, np.nan)
    return out


def _fuse(
    ttc_a: np.ndarray, std_a: np.ndarray, ttc_b: np.ndarray, std_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-variance combination where both are known, else whichever is."""
    both = np.isfinite(ttc_a) & np.isfinite(ttc_b)
    var_a = np.maximum(np.nan_to_num(std_a) ** 2, 1e-6)
    var_b = np.maximum(np.nan_to_num(std_b) ** 2, 1e-6)
    fused = (np.nan_to_num(ttc_a) / var_a + np.nan_to_num(ttc_b) / var_b) / (1 / var_a + 1 / var_b)
    fused_std = np.sqrt(1 / (1 / var_a + 1 / var_b))
    ttc = np.where(both, fused, np.where(np.isfinite(ttc_a), ttc_a, ttc_b))
    std = np.where(both, fused_std, np.where(np.isfinite(ttc_a), std_a, std_b))
    return ttc, std
