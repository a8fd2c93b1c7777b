"""Forward collision warning: when to warn, about which object.

Which objects may threaten is perception.threat.lead's job: the lead (nearest object in the ego path),
objects cutting into the path ahead of it, and objects on a crossing course (perception/threat/path.py);
nothing beside the path, or behind the lead, warns otherwise. Of those, only a TTC the estimator trusts
(`ttc_plausible`) within max_dist_m counts.

When: by kinematics, as production FCW timing is (the CAMP alert-timing model behind NHTSA's FCW test,
openpilot's): the deceleration the ego would need to avoid the object after a driver's reaction time
(`reaction_time_s`) at today's closing speed and its growth (a braking lead). A warning when it exceeds
`warning_decel_mps2`, a caution earlier at `caution_decel_mps2`; the TTC is a second gate (`warning_ttc_s`,
`caution_ttc_s`), so a slow approach far out, which a distance error inflates, never warns. 3.6 s of TTC at
5 m/s and 18 m needs 1.2 m/s^2 after 1.5 s of reaction (normal driving: no warning); at 20 m/s, 4.8.

Each threatening object has its own level through a small state machine, because a warning that flickers
or cries wolf gets ignored: a higher level must hold for min_persistence_s before it is raised, a lower one
for min_clear_s (thresholds relaxed by `hysteresis`) before it drops, and after an object's warning ends
another from it is held back for cooldown_s. A warning follows its object: when it leaves the path or stops
threatening its level falls, and a new object raises its own event even while another's warning is up.
The stream's level is the highest object level.

Interface (perception.runtime.processor.ThreatAssessor): `update(tracks, t_s, camera, frame_index, ego) ->
(state, events)`, `wants_precise_ttc(tracks)`, `reset()`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception.core.config import FCWConfig
from perception.core.events import FcwEvent, WarningLevel
from perception.core.types import CollisionWarning, EgoMotion, Tracks
from perception.threat.camera import Camera
from perception.threat.lead import NONE, REASONS, LeadSelector, TrackMemory
from perception.threat.path import EgoPath, required_decel_mps2


@dataclass
class _ObjectLevel:
    """One object's warning state machine."""

    level: WarningLevel = WarningLevel.NONE
    pending: WarningLevel = WarningLevel.NONE
    pending_since_s: float = 0.0
    warning_ended_s: float = -np.inf


class ForwardCollisionWarning:
    def __init__(self, cfg: FCWConfig | None = None, labels: list[str] | None = None) -> None:
        self.cfg = cfg or FCWConfig()
        self.path = LeadSelector(self.cfg, labels if labels is not None else self.cfg.labels)
        sums = ("w", "sx", "sxx", "sv", "sxv", "svv")  # per track: a faded line fit of its closing speed
        self._closing = TrackMemory(
            {**{k: (float, 0.0) for k in sums}, "x": (float, 0.0), "t": (float, np.nan), "age": (float, 0.0)},
            keep_s=1.0,
        )
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new stream, or one that came back at another resolution)."""
        self.path.reset()
        self._closing.clear()
        self.level = WarningLevel.NONE
        self._objects: dict[int, _ObjectLevel] = {}  # only objects with a level or one pending: a few
        self._last = CollisionWarning()

    def wants_precise_ttc(self, tracks: Tracks) -> np.ndarray:
        """Tracks whose TTC may matter soon (perception.threat.lead): worth the optical-flow size cue."""
        return self.path.wants_precise_ttc(tracks)

    def levels(self, decel_mps2: np.ndarray, ttc_s: np.ndarray, relax: float) -> np.ndarray:
        """Per row: the level its required deceleration and TTC call for (thresholds eased by `relax`)."""
        cfg = self.cfg
        with np.errstate(invalid="ignore"):
            warning = (decel_mps2 * relax >= cfg.warning_decel_mps2) & (ttc_s <= cfg.warning_ttc_s * relax)
            caution = (decel_mps2 * relax >= cfg.caution_decel_mps2) & (ttc_s <= cfg.caution_ttc_s * relax)
        return np.where(warning, WarningLevel.WARNING, np.where(caution, WarningLevel.CAUTION, 0))

    def update(
        self,
        tracks: Tracks,
        t_s: float,
        camera: Camera | None = None,
        frame_index: int = 0,
        ego: EgoMotion | None = None,
    ) -> tuple[CollisionWarning, list[FcwEvent]]:
        """Set the tracks' `in_path`, `lead` and `cut_in`, step every threatening object's state machine,
        and return the stream's state and the objects' level changes. Needs the tracks' distance, lateral
        and TTC columns filled (the processor's ranging and TTC stages); positions are already on the road,
        in metres, so the camera is not needed. `ego`: how the car moves (a straight path when None)."""
        cfg = self.cfg
        reason = self.path.update(tracks, t_s, EgoPath.of(ego, cfg))
        threat = (reason != NONE) & tracks.ttc_plausible & ~(tracks.dist_m > cfg.max_dist_m)
        ttc = np.where(threat, tracks.ttc_s, np.inf).astype(np.float64)
        dist = tracks.dist_m.astype(np.float64)
        accel = self._closing_accel(tracks, t_s)
        decel = np.where(threat, required_decel_mps2(dist, ttc, cfg.reaction_time_s, accel), 0.0)
        rising, holding = self.levels(decel, ttc, 1.0), self.levels(decel, ttc, 1.0 + cfg.hysteresis)

        rows = {int(i): r for r, i in enumerate(tracks.ids.tolist()) if threat[r]}
        events = []
        for track_id in sorted(set(rows) | set(self._objects)):
            row = rows.get(track_id)
            state = self._objects.setdefault(track_id, _ObjectLevel())
            up = WarningLevel(int(rising[row])) if row is not None else WarningLevel.NONE
            keep = WarningLevel(int(holding[row])) if row is not None else WarningLevel.NONE
            previous = state.level
            if self._step(state, up, keep, t_s):
                info = describe(tracks, row, reason, decel) if row is not None else gone(track_id)
                events.append(
                    FcwEvent(
                        level=state.level.label,
                        previous=previous.label,
                        **info,
                        frame=frame_index,
                        source_ts_s=round(t_s, 6),
                    )
                )
            idle = state.level == WarningLevel.NONE and state.pending == WarningLevel.NONE
            if idle and t_s - state.warning_ended_s >= cfg.cooldown_s:
                del self._objects[track_id]  # nothing to remember
        self._last = self._state(tracks, rows)
        return self._last, events

    def _closing_accel(self, tracks: Tracks, t_s: float) -> np.ndarray:
        """Per track, how fast its closing speed grows (a braking lead): the slope of a line fitted to its
        closing speeds with weights fading over `closing_accel_tau_s` (sums kept per track, so no history
        is stored), counted only where it is two standard errors above zero and the track has that much
        history; 0 elsewhere. Differencing frame to frame would turn a TTC's few per cent of noise into
        metres per second squared."""
        tau = self.cfg.closing_accel_tau_s
        known, mem = self._closing.get(tracks.ids)
        with np.errstate(divide="ignore", invalid="ignore"):
            closing = np.where(tracks.ttc_s > 0, tracks.dist_m / tracks.ttc_s, np.nan).astype(np.float64)
        ok = np.isfinite(closing)
        dt = np.where(known, t_s - mem["t"], 0.0)
        fade = np.where(known, np.exp(-np.maximum(dt, 0.0) / tau), 0.0)
        x = np.where(known, mem["x"] + dt, 0.0)  # time since the track's first sample, per track
        sums = {k: mem[k] * fade for k in ("w", "sx", "sxx", "sv", "sxv", "svv")}
        y = np.where(ok, closing, 0.0)
        w = ok.astype(np.float64)
        sums["w"] += w
        sums["sx"] += w * x
        sums["sxx"] += w * x * x
        sums["sv"] += w * y
        sums["sxv"] += w * x * y
        sums["svv"] += w * y * y
        age = np.where(known, mem["age"] + np.maximum(dt, 0.0), 0.0)
        self._closing.put(tracks.ids, t_s, {**sums, "x": x, "t": np.full(len(tracks), t_s), "age": age})
        with np.errstate(divide="ignore", invalid="ignore"):
            sw, sx, sxx, sv, sxv, svv = (sums[k] for k in ("w", "sx", "sxx", "sv", "sxv", "svv"))
            spread = sxx - sx * sx / sw
            slope = (sxv - sx * sv / sw) / spread
            residual = np.maximum(svv - sv * sv / sw - slope * (sxv - sx * sv / sw), 0.0)
            slope_se = np.sqrt(residual / np.maximum(sw - 2, 1e-9) / spread)
            significant = (age >= tau) & (sw > 3) & (slope > 2 * slope_se)
        return np.where(significant, np.clip(slope, 0.0, self.cfg.max_closing_accel_mps2), 0.0)

    def _step(self, state: _ObjectLevel, rising: WarningLevel, holding: WarningLevel, t_s: float) -> bool:
        """One object's state machine for this frame; True if its level changed."""
        cfg = self.cfg
        if rising > state.level:
            target = rising
            if target == WarningLevel.WARNING and t_s - state.warning_ended_s < cfg.cooldown_s:
                target = max(state.level, WarningLevel.CAUTION)
        elif holding < state.level:
            target = holding
        else:
            target = state.level
        if target != state.pending:
            state.pending, state.pending_since_s = target, t_s
        needed = cfg.min_persistence_s if target > state.level else cfg.min_clear_s
        if target == state.level or t_s - state.pending_since_s < needed - 1e-9:
            return False
        if state.level == WarningLevel.WARNING:
            state.warning_ended_s = t_s
        state.level = WarningLevel(target)
        return True

    def _state(self, tracks: Tracks, rows: dict[int, int]) -> CollisionWarning:
        """The stream's level (the highest object's) and the object that sets it (the nearest in time)."""
        raised = [(s.level, i) for i, s in self._objects.items() if s.level > WarningLevel.NONE]
        self.level = max((lvl for lvl, _ in raised), default=WarningLevel.NONE)
        if self.level == WarningLevel.NONE:
            return CollisionWarning()
        ids = [i for lvl, i in raised if lvl == self.level]
        seen = [i for i in ids if i in rows]
        if not seen:
            return CollisionWarning(self.level, ids[0])
        track_id = min(seen, key=lambda i: float(tracks.ttc_s[rows[i]]))
        d = describe(tracks, rows[track_id])
        return CollisionWarning(self.level, track_id, d["ttc_s"], d["dist_m"])


def gone(track_id: int) -> dict:
    """An object that set a level and is no longer reported (or no longer a threat)."""
    return {**describe(Tracks.empty(), None), "track_id": track_id}  # its estimates unknown


def describe(
    tracks: Tracks, row: int | None, reason: np.ndarray | None = None, decel: np.ndarray | None = None
) -> dict:
    """The threatening track, for an fcw event: what it is, where, why, how hard the ego must brake."""
    keys = ("track_id", "ttc_s", "dist_m", "reason", "lateral_m", "lateral_speed_mps", "truncated")
    if row is None:
        return dict.fromkeys((*keys, "required_decel_mps2"))

    def num(values: np.ndarray, digits: int) -> float | None:
        value = float(values[row])
        return round(value, digits) if np.isfinite(value) else None

    why = REASONS.get(int(reason[row])) if reason is not None else None
    return {
        "track_id": int(tracks.ids[row]),
        "ttc_s": num(tracks.ttc_s, 3),
        "dist_m": num(tracks.dist_m, 2),
        "reason": why or ("lead" if tracks.lead[row] else "cut_in"),
        "lateral_m": num(tracks.lateral_m, 2),
        "lateral_speed_mps": num(tracks.lateral_speed_mps, 2),
        "truncated": bool(tracks.truncated[row]),
        "required_decel_mps2": num(decel, 2) if decel is not None else None,
    }
