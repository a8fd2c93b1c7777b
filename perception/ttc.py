"""Time-to-collision from the rate at which a track's box grows.

An object's image size s is proportional to 1/Z, so 1/s is proportional to its distance, and for a
constant closing speed 1/s falls linearly in time. A straight line fitted to 1/s against timestamps over
a short window, evaluated now, gives TTC = (1/s)(now) / -(d(1/s)/dt) without knowing the object's real
size or distance. (Fitting ln s instead would give the TTC of the window's middle: late by half a
window, exactly when it matters.) Receding or static objects and tracks with too little history get
NaN ("unknown").

Histories live in one (slots x samples) ring buffer so the fit is vectorised across all tracks.
"""

from __future__ import annotations

import numpy as np

from perception.config import TTCConfig
from perception.types import Tracks

_SAMPLES_PER_SLOT = 64  # ring length; samples older than window_s are ignored anyway
_EDGE_MARGIN_PX = 2.0


class TTCEstimator:
    def __init__(self, cfg: TTCConfig, capacity: int = 32) -> None:
        self.cfg = cfg
        self._t_s = np.full((capacity, _SAMPLES_PER_SLOT), np.nan)
        self._inv_size = np.full((capacity, _SAMPLES_PER_SLOT), np.nan)
        self._write_pos = np.zeros(capacity, np.int64)
        self._last_t_s = np.full(capacity, -np.inf)
        self._slot_of: dict[int, int] = {}
        self._free_slots = list(range(capacity - 1, -1, -1))

    def update(self, tracks: Tracks, t_s: float, frame_hw: tuple[int, int]) -> np.ndarray:
        """Record this frame's box sizes and return TTC in seconds per track (NaN where unknown).

        A box cut by the frame edge grows as the object enters the view, not as it approaches: such
        boxes add no sample and get no TTC.
        """
        self._release_stale(t_s)
        if len(tracks) == 0:
            return np.zeros(0, np.float32)
        boxes = tracks.boxes_xyxy
        h, w = frame_hw
        m = _EDGE_MARGIN_PX
        whole = (boxes[:, 0] > m) & (boxes[:, 1] > m) & (boxes[:, 2] < w - m) & (boxes[:, 3] < h - m)
        slots = np.fromiter((self._slot(int(i)) for i in tracks.ids), np.int64, len(tracks))
        wh = boxes[:, 2:] - boxes[:, :2]
        size = np.sqrt(np.clip(wh[:, 0] * wh[:, 1], 1e-6, None))
        rec = slots[whole]
        pos = self._write_pos[rec] % _SAMPLES_PER_SLOT
        self._t_s[rec, pos] = t_s
        self._inv_size[rec, pos] = 1.0 / size[whole]
        self._write_pos[rec] += 1
        self._last_t_s[slots] = t_s
        ttc_s = self._fit(slots, t_s)
        ttc_s[~whole] = np.nan
        return ttc_s

    def _fit(self, slots: np.ndarray, t_s: float) -> np.ndarray:
        cfg = self.cfg
        dt = self._t_s[slots] - t_s  # <= 0, relative to now for numerical stability
        valid = dt >= -cfg.window_s  # NaN compares False
        n = valid.sum(1)
        n_safe = np.maximum(n, 1)
        dt = np.where(valid, dt, 0.0)
        inv_size = np.where(valid, self._inv_size[slots], 0.0)  # 1/s, proportional to distance
        dt_mean = dt.sum(1) / n_safe
        inv_mean = inv_size.sum(1) / n_safe
        dt_c = np.where(valid, dt - dt_mean[:, None], 0.0)
        var = (dt_c**2).sum(1)
        slope = np.divide(
            (dt_c * (inv_size - inv_mean[:, None])).sum(1), var, out=np.zeros_like(var), where=var > 0
        )
        inv_now = inv_mean - slope * dt_mean  # the fitted line at dt = 0
        closing = slope < 0
        ttc_s = np.divide(inv_now, -slope, out=np.full_like(slope, np.nan), where=closing)
        span = -dt.min(1)
        ok = (
            closing
            & (n >= cfg.min_samples)
            & (span >= cfg.min_span_s)
            & (ttc_s > 0)
            & (ttc_s <= cfg.max_ttc_s)
        )
        return np.where(ok, ttc_s, np.nan).astype(np.float32)

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
        stale = [
            tid for tid, slot in self._slot_of.items() if self._last_t_s[slot] < t_s - 2 * self.cfg.window_s
        ]
        for tid in stale:
            slot = self._slot_of.pop(tid)
            self._t_s[slot] = np.nan
            self._inv_size[slot] = np.nan
            self._write_pos[slot] = 0
            self._last_t_s[slot] = -np.inf
            self._free_slots.append(slot)

    def _grow(self) -> None:
        extra = len(self._write_pos)
        self._free_slots.extend(range(2 * extra - 1, extra - 1, -1))
        self._t_s = np.vstack((self._t_s, np.full((extra, _SAMPLES_PER_SLOT), np.nan)))
        self._inv_size = np.vstack((self._inv_size, np.full((extra, _SAMPLES_PER_SLOT), np.nan)))
        self._write_pos = np.concatenate((self._write_pos, np.zeros(extra, np.int64)))
        self._last_t_s = np.concatenate((self._last_t_s, np.full(extra, -np.inf)))
