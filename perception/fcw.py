"""Forward collision warning: which tracks are in the ego path, and when to warn.

Only tracks inside a straight ego corridor (lane_width_m wide, projected through the camera onto the
road) can threaten; the others never raise a warning. The level (none / caution / warning) follows the
smallest in-path TTC through a small state machine, because a warning that flickers or cries wolf gets
ignored: a higher level must hold for min_persistence_s before it is raised, a lower one for
min_clear_s (with thresholds relaxed by `hysteresis`) before it drops, and after a warning ends
another is held back for cooldown_s.
"""

from __future__ import annotations

import numpy as np

from perception.camera import Camera
from perception.config import FCWConfig
from perception.events import FcwEvent, WarningLevel
from perception.types import CollisionWarning, Tracks


def in_path(tracks: Tracks, camera: Camera, lane_width_m: float, label_mask: np.ndarray) -> np.ndarray:
    """Tracks whose box overlaps the ego corridor at the row where they meet the road."""
    if len(tracks) == 0:
        return np.zeros(0, bool)
    bottom = tracks.boxes_xyxy[:, 3].astype(np.float64)
    left, right = camera.corridor_u(bottom, lane_width_m / 2)
    on_road = np.isfinite(left)  # below the horizon
    overlap = (tracks.boxes_xyxy[:, 0] < right) & (tracks.boxes_xyxy[:, 2] > left)
    return on_road & overlap & label_mask[tracks.label_ids]


class ForwardCollisionWarning:
    def __init__(self, cfg: FCWConfig, labels: list[str]) -> None:
        self.cfg = cfg
        self._label_mask = np.array([label in cfg.labels for label in labels], bool)
        self.reset()

    def reset(self) -> None:
        """Back to no warning, no pending change, no cooldown (tracking restarted: old tracks are gone)."""
        self.level = WarningLevel.NONE
        self._pending_level = WarningLevel.NONE
        self._pending_since_s = 0.0
        self._warning_ended_s = -np.inf
        self._last = CollisionWarning()

    def _level_for(self, ttc_s: float, relax: float) -> WarningLevel:
        if not np.isfinite(ttc_s):
            return WarningLevel.NONE
        if ttc_s <= self.cfg.warning_ttc_s * relax:
            return WarningLevel.WARNING
        return WarningLevel.CAUTION if ttc_s <= self.cfg.caution_ttc_s * relax else WarningLevel.NONE

    def update(
        self, tracks: Tracks, t_s: float, camera: Camera, frame_index: int = 0
    ) -> tuple[CollisionWarning, list[FcwEvent]]:
        """Set `tracks.in_path`, step the state machine, and return the state and any change event."""
        cfg = self.cfg
        tracks.in_path = in_path(tracks, camera, cfg.lane_width_m, self._label_mask)
        threat = tracks.in_path & np.isfinite(tracks.ttc_s)
        threat &= ~(tracks.ttc_std_s > cfg.max_ttc_rel_std * tracks.ttc_s)  # this unsure: not acted on
        threat &= ~(tracks.dist_m > cfg.max_dist_m)  # NaN distance: not excluded
        # Far objects with tiny boxes can show absurd growth: a closing speed no road allows.
        threat &= ~(tracks.dist_m / tracks.ttc_s > cfg.max_closing_mps)
        worst = int(np.argmin(np.where(threat, tracks.ttc_s, np.inf))) if threat.any() else None
        ttc = float(tracks.ttc_s[worst]) if worst is not None else np.inf

        rising = self._level_for(ttc, 1.0)
        holding = self._level_for(ttc, 1.0 + cfg.hysteresis)
        if rising > self.level:
            target = rising
            if target == WarningLevel.WARNING and t_s - self._warning_ended_s < cfg.cooldown_s:
                target = max(self.level, WarningLevel.CAUTION)
        elif holding < self.level:
            target = holding
        else:
            target = self.level
        if target != self._pending_level:
            self._pending_level, self._pending_since_s = target, t_s
        needed = cfg.min_persistence_s if target > self.level else cfg.min_clear_s
        events = []
        if target != self.level and t_s - self._pending_since_s >= needed - 1e-9:
            if self.level == WarningLevel.WARNING:
                self._warning_ended_s = t_s
            previous, self.level = self.level, WarningLevel(target)
            events.append(
                FcwEvent(
                    level=self.level.label,
                    previous=previous.label,
                    **self._describe(tracks, worst),
                    frame=frame_index,
                    source_ts_s=round(t_s, 6),
                )
            )
        if self.level == WarningLevel.NONE:
            self._last = CollisionWarning()
        elif worst is not None:
            self._last = CollisionWarning(self.level, **self._describe(tracks, worst))
        else:
            self._last = CollisionWarning(self.level, self._last.track_id)
        return self._last, events

    @staticmethod
    def _describe(tracks: Tracks, row: int | None) -> dict:
        if row is None:
            return {"track_id": None, "ttc_s": None, "dist_m": None}
        dist = float(tracks.dist_m[row])
        return {
            "track_id": int(tracks.ids[row]),
            "ttc_s": round(float(tracks.ttc_s[row]), 3),
            "dist_m": None if not np.isfinite(dist) else round(dist, 2),
        }
