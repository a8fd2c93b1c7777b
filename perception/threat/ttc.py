"""Time-to-collision per track, from two cues fitted over a short window of timestamps, then fused.

- Scale: an object's image size s is proportional to 1/Z, so 1/s is proportional to its distance and,
  at a constant closing speed, falls linearly in time. A line fitted to 1/s and evaluated now gives
  TTC = (1/s)(now) / -(d(1/s)/dt), needing neither the object's real size nor its distance. (Fitting
  ln s would give the TTC of the window's middle: half a window late, exactly when it matters.)
  Frame-to-frame growth comes from optical flow inside the box (perception.threat.flow) where a TTC can matter
  (`precise`), else from the box: its size, or only its width (height) while its top or bottom (a side)
  is cut by the frame border. The growths are chained into a running size, so a cut box keeps its cue.
- Distance: the same fit on the track's estimated distance (camera.estimate_distance), whose bottom
  edge cue is independent of the box's height.

Each fit rejects outliers and carries an uncertainty (perception.threat.linefit); the two TTCs are fused by
inverse variance. Where the box's bottom is cut, its distance is carried from the last measured ones by
the size change: distance x size is the object's (constant) real size times the focal length.

A TTC is marked plausible (`ttc_plausible`) only when it can be trusted: the track is old enough, its box
big enough for the flow cue, its uncertainty small, it has a distance and the closing speed it implies is
possible, and the two cues' rates of approach agree within their uncertainties (trust, once given, is
withdrawn after a window of disagreement; it stands while one cue is missing, e.g. under a cut bottom).

The same histories give each track's lateral speed (`update_lateral`, after the caller has placed the
tracks on the road). Histories live in (slots x samples) ring buffers, so all fits are vectorised.
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.core.config import TTCConfig
from perception.core.types import Tracks
from perception.threat.flow import flow_region, flow_scale
from perception.threat.linefit import fit_lines, fuse, nanmedian_rows

_SAMPLES_PER_SLOT = 64  # ring length (1 s at 60 fps); older samples than the windows are ignored anyway
_UNKNOWN, _AGREE, _DISAGREE = 0, 1, -1


class TTCEstimator:
    def __init__(self, cfg: TTCConfig | None = None, capacity: int = 32) -> None:
        self.cfg = cfg or TTCConfig()
        self._ring = _new_rings(capacity)
        self._write_pos = np.zeros(capacity, np.int64)
        self._state = _new_state(capacity)
        self._slot_of: dict[int, int] = {}
        self._free_slots = list(range(capacity - 1, -1, -1))
        self._prev_gray: np.ndarray | None = None  # the last frame, in grey where the flow may read it
        self._gray_buffers: list[np.ndarray] = []  # two frame-sized images, filled in turn
        self._prev_t_s = -np.inf
        self._frame_slots = np.zeros(0, np.int64)

    def reset(self) -> None:
        """Forget every track's history (tracking restarted: old IDs and pixel sizes mean nothing now)."""
        self.__init__(self.cfg, len(self._write_pos))

    def update(
        self,
        tracks: Tracks,
        t_s: float,
        image: np.ndarray | None = None,
        cut: np.ndarray | None = None,
        precise: np.ndarray | None = None,
        dist_rate_std_mps: np.ndarray | None = None,
    ) -> np.ndarray:
        """Record this frame's sizes and distances (`tracks.dist_m`, NaN where not measured); carry the
        distance of tracks whose bottom is cut; set `ttc_s`, `ttc_std_s`, `ttc_plausible` and return TTC
        in seconds per track (NaN: unknown).

        image: the frame, for optical flow (without it, box sizes only). cut: (N, 4) sides of each box
        cut by the frame border (camera.cut_sides). precise: tracks whose growth is measured by optical
        flow (default all): flow costs ~0.1 ms a track, box sizes nothing, but jitter by a pixel.
        dist_rate_std_mps: how unsure the distance's rate is however steady it looks (camera pitch
        motion moves the ground-plane distance: Ranging.rate_std_mps).
        """
        cfg = self.cfg
        self._release_stale(t_s)
        gray = self._gray_buffer(image.shape[:2]) if image is not None else None
        n = len(tracks)
        if n == 0:
            if gray is not None:
                self._to_gray(image, gray, self._state["last_box"][self._state["last_t_s"] == t_s])
            self._prev_gray, self._prev_t_s, self._frame_slots = gray, t_s, np.zeros(0, np.int64)
            return tracks.ttc_s
        boxes = tracks.boxes_xyxy.astype(np.float64)
        cut = np.zeros((n, 4), bool) if cut is None else cut
        slots = np.fromiter((self._slot(int(i)) for i in tracks.ids), np.int64, n)
        self._frame_slots = slots
        st = self._state
        first_t_s = st["first_t_s"][slots]
        first_t_s[np.isnan(first_t_s)] = t_s
        st["first_t_s"][slots] = first_t_s

        # Growth since the track's last frame: flow where wanted and possible, else the box.
        last_box = st["last_box"][slots]
        ratio = _box_ratio(boxes, last_box, cut | st["last_cut"][slots])
        linked = st["last_t_s"][slots] == self._prev_t_s
        by_flow = np.zeros(n, bool)
        rows = np.flatnonzero(linked if precise is None else linked & precise)
        if gray is not None:
            same_size = self._prev_gray is not None and self._prev_gray.shape == gray.shape
            # Where this frame's flow reads it, and the next frame's: its tracks are this frame's, or ones
            # last seen at this same timestamp.
            linkable = st["last_box"][st["last_t_s"] == t_s]
            self._to_gray(
                image, gray, np.vstack((last_box[rows] if same_size else last_box[:0], boxes, linkable))
            )
            if same_size and len(rows):
                flow = flow_scale(self._prev_gray, gray, last_box[rows])
                ratio[rows] = np.where(np.isfinite(flow), flow, ratio[rows])
                by_flow[rows] = np.isfinite(flow)
        log_size = st["log_size"][slots]
        chained = np.isfinite(log_size) & np.isfinite(ratio)
        grown = log_size + np.log(np.where(chained, ratio, 1.0))
        log_size = np.where(chained, grown, np.log(_box_size(boxes)))
        restart = slots[~chained]  # a new chain: older sizes are in other units
        self._ring["inv"][restart] = np.nan
        st["k_ref"][restart] = np.nan
        st["log_size"][slots], st["last_box"][slots], st["last_cut"][slots] = log_size, boxes, cut
        inv_size = np.exp(-log_size)

        dist = tracks.dist_m.astype(np.float64)
        dist_std = tracks.dist_std_m.astype(np.float64)
        pos = self._write_pos[slots] % _SAMPLES_PER_SLOT
        self._ring["t"][slots, pos] = t_s
        self._ring["inv"][slots, pos] = inv_size
        self._ring["dist"][slots, pos] = dist
        self._ring["lat"][slots, pos] = np.nan  # update_lateral fills it
        self._write_pos[slots] += 1
        st["last_t_s"][slots] = t_s
        self._prev_gray, self._prev_t_s = gray, t_s

        dt = self._ring["t"][slots] - t_s  # <= 0
        recent = dt >= -cfg.window_s  # NaN compares False
        inv_hist, dist_hist = self._ring["inv"][slots], self._ring["dist"][slots]

        # Carry distances where the bottom is cut: distance x size stays the object's real size x focal.
        k_now = nanmedian_rows(np.where(recent, dist_hist / inv_hist, np.nan))
        measured = np.isfinite(dist)
        k_ref = np.where(np.isfinite(k_now), k_now, st["k_ref"][slots])
        with np.errstate(invalid="ignore", divide="ignore"):
            rel_std = dist_std / dist
        k_rel_std = np.where(measured, rel_std, st["k_rel_std"][slots])
        st["k_ref"][slots], st["k_rel_std"][slots] = k_ref, k_rel_std
        carried = ~measured & np.isfinite(k_ref)
        dist = np.where(carried, k_ref * inv_size, dist)
        dist_std = np.where(carried, dist * k_rel_std, dist_std)
        tracks.dist_m[:], tracks.dist_std_m[:] = dist, dist_std

        # Both cues in one fit: rows 0..n-1 the scale histories, n..2n-1 the distance histories; fused by
        # the uncertainty each fit's residuals show.
        cues = np.vstack((inv_hist, dist_hist))
        use = np.vstack((recent, recent)) & np.isfinite(cues)
        fit = fit_lines(np.vstack((dt, dt)), cues, use, cfg.min_samples, cfg.min_span_s)
        ttc_both, std_both = fit.ttc(cfg.max_ttc_s)
        ttc, std = fuse(ttc_both[:n], std_both[:n], ttc_both[n:], std_both[n:])

        # Do the cues agree? Their relative rates of approach (1/TTC) are comparable even when the distance
        # is biased, and defined for receding objects too. Judged with every known noise, however well a
        # few samples line up: a box edge moving by its noise (edge_px_std, edge_rel_std) moves a box-sized
        # scale sample and a distance by that fraction of the box; the camera's pitch motion drifts the
        # ground-plane distance (dist_rate_std_mps). (Flow-measured sizes: far below a pixel.)
        height_px = np.maximum(boxes[:, 3] - boxes[:, 1], 1.0)
        rel_edge = np.hypot(cfg.edge_px_std, cfg.edge_rel_std * height_px) / height_px
        size_noise = np.where(by_flow, 0.0, (inv_size * rel_edge) ** 2)
        noise = np.concatenate((size_noise, np.where(measured, (dist * rel_edge) ** 2, 0.0)))
        drift = np.zeros(n) if dist_rate_std_mps is None else np.where(measured, dist_rate_std_mps, 0.0)
        rate, rate_std = fit.floored(noise, np.concatenate((np.zeros(n), drift**2))).rate()
        checkable = np.isfinite(rate[:n]) & np.isfinite(rate[n:])
        agree = np.abs(rate[:n] - rate[n:]) <= cfg.agreement_sigmas * np.hypot(rate_std[:n], rate_std[n:])
        # Trust is lost only when the cues keep disagreeing for a whole window: the distances come from the
        # tracker's filtered boxes, which lag behind a hard brake for a few frames where the flow does not.
        verdict, since = st["agree"][slots], st["disagree_since_s"][slots]
        since = np.where(checkable & ~agree & np.isnan(since), t_s, since)
        since = np.where(checkable & agree, np.nan, since)
        lost = checkable & ~agree & ((verdict != _AGREE) | (t_s - since >= cfg.window_s - 1e-9))
        verdict = np.where(checkable & agree, _AGREE, np.where(lost, _DISAGREE, verdict)).astype(np.int8)
        st["agree"][slots], st["disagree_since_s"][slots] = verdict, since

        with np.errstate(invalid="ignore", divide="ignore"):
            closing_mps = dist / ttc
        plausible = (
            np.isfinite(ttc)
            & (t_s - first_t_s >= cfg.min_age_s - 1e-9)
            & (boxes[:, 3] - boxes[:, 1] >= cfg.min_box_px)
            & (std <= cfg.max_rel_std * ttc)
            & (closing_mps <= cfg.max_closing_mps)  # needs a distance, measured or carried
            & (verdict == _AGREE)
        )
        tracks.ttc_s[:], tracks.ttc_std_s[:], tracks.ttc_plausible[:] = ttc, std, plausible
        return tracks.ttc_s

    def update_lateral(self, tracks: Tracks, t_s: float, measured: np.ndarray, focal_px: float) -> None:
        """After `update` on the same tracks: record `tracks.lateral_m` where `measured` (a box whose
        sides are in view) and set `lateral_speed_mps` and its uncertainty from a line fitted over
        `lateral_window_s`. A sample's least noise: a box edge moving by its noise at that distance
        (focal_px: the camera's horizontal focal length in pixels)."""
        cfg = self.cfg
        slots = self._frame_slots
        if len(slots) == 0:
            return
        pos = (self._write_pos[slots] - 1) % _SAMPLES_PER_SLOT
        self._ring["lat"][slots, pos] = np.where(measured, tracks.lateral_m, np.nan)
        dt = self._ring["t"][slots] - t_s
        lat = self._ring["lat"][slots]
        use = (dt >= -cfg.lateral_window_s) & np.isfinite(lat)
        width_px = tracks.boxes_xyxy[:, 2] - tracks.boxes_xyxy[:, 0]
        edge_m = tracks.dist_m / focal_px * np.hypot(cfg.edge_px_std, cfg.edge_rel_std * width_px)
        fit = fit_lines(dt, lat, use, cfg.min_samples, cfg.min_span_s)
        speed, std = fit.floored(edge_m.astype(np.float64) ** 2).slope()
        tracks.lateral_speed_mps[:], tracks.lateral_speed_std_mps[:] = speed, std

    def _gray_buffer(self, frame_hw: tuple[int, int]) -> np.ndarray:
        """The frame-sized grey image to fill now: not the one holding the previous frame."""
        if not self._gray_buffers or self._gray_buffers[0].shape != frame_hw:
            self._gray_buffers = [np.empty(frame_hw, np.uint8) for _ in range(2)]
        first, second = self._gray_buffers
        return second if first is self._prev_gray else first

    @staticmethod
    def _to_gray(image: np.ndarray, gray: np.ndarray, prev_boxes: np.ndarray) -> None:
        """Convert to grey only the part of the frame the flow reads around these boxes (the whole frame
        would cost more than the flow itself); the rest of `gray` is left as it was, never read."""
        region = flow_region(prev_boxes, gray.shape)
        if region is not None:
            x0, y0, x1, y1 = region
            cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY, dst=gray[y0:y1, x0:x1])

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
        slots = np.fromiter(self._slot_of.values(), np.int64, len(self._slot_of))
        stale = np.flatnonzero(self._state["last_t_s"][slots] < horizon)
        if not len(stale):
            return
        ids = list(self._slot_of)  # in the order of `slots`
        freed = np.array([self._slot_of.pop(ids[k]) for k in stale])
        for ring in self._ring.values():
            ring[freed] = np.nan
        self._write_pos[freed] = 0
        for name, blank in _new_state(1).items():
            self._state[name][freed] = blank[0]
        self._free_slots.extend(freed.tolist())

    def _grow(self) -> None:
        extra = len(self._write_pos)
        self._free_slots.extend(range(2 * extra - 1, extra - 1, -1))
        rings, state = _new_rings(extra), _new_state(extra)
        self._ring = {k: np.vstack((v, rings[k])) for k, v in self._ring.items()}
        self._write_pos = np.concatenate((self._write_pos, np.zeros(extra, np.int64)))
        self._state = {k: np.concatenate((v, state[k])) for k, v in self._state.items()}


def _new_rings(capacity: int) -> dict[str, np.ndarray]:
    """Per slot, the samples: time, inverse size, measured distance, measured lateral offset."""
    return {name: np.full((capacity, _SAMPLES_PER_SLOT), np.nan) for name in ("t", "inv", "dist", "lat")}


def _new_state(capacity: int) -> dict[str, np.ndarray]:
    """Per slot, what carries from frame to frame."""
    return {
        "last_t_s": np.full(capacity, -np.inf),
        "first_t_s": np.full(capacity, np.nan),
        "last_box": np.full((capacity, 4), np.nan),
        "last_cut": np.zeros((capacity, 4), bool),
        "log_size": np.full(capacity, np.nan),  # running log of image size, chained frame to frame
        "k_ref": np.full(capacity, np.nan),  # distance x size, from measured distances
        "k_rel_std": np.full(capacity, np.nan),  # relative uncertainty of the last measured distance
        "agree": np.zeros(capacity, np.int8),  # the cues' agreement verdict
        "disagree_since_s": np.full(capacity, np.nan),  # they have disagreed since
    }


def _box_size(boxes: np.ndarray) -> np.ndarray:
    wh = boxes[:, 2:] - boxes[:, :2]
    return np.sqrt(np.clip(wh[:, 0] * wh[:, 1], 1e-6, None))


def _box_ratio(boxes: np.ndarray, last_boxes: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """Growth from the previous box: its size where no side was cut (now or then), its width where
    only the top or bottom was, its height where only a left or right side was; else NaN (a cut box
    grows as the object enters the view, not as it approaches)."""
    wh, last_wh = boxes[:, 2:] - boxes[:, :2], last_boxes[:, 2:] - last_boxes[:, :2]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_w, ratio_h = wh[:, 0] / last_wh[:, 0], wh[:, 1] / last_wh[:, 1]
    sides_cut, ends_cut = cut[:, 0] | cut[:, 2], cut[:, 1] | cut[:, 3]
    ratio = np.where(sides_cut, ratio_h, np.where(ends_cut, ratio_w, np.sqrt(ratio_w * ratio_h)))
    return np.where((sides_cut & ends_cut) | ~(ratio > 0), np.nan, ratio)
