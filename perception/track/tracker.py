"""Tracking stage: constant-velocity Kalman filters, two-stage IoU + Hungarian association, stable IDs.

Time is taken from frame timestamps, never frame counts: the filter's time step, its process noise,
track confirmation and expiry are all in seconds, so a dropped frame or a variable-rate stream is
just a longer prediction. Matching is class-consistent: a pedestrian never continues a vehicle track.

All tracks' filters are stepped together as stacked arrays (state (T, 8), covariance (T, 8, 8)), so the
cost per frame barely grows with the number of objects. The maths is filterpy's KalmanFilter
(predict; update), which the tests use as the reference.
"""

from __future__ import annotations

import enum

import numpy as np
from scipy.optimize import linear_sum_assignment

from perception.core.config import TrackerConfig
from perception.core.types import Detections, Tracks

_MIN_SIZE_PX = 1.0
_EPS_S = 1e-6
_POS, _STATE = np.arange(4), np.arange(8)  # indices of the position part of the state, of all of it


class TrackState(enum.IntEnum):
    TENTATIVE = 0  # not yet matched for confirm_s: not reported
    CONFIRMED = 1  # matched this frame or recently
    LOST = 2  # confirmed, unmatched now; kept up to max_lost_s to bridge occlusions and misses


# The states as plain ints for numpy: comparing an array with an IntEnum member costs ~3 us more each time.
_TENTATIVE, _CONFIRMED, _LOST = int(TrackState.TENTATIVE), int(TrackState.CONFIRMED), int(TrackState.LOST)


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise IoU, (len(a), len(b)), in float32, one coordinate at a time (no (N, M, 2) temporaries)."""
    a = a_xyxy.astype(np.float32, copy=False)
    b = b_xyxy.astype(np.float32, copy=False)
    ix = np.minimum(a[:, None, 2], b[None, :, 2])
    ix -= np.maximum(a[:, None, 0], b[None, :, 0])
    np.maximum(ix, 0, out=ix)
    iy = np.minimum(a[:, None, 3], b[None, :, 3])
    iy -= np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(iy, 0, out=iy)
    inter = ix
    inter *= iy
    union = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None] + (
        (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    )[None]
    union -= inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate(((boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]), axis=1)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    half = boxes[:, 2:4] / 2
    return np.concatenate((boxes[:, :2] - half, boxes[:, :2] + half), axis=1)


def _assign(score: np.ndarray, admissible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-score one-to-one assignment over admissible pairs (Hungarian), exact but cheap in the
    common case: a track and a detection that admit only each other are paired directly, and only
    the contested rest goes to the solver."""
    row_count, col_count = admissible.sum(1), admissible.sum(0)
    only_col = admissible.argmax(1)
    lone = np.flatnonzero((row_count == 1) & (col_count[only_col] == 1))
    rows, cols = [lone], [only_col[lone]]
    contested_rows = np.flatnonzero((row_count > 1) | ((row_count == 1) & (col_count[only_col] > 1)))
    if len(contested_rows):
        contested_cols = np.flatnonzero(admissible[contested_rows].any(0))
        sub = score[np.ix_(contested_rows, contested_cols)]
        r, c = linear_sum_assignment(sub, maximize=True)
        good = sub[r, c] > 0.0
        rows.append(contested_rows[r[good]])
        cols.append(contested_cols[c[good]])
    return np.concatenate(rows), np.concatenate(cols)


class KalmanBank:
    """State cx, cy, w, h, vcx, vcy, vw, vh; measurement cx, cy, w, h (H picks the first four).

    Constant-velocity Kalman filters for many boxes at once. Noise scales with box height, as in
    ByteTrack/DeepSORT, and process noise with the time step."""

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.x = np.zeros((0, 8))
        self.P = np.zeros((0, 8, 8))

    def __len__(self) -> int:
        return len(self.x)

    def add(self, z_cxcywh: np.ndarray) -> None:
        h = np.maximum(z_cxcywh[:, 3], _MIN_SIZE_PX)
        pos_var = (2 * self.cfg.measurement_noise * h) ** 2
        vel_var = (10 * self.cfg.velocity_noise * h) ** 2
        P = np.zeros((len(h), 8, 8))
        idx = np.arange(4)
        P[:, idx, idx] = pos_var[:, None]
        P[:, idx + 4, idx + 4] = vel_var[:, None]
        self.x = np.concatenate((self.x, np.concatenate((z_cxcywh, np.zeros_like(z_cxcywh)), axis=1)))
        self.P = np.concatenate((self.P, P))

    def keep(self, rows: np.ndarray) -> None:
        self.x, self.P = self.x[rows], self.P[rows]

    def process_noise(self, dt_s: float) -> np.ndarray:
        """Diagonal of Q per track, (T, 8)."""
        h = np.maximum(self.x[:, 3], _MIN_SIZE_PX)
        q_pos = (self.cfg.position_noise * h) ** 2 * dt_s
        q_vel = (self.cfg.velocity_noise * h) ** 2 * dt_s
        return np.repeat(np.stack((q_pos, q_vel), axis=1), 4, axis=1)

    def predict(self, dt_s: float) -> None:
        if dt_s <= 0 or len(self.x) == 0:
            return
        F = np.eye(8)
        F[_POS, _POS + 4] = dt_s
        q = self.process_noise(dt_s)
        self.x = self.x @ F.T
        self.P = F @ self.P @ F.T
        self.P[:, _STATE, _STATE] += q
        np.maximum(self.x[:, 2:4], _MIN_SIZE_PX, out=self.x[:, 2:4])

    def measurement_noise(self, z_cxcywh: np.ndarray) -> np.ndarray:
        """Diagonal of R per measurement, (M, 4)."""
        r = (self.cfg.measurement_noise * np.maximum(z_cxcywh[:, 3], _MIN_SIZE_PX)) ** 2
        return np.repeat(r[:, None], 4, axis=1)

    def update(self, rows: np.ndarray, z_cxcywh: np.ndarray) -> None:
        if len(rows) == 0:
            return
        x, P = self.x[rows], self.P[rows]
        R = np.zeros((len(rows), 4, 4))
        idx = np.arange(4)
        R[:, idx, idx] = self.measurement_noise(z_cxcywh)
        S = P[:, :4, :4] + R
        K = np.linalg.solve(S, P[:, :4, :]).transpose(0, 2, 1)  # P H^T S^-1, with S and P symmetric
        x = x + (K @ (z_cxcywh - x[:, :4])[:, :, None])[:, :, 0]
        # (I - KH) P, which equals filterpy's Joseph form for this optimal gain at a quarter of the cost;
        # re-symmetrised so rounding cannot accumulate.
        P = P - K @ P[:, :4, :]
        P = 0.5 * (P + P.transpose(0, 2, 1))
        np.maximum(x[:, 2:4], _MIN_SIZE_PX, out=x[:, 2:4])
        self.x[rows], self.P[rows] = x, P

    def boxes_xyxy(self) -> np.ndarray:
        return cxcywh_to_xyxy(self.x[:, :4])

    def warp(self, warp_2x3: np.ndarray) -> None:
        """Move every filter into the next frame's image coordinates after the camera moved by `warp_2x3`
        (x' = A x + t), as BoT-SORT's multi_gmc: centres and their velocities turn and scale with A, the
        shift moves the centres only. Sizes and their rates only scale: a box's extent follows the object's
        roll, not each frame's change of it (growing it by |A| every frame would inflate a coasting box)."""
        if len(self.x) == 0:
            return
        a = np.asarray(warp_2x3, np.float64)[:, :2]
        scale = float(np.sqrt(abs(np.linalg.det(a))))
        m = np.zeros((8, 8))
        m[0:2, 0:2] = m[4:6, 4:6] = a
        m[2:4, 2:4] = m[6:8, 6:8] = scale * np.eye(2)
        self.x = self.x @ m.T
        self.x[:, :2] += np.asarray(warp_2x3, np.float64)[:, 2]
        self.P = m @ self.P @ np.ascontiguousarray(m.T)
        np.maximum(self.x[:, 2:4], _MIN_SIZE_PX, out=self.x[:, 2:4])


class Tracker:
    """ByteTrack-style multi-object tracker with timestamp-driven Kalman prediction."""

    def __init__(self, cfg: TrackerConfig | None = None) -> None:
        self.cfg = cfg = cfg or TrackerConfig()
        self.reset()

    def reset(self) -> None:
        """Forget every track; IDs start again at 1 (the frame processor keeps them unique in a run)."""
        cfg = self.cfg
        self._kf = KalmanBank(cfg)
        self._ids = np.zeros(0, np.int64)
        self._label_ids = np.zeros(0, np.int32)
        self._class_ids = np.zeros(0, np.int32)
        self._scores = np.zeros(0, np.float32)
        self._states = np.zeros(0, np.int8)
        self._first_s = np.zeros(0)
        self._last_s = np.zeros(0)  # last matched
        self._class_seen_s = np.zeros(0)  # last time the track's class was looked for (its detector ran)
        self._observed = np.zeros(0, bool)  # its class is looked for in this frame
        self._next_id = 1
        self._last_t_s: float | None = None

    @property
    def active_count(self) -> int:
        """Tracks held (tentative, confirmed or lost): bounded by the objects of the last max_lost_s."""
        return len(self._ids)

    def apply_camera_motion(self, warp_2x3: np.ndarray) -> None:
        """The camera moved by `warp_2x3` (previous frame's pixels to the next frame's) since the last
        update: call before the next `update`. Prediction then starts from where each object now appears, so
        a shaking or turning camera does not carry boxes away from their objects."""
        self._kf.warp(warp_2x3)

    def update(
        self, detections: Detections, t_s: float, unobserved_classes: np.ndarray | None = None
    ) -> Tracks:
        """Advance every track to t_s, associate, and return the confirmed tracks seen this frame.

        Two stages, as in ByteTrack: confident detections first, against every track; then the weak ones
        (often the same object, partly occluded or small) only continue confirmed tracks left
        unmatched, with a stricter IoU. Only confident detections start new tracks.

        `unobserved_classes`: classes nobody looked for in this frame (an extra detector that runs on every
        k-th frame only). Their tracks are not missed: one matched when its class was last looked for is
        carried, reported at its predicted box, until its detector runs again.
        """
        cfg = self.cfg
        start_up = self._last_t_s is None
        dt_s = 0.0 if self._last_t_s is None else max(t_s - self._last_t_s, 0.0)
        self._last_t_s = t_s
        # Expire before matching: after a stall longer than max_lost_s an old track must not revive.
        self._keep(t_s - self._last_s <= cfg.max_lost_s)
        self._kf.predict(dt_s)
        predicted = self._kf.boxes_xyxy()
        self._observed = (
            np.ones(len(self._ids), bool)
            if unobserved_classes is None
            else ~np.isin(self._class_ids, unobserved_classes)
        )

        all_tracks = np.arange(len(self._ids))
        strong = np.flatnonzero(detections.scores >= cfg.high_score_threshold)
        weak = np.flatnonzero(detections.scores < cfg.high_score_threshold)
        t1, d1 = self._associate(all_tracks, strong, predicted, detections, cfg.match_iou_threshold)
        left = _others(len(self._ids), t1)
        left_confirmed = left[self._states[left] == _CONFIRMED]
        t2, d2 = self._associate(left_confirmed, weak, predicted, detections, cfg.weak_match_iou_threshold)
        matched_t, matched_d = np.concatenate((t1, t2)), np.concatenate((d1, d2))

        z = xyxy_to_cxcywh(detections.boxes_xyxy[matched_d].astype(np.float64))
        self._kf.update(matched_t, z)
        self._scores[matched_t] = detections.scores[matched_d]
        self._class_ids[matched_t] = detections.class_ids[matched_d]
        self._last_s[matched_t] = t_s
        old_enough = t_s - self._first_s[matched_t] >= cfg.confirm_s - _EPS_S
        self._states[matched_t] = np.where(
            (self._states[matched_t] != _TENTATIVE) | old_enough,
            _CONFIRMED,
            _TENTATIVE,
        )

        unmatched = np.ones(len(self._ids), bool)
        unmatched[matched_t] = False
        missed = unmatched & self._observed  # looked for and not found
        self._class_seen_s[self._observed] = t_s
        self._states[missed & (self._states == _CONFIRMED)] = _LOST
        # A tentative track missed once is dropped: most are detector flicker.
        keep = ~(missed & (self._states == _TENTATIVE))

        unclaimed = np.ones(len(detections), bool)
        unclaimed[d1] = False
        # Only confident detections left unmatched start tracks.
        new_min = max(cfg.high_score_threshold, cfg.new_track_score_threshold)
        born = np.flatnonzero(unclaimed & (detections.scores >= new_min))
        self._keep(keep)
        # At start-up every object in view is new; as in ByteTrack, they are confirmed at once rather than
        # all hidden for confirm_s.
        self._add(detections, born, t_s, confirmed=start_up or cfg.confirm_s <= 0)
        return self._report(t_s)

    def _associate(
        self,
        track_rows: np.ndarray,
        det_rows: np.ndarray,
        predicted: np.ndarray,
        detections: Detections,
        min_iou: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hungarian assignment maximising IoU between same-label pairs; returns matched rows."""
        if len(track_rows) == 0 or len(det_rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        iou = iou_matrix(predicted[track_rows], detections.boxes_xyxy[det_rows])
        iou[self._label_ids[track_rows][:, None] != detections.label_ids[det_rows][None, :]] = -1.0
        admissible = (iou >= min_iou) & (iou > 0.0)
        rows, cols = _assign(np.where(admissible, iou, 0.0), admissible)
        return track_rows[rows], det_rows[cols]

    def _keep(self, mask: np.ndarray) -> None:
        if mask.all():
            return
        self._kf.keep(mask)
        self._ids, self._label_ids, self._class_ids = (
            self._ids[mask],
            self._label_ids[mask],
            self._class_ids[mask],
        )
        self._scores, self._states = self._scores[mask], self._states[mask]
        self._first_s, self._last_s = self._first_s[mask], self._last_s[mask]
        self._class_seen_s, self._observed = self._class_seen_s[mask], self._observed[mask]

    def _add(self, detections: Detections, rows: np.ndarray, t_s: float, confirmed: bool) -> None:
        n = len(rows)
        if n == 0:
            return
        self._kf.add(xyxy_to_cxcywh(detections.boxes_xyxy[rows].astype(np.float64)))
        self._ids = np.concatenate((self._ids, np.arange(self._next_id, self._next_id + n)))
        self._next_id += n
        self._label_ids = np.concatenate((self._label_ids, detections.label_ids[rows]))
        self._class_ids = np.concatenate((self._class_ids, detections.class_ids[rows]))
        self._scores = np.concatenate((self._scores, detections.scores[rows]))
        state = _CONFIRMED if confirmed else _TENTATIVE
        self._states = np.concatenate((self._states, np.full(n, state, np.int8)))
        self._first_s = np.concatenate((self._first_s, np.full(n, t_s)))
        self._last_s = np.concatenate((self._last_s, np.full(n, t_s)))
        self._class_seen_s = np.concatenate((self._class_seen_s, np.full(n, t_s)))
        self._observed = np.concatenate((self._observed, np.ones(n, bool)))

    def _report(self, t_s: float) -> Tracks:
        seen = self._last_s == t_s
        carried = ~self._observed & (self._last_s == self._class_seen_s)  # matched when last looked for
        shown = np.flatnonzero((self._states == _CONFIRMED) & (seen | carried))
        return Tracks.new(
            self._ids[shown],
            cxcywh_to_xyxy(self._kf.x[shown, :4]),
            self._scores[shown],
            self._class_ids[shown],
            self._label_ids[shown],
        )


def _others(n: int, rows: np.ndarray) -> np.ndarray:
    """0..n-1 without `rows` (np.setdiff1d sorts both: slower for these few rows)."""
    mask = np.ones(n, bool)
    mask[rows] = False
    return np.flatnonzero(mask)
