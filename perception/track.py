"""Tracking stage: a Kalman filter per object, IoU + Hungarian association, stable integer IDs.

Time steps come from frame timestamps, never frame counts, so a dropped frame is simply a longer
prediction. Matching is class-consistent: a pedestrian never continues a vehicle's track.
"""

from __future__ import annotations

import enum

import numpy as np
from filterpy.kalman import KalmanFilter
from scipy.optimize import linear_sum_assignment

from perception.config import TrackerConfig
from perception.types import Detections, Tracks

_STATE_DIM, _MEAS_DIM = 8, 4  # state: cx, cy, w, h and their velocities; measurement: cx, cy, w, h
_MIN_SIZE_PX = 1.0


class TrackState(enum.Enum):
    TENTATIVE = "tentative"  # seen fewer than min_hits times: not reported yet
    CONFIRMED = "confirmed"  # matched this frame or recently
    LOST = "lost"  # confirmed, unmatched now; kept up to max_lost_s to bridge occlusions and misses
    REMOVED = "removed"


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """Pairwise IoU, (len(a), len(b)), without Python loops."""
    top_left = np.maximum(a_xyxy[:, None, :2], b_xyxy[None, :, :2])
    bottom_right = np.minimum(a_xyxy[:, None, 2:], b_xyxy[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(a_xyxy[:, 2:] - a_xyxy[:, :2], axis=1)
    area_b = np.prod(b_xyxy[:, 2:] - b_xyxy[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _xyxy_to_z(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]])


class _Track:
    """One object's filter and lifecycle. Noise scales with box height, as in ByteTrack/DeepSORT."""

    def __init__(
        self, track_id: int, box: np.ndarray, detections: Detections, row: int, t_s: float, cfg: TrackerConfig
    ) -> None:
        self.id = track_id
        self.cfg = cfg
        self.kf = KalmanFilter(dim_x=_STATE_DIM, dim_z=_MEAS_DIM)
        self.kf.H = np.eye(_MEAS_DIM, _STATE_DIM)
        z = _xyxy_to_z(box)
        self.kf.x = np.concatenate((z, np.zeros(4)))[:, None]
        h = max(z[3], _MIN_SIZE_PX)
        pos_std, vel_std = 2 * cfg.measurement_noise * h, 10 * cfg.velocity_noise * h
        self.kf.P = np.diag([pos_std**2] * 4 + [vel_std**2] * 4)
        self.state = TrackState.TENTATIVE
        self.hits = 1
        self.last_seen_s = t_s
        self._take(detections, row)

    def _take(self, detections: Detections, row: int) -> None:
        self.score = float(detections.scores[row])
        self.class_id = int(detections.class_ids[row])
        self.label_id = int(detections.label_ids[row])

    def predict(self, dt_s: float) -> np.ndarray:
        if dt_s > 0:
            F = np.eye(_STATE_DIM)
            F[:4, 4:] = np.eye(4) * dt_s
            h = max(float(self.kf.x[3, 0]), _MIN_SIZE_PX)
            q_pos = (self.cfg.position_noise * h) ** 2 * dt_s
            q_vel = (self.cfg.velocity_noise * h) ** 2 * dt_s
            self.kf.predict(F=F, Q=np.diag([q_pos] * 4 + [q_vel] * 4))
            self.kf.x[2:4, 0] = np.maximum(self.kf.x[2:4, 0], _MIN_SIZE_PX)
        return self.box

    def update(self, box: np.ndarray, detections: Detections, row: int, t_s: float) -> None:
        z = _xyxy_to_z(box)
        r = (self.cfg.measurement_noise * max(z[3], _MIN_SIZE_PX)) ** 2
        self.kf.update(z[:, None], R=np.eye(_MEAS_DIM) * r)
        self.kf.x[2:4, 0] = np.maximum(self.kf.x[2:4, 0], _MIN_SIZE_PX)
        self.hits += 1
        self.last_seen_s = t_s
        self._take(detections, row)
        if self.state is TrackState.LOST or self.hits >= self.cfg.min_hits:
            self.state = TrackState.CONFIRMED

    @property
    def box(self) -> np.ndarray:
        cx, cy, w, h = self.kf.x[:4, 0]
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class Tracker:
    """SORT-style multi-object tracker with a lost state and timestamp-driven prediction."""

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._last_t_s: float | None = None

    def update(self, detections: Detections, t_s: float) -> Tracks:
        """Advance every track to t_s, associate, and return the confirmed tracks seen this frame.

        Two stages, as in ByteTrack: confident detections first, against every track; then the
        weak ones (often the same object, partly occluded or small) only continue confirmed tracks
        left unmatched, with a stricter IoU. Only confident detections start new tracks.
        """
        cfg = self.cfg
        dt_s = 0.0 if self._last_t_s is None else max(t_s - self._last_t_s, 0.0)
        self._last_t_s = t_s
        # Expire before matching: after a stall longer than max_lost_s an old track must not revive.
        self._tracks = [trk for trk in self._tracks if t_s - trk.last_seen_s <= cfg.max_lost_s]
        predicted = np.array([trk.predict(dt_s) for trk in self._tracks]).reshape(-1, 4)
        track_labels = np.array([trk.label_id for trk in self._tracks], np.int32)
        det_boxes = detections.boxes_xyxy.astype(np.float64, copy=False)

        all_tracks = np.arange(len(self._tracks))
        strong = np.flatnonzero(detections.scores >= cfg.high_score_threshold)
        weak = np.flatnonzero(detections.scores < cfg.high_score_threshold)
        t1, d1 = self._associate(
            all_tracks, strong, predicted, track_labels, detections, cfg.match_iou_threshold
        )
        left = np.setdiff1d(all_tracks, t1)
        confirmed = np.array([self._tracks[i].state is TrackState.CONFIRMED for i in left], bool)
        t2, d2 = self._associate(
            left[confirmed], weak, predicted, track_labels, detections, cfg.weak_match_iou_threshold
        )
        for ti, di in zip(np.concatenate((t1, t2)), np.concatenate((d1, d2)), strict=True):
            self._tracks[ti].update(det_boxes[di], detections, di, t_s)

        for ti in np.setdiff1d(left, t2):
            trk = self._tracks[ti]
            if trk.state is TrackState.TENTATIVE:
                trk.state = TrackState.REMOVED
            else:
                trk.state = TrackState.LOST

        unmatched_strong = np.setdiff1d(strong, d1)
        for di in unmatched_strong[detections.scores[unmatched_strong] >= cfg.new_track_score_threshold]:
            self._tracks.append(_Track(self._next_id, det_boxes[di], detections, di, t_s, cfg))
            self._next_id += 1
        self._tracks = [trk for trk in self._tracks if trk.state is not TrackState.REMOVED]
        return self._report(t_s)

    @staticmethod
    def _associate(
        track_rows: np.ndarray,
        det_rows: np.ndarray,
        predicted: np.ndarray,
        track_labels: np.ndarray,
        detections: Detections,
        min_iou: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hungarian assignment maximising IoU between same-label pairs; returns matched rows."""
        if len(track_rows) == 0 or len(det_rows) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        iou = iou_matrix(predicted[track_rows], detections.boxes_xyxy[det_rows])
        iou[track_labels[track_rows][:, None] != detections.label_ids[det_rows][None, :]] = -1.0
        rows, cols = linear_sum_assignment(-iou)
        good = (iou[rows, cols] >= min_iou) & (iou[rows, cols] > 0.0)  # never a pair that doesn't overlap
        return track_rows[rows[good]], det_rows[cols[good]]

    def _report(self, t_s: float) -> Tracks:
        shown = [trk for trk in self._tracks if trk.state is TrackState.CONFIRMED and trk.last_seen_s == t_s]
        if not shown:
            return Tracks.empty()
        return Tracks(
            ids=np.array([trk.id for trk in shown], np.int64),
            boxes_xyxy=np.array([trk.box for trk in shown], np.float32),
            scores=np.array([trk.score for trk in shown], np.float32),
            class_ids=np.array([trk.class_id for trk in shown], np.int32),
            label_ids=np.array([trk.label_id for trk in shown], np.int32),
            ttc_s=np.full(len(shown), np.nan, np.float32),
        )

    @property
    def active_count(self) -> int:
        return len(self._tracks)
