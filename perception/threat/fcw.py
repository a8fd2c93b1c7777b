"""Forward collision warning: when to warn, about the lead or an object cutting in.

Which objects may threaten is perception.threat.lead's job: the lead (nearest object in the ego path) and
objects cutting into the path ahead of it; nothing beside the path or behind the lead ever warns. Of
those, only a TTC the estimator trusts (`ttc_plausible`) within max_dist_m counts. The level (none /
caution / warning) follows the smallest such TTC through a small state machine, because a warning that
flickers or cries wolf gets ignored: a higher level must hold for min_persistence_s before it is raised,
a lower one for min_clear_s (with thresholds relaxed by `hysteresis`) before it drops, and after a
warning ends another is held back for cooldown_s.

Interface (perception.runtime.processor.ThreatAssessor): `update(tracks, t_s, camera, frame_index) -> (state,
events)`, `wants_precise_ttc(tracks)`, `reset()`.
"""

from __future__ import annotations

import numpy as np

from perception.core.config import FCWConfig
from perception.core.events import FcwEvent, WarningLevel
from perception.core.types import CollisionWarning, Tracks
from perception.threat.camera import Camera
from perception.threat.lead import LeadSelector


class ForwardCollisionWarning:
    def __init__(self, cfg: FCWConfig | None = None, labels: list[str] | None = None) -> None:
        self.cfg = cfg or FCWConfig()
        self.path = LeadSelector(self.cfg, labels if labels is not None else self.cfg.labels)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new stream, or one that came back at another resolution)."""
        self.path.reset()
        self.level = WarningLevel.NONE
        self._pending_level = WarningLevel.NONE
        self._pending_since_s = 0.0
        self._warning_ended_s = -np.inf
        self._last = CollisionWarning()

    def wants_precise_ttc(self, tracks: Tracks) -> np.ndarray:
        """Tracks whose TTC may matter soon (perception.threat.lead): worth the optical-flow size cue."""
        return self.path.wants_precise_ttc(tracks)

    def _level_for(self, ttc_s: float, relax: float) -> WarningLevel:
        if not np.isfinite(ttc_s):
            return WarningLevel.NONE
        if ttc_s <= self.cfg.warning_ttc_s * relax:
            return WarningLevel.WARNING
        return WarningLevel.CAUTION if ttc_s <= self.cfg.caution_ttc_s * relax else WarningLevel.NONE

    def update(
        self, tracks: Tracks, t_s: float, camera: Camera | None = None, frame_index: int = 0
    ) -> tuple[CollisionWarning, list[FcwEvent]]:
        """Set the tracks' `in_path`, `lead` and `cut_in`, step the state machine, and return the state
        and any change event. Needs the tracks' distance, lateral and TTC columns filled (the processor's
        ranging and TTC stages); the camera is not needed: positions are already on the road, in metres."""
        cfg = self.cfg
        may_threaten = self.path.update(tracks, t_s)
        threat = may_threaten & tracks.ttc_plausible & ~(tracks.dist_m > cfg.max_dist_m)
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
                    **describe(tracks, worst),
                    frame=frame_index,
                    source_ts_s=round(t_s, 6),
                )
            )
        if self.level == WarningLevel.NONE:
            self._last = CollisionWarning()
        elif worst is not None:
            d = describe(tracks, worst)
            self._last = CollisionWarning(self.level, d["track_id"], d["ttc_s"], d["dist_m"])
        else:
            self._last = CollisionWarning(self.level, self._last.track_id)
        return self._last, events


def describe(tracks: Tracks, row: int | None) -> dict:
    """The threatening track, for an fcw event: what it is, where, how fast it moves sideways."""
    if row is None:
        return dict.fromkeys(
            ("track_id", "ttc_s", "dist_m", "reason", "lateral_m", "lateral_speed_mps", "truncated")
        )

    def num(values: np.ndarray, digits: int) -> float | None:
        value = float(values[row])
        return round(value, digits) if np.isfinite(value) else None

    return {
        "track_id": int(tracks.ids[row]),
        "ttc_s": num(tracks.ttc_s, 3),
        "dist_m": num(tracks.dist_m, 2),
        "reason": "lead" if tracks.lead[row] else "cut_in",
        "lateral_m": num(tracks.lateral_m, 2),
        "lateral_speed_mps": num(tracks.lateral_speed_mps, 2),
        "truncated": bool(tracks.truncated[row]),
    }
