"""Where the ego car will be: its path bends with its yaw rate and speed, and objects on a crossing course
are found before they are in it.

- The path: an arc of curvature yaw_rate / speed (right positive), its lateral offset at distance d ahead
  on the circle (kappa * d^2 / 2 near, openpilot's path to second order; exact where a curve is tight).
  Its uncertainty (from the yaw rate's and the speed's) grows with d^2: the curvature is shrunk toward
  straight by it, so a yaw rate indistinguishable from zero leaves the path straight. Unknown, or slower
  than `path_min_speed_mps` (where yaw / speed is noise): straight.
- Crossing: an object beside the path moving toward it on the road (its lateral speed, less the apparent
  sideways motion the ego's own rotation gives everything at distance d, -yaw_rate * d) is extrapolated to
  the moment the ego reaches it (its TTC). If it is then in the ego's swept path, it is on a collision
  course before it is in the path; one that will have passed clear, or stops at the kerb (its speed falls
  below the gates), is not. The speed must be significant (`crossing_min_speed_mps` for its label, a
  vehicle's above a lane change's; `crossing_sigmas` above its uncertainty): a box's edges wobble by tenths
  of a metre, which must not read as a crossing.
- How hard the ego must brake (the CAMP alert-timing model behind NHTSA's FCW test, and openpilot's): the
  gap after a driver's reaction time at today's closing speed, and its rate of change (a braking lead's
  closing speed keeps growing), closed by a constant deceleration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.core.config import FCWConfig
from perception.core.types import EgoMotion, Tracks


@dataclass(frozen=True)
class EgoPath:
    curvature_per_m: float = 0.0  # right positive; 0: straight
    curvature_std_per_m: float = 0.0
    yaw_rate_rps: float = 0.0  # right positive (0 when unknown)

    @classmethod
    def of(cls, ego: EgoMotion | None, cfg: FCWConfig) -> EgoPath:
        """The arc the ego drives on; straight when its motion is unknown or too slow to tell."""
        if ego is None or not (np.isfinite(ego.speed_mps) and np.isfinite(ego.yaw_rate_dps)):
            return cls()
        yaw_rps = math.radians(ego.yaw_rate_dps)
        if ego.speed_mps < cfg.path_min_speed_mps:
            return cls(yaw_rate_rps=yaw_rps)
        v = ego.speed_mps
        yaw_std = math.radians(ego.yaw_rate_std_dps) if np.isfinite(ego.yaw_rate_std_dps) else 0.0
        v_std = ego.speed_std_mps if np.isfinite(ego.speed_std_mps) else 0.0
        kappa = yaw_rps / v
        kappa_std = math.hypot(yaw_std / v, kappa * v_std / v)
        # shrunk toward straight by how well it is known: a yaw rate of 0 +- 1 deg/s is a straight road (its
        # noise bends a path by metres at 60 m), 25 +- 1 deg/s a curve
        shrink = kappa**2 / (kappa**2 + kappa_std**2) if kappa_std > 0 else 1.0
        return cls(kappa * shrink, kappa_std, yaw_rps)

    def offset_m(self, dist_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lateral offset of the path's centre line at these distances ahead (on the circle: kappa d^2 / 2
        near, up to the radius a quarter turn on), and its standard deviation (to second order)."""
        dist = np.asarray(dist_m, np.float64)
        half_d2 = np.square(dist) / 2
        kappa = self.curvature_per_m
        if kappa == 0.0:
            return np.zeros_like(dist), self.curvature_std_per_m * half_d2
        kd = np.minimum(np.abs(kappa * dist), 1.0)
        return (1 - np.sqrt(1 - kd * kd)) / kappa, self.curvature_std_per_m * half_d2


def required_decel_mps2(
    dist_m: np.ndarray, ttc_s: np.ndarray, reaction_s: float, closing_accel_mps2: np.ndarray | float = 0.0
) -> np.ndarray:
    """The constant deceleration that stops the closing within the gap left after the reaction time (inf
    where that gap is gone: braking after reacting cannot avoid it; 0 where not closing). A closing speed
    that grows (the object braking, at `closing_accel_mps2`) keeps growing through the reaction time, and
    the ego must first match it: CAMP's model of a decelerating lead."""
    accel = np.maximum(np.asarray(closing_accel_mps2, np.float64), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        closing = np.where(ttc_s > 0, dist_m / ttc_s, 0.0)
        left = dist_m - closing * reaction_s - accel * reaction_s**2 / 2
        after = closing + accel * reaction_s
        decel = np.where(left > 0, accel + np.square(after) / (2 * left), np.inf)
    return np.where(np.isfinite(dist_m) & np.isfinite(ttc_s) & (closing > 0), decel, 0.0)


def crossing_course(
    tracks: Tracks, path: EgoPath, cfg: FCWConfig, candidates: np.ndarray, min_speed_mps: np.ndarray
) -> np.ndarray:
    """Which candidates (beside the path, with a trusted TTC) will be in the ego's swept path when the ego
    reaches them (see the module docstring). `min_speed_mps`: per track, the crossing speed its label
    needs (a vehicle's must exceed a lane change's)."""
    dist, ttc = tracks.dist_m.astype(np.float64), tracks.ttc_s.astype(np.float64)
    offset, _ = path.offset_m(dist)
    rel = tracks.lateral_m.astype(np.float64) - offset  # from the path's centre line, right +
    ground_speed = tracks.lateral_speed_mps.astype(np.float64) + path.yaw_rate_rps * dist
    toward = -np.sign(rel) * ground_speed
    speed_ok = (toward >= min_speed_mps) & (
        toward >= cfg.crossing_sigmas * tracks.lateral_speed_std_mps
    )
    reach = cfg.corridor_width_m / 2 + tracks.width_m.astype(np.float64) / 2
    at_arrival = np.abs(rel + ground_speed * ttc)  # where it will be when the ego gets there
    soon = ttc <= cfg.caution_ttc_s
    with np.errstate(invalid="ignore"):
        return candidates & speed_ok & soon & (at_arrival <= reach) & np.isfinite(at_arrival)
