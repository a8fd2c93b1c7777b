"""Ego speed and yaw rate from the image motion of the static scene, by geometry alone.

Between two frames a car turns by a yaw angle psi and moves along the chord of its arc: straight ahead,
turned by psi / 2 (it cannot slide sideways). Given that direction, every static feature, whatever its
distance, must stay on its epipolar plane (the plane through the direction of travel and the feature's
ray): one equation in psi per feature, the far ones (the background, where the car's shift moves nothing)
weighing as much as the near. psi is the turn most features agree with (a robust 1-D search over the
bearing residuals, in pixels at the focal length).

The speed needs a metric scale: the road. A road feature below the horizon lies where its ray meets the
road plane (the camera's height and pitch, from its profile); moved by (psi, d) it must reappear where it
is tracked. d, and a small correction of the pitch (the car nods, the road's slope changes), are the values
most road features agree with (a robust 2-D search over pixel residuals). The spread of the agreeing
features' own answers gives each estimate's uncertainty.

Coordinates: 'level' frame, x right, y down, z ahead; psi > 0 turns right; P_prev = R(psi) P_curr + t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from perception.core.config import MotionConfig
from perception.core.types import EgoMotion
from perception.motion.camera_motion import CameraMotion

_MAX_YAW_RATE_RPS = math.radians(90.0)  # beyond any car's (a tight U-turn: ~40 deg/s): the turn's range
_MAX_TURN_FEATURES = 160  # the turn is a 1-D robust fit: a spread-out sample of the features pins it as well
_MAX_ROAD_FEATURES = 160  # ... and the distance travelled a 2-D one
_TURN_STEP_RAD = math.radians(0.02)
_PITCH_FIX_RAD = np.radians(np.arange(-3.0, 3.01, 0.25))
_HORIZON_MARGIN_PX = 8.0
_ELEV_SPAN_RAD = math.radians(4.0)  # how far the direction of travel may leave the profile's level plane
_POOL = 0.9  # weight of the pooled pitch evidence: about the last 10 frames


@dataclass(frozen=True, slots=True)
class GroundCamera:
    """The numbers of the camera the fit needs, at the frame's size (from perception/threat/camera.py's
    Camera, which this stage may not import)."""

    fx: float
    fy: float
    cx: float
    cy: float
    pitch_rad: float
    height_m: float

    @property
    def horizon_v(self) -> float:
        return self.cy - self.fy * math.tan(self.pitch_rad)


def _rays(cam: GroundCamera, uv: np.ndarray, pitch_rad: np.ndarray | float) -> np.ndarray:
    """Level-frame ray directions (..., N, 3) of pixels (N, 2) for pitch(es) (...)."""
    xc = (uv[:, 0] - cam.cx) / cam.fx
    yc = (uv[:, 1] - cam.cy) / cam.fy
    p = np.asarray(pitch_rad, np.float64)[..., None]
    c, s = np.cos(p), np.sin(p)
    return np.stack((np.broadcast_to(xc, (c * yc).shape), c * yc + s, -s * yc + c), axis=-1)


def _project(cam: GroundCamera, points: np.ndarray, pitch_rad: np.ndarray | float) -> np.ndarray:
    """Pixels (..., 2) of level-frame points (..., 3) for a camera at pitch(es) broadcast over (...)."""
    p = np.asarray(pitch_rad, np.float64)
    c, s = np.cos(p), np.sin(p)
    yc = c * points[..., 1] - s * points[..., 2]
    zc = s * points[..., 1] + c * points[..., 2]
    zc = np.where(zc > 1e-6, zc, 1e-6)
    return np.stack((cam.cx + cam.fx * points[..., 0] / zc, cam.cy + cam.fy * yc / zc), axis=-1)


def _robust_min(cost: np.ndarray, axis_values: np.ndarray) -> float:
    """The argmin of a sampled cost, refined by a parabola through its neighbours."""
    k = int(np.argmin(cost))
    if 0 < k < len(cost) - 1:
        a, b, c = cost[k - 1], cost[k], cost[k + 1]
        denom = a - 2 * b + c
        if denom > 0:
            return float(axis_values[k] + 0.5 * (a - c) / denom * (axis_values[1] - axis_values[0]))
    return float(axis_values[k])


class EgoMotionEstimator:
    """Per stream: ego speed and yaw rate at each frame from its CameraMotion's tracked features."""

    def __init__(self, cfg: MotionConfig | None = None) -> None:
        self.cfg = cfg or MotionConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the road's attitude learnt so far (another stream, another resolution)."""
        self._pitch_cost: np.ndarray | None = None

    def estimate(self, motion: CameraMotion, cam: GroundCamera | None, dt_s: float) -> EgoMotion:
        """This frame's ego motion; `dt_s` since the previous frame."""
        cfg = self.cfg
        conf = motion.confidence
        if conf is None or len(motion.points_prev) < cfg.min_inliers or dt_s <= 0:
            return EgoMotion(camera_motion_confidence=conf)
        # Stopped: the static scene (what the warp agrees with) stands still; unknown without a trusted warp.
        stopped = bool(motion.near_flow_px < cfg.still_flow_px) if motion.trusted else None
        if stopped or cam is None:
            zero = 0.0 if stopped and cam is not None else math.nan
            return EgoMotion(zero, math.nan, zero, math.nan, stopped, conf)
        prev = motion.points_prev.astype(np.float64)
        curr = motion.points_curr.astype(np.float64)
        psi, psi_std = self._turn(prev, curr, cam, dt_s)
        yaw, yaw_std = math.degrees(psi) / dt_s, math.degrees(psi_std) / dt_s
        shift = self._shift(prev, curr, cam, psi)
        if shift is None:
            return EgoMotion(math.nan, math.nan, yaw, yaw_std, stopped, conf)
        d_m, d_std_m = shift
        return EgoMotion(d_m / dt_s, d_std_m / dt_s, yaw, yaw_std, stopped, conf)

    def _turn(
        self, prev: np.ndarray, curr: np.ndarray, cam: GroundCamera, dt_s: float
    ) -> tuple[float, float]:
        """psi (rad) most features' epipolar planes agree with, and its standard error. Searched within what
        a car can turn in dt_s, on an evenly spread sample of the features (the search costs per feature)."""
        if len(prev) > _MAX_TURN_FEATURES:
            pick = np.linspace(0, len(prev) - 1, _MAX_TURN_FEATURES).astype(np.int64)
            prev, curr = prev[pick], curr[pick]
        r1, r2 = _rays(cam, prev, cam.pitch_rad), _rays(cam, curr, cam.pitch_rad)
        r1 /= np.linalg.norm(r1, axis=1, keepdims=True)
        r2 /= np.linalg.norm(r2, axis=1, keepdims=True)
        # A coarse pass with a wide window finds the basin, a fine one inside it the value.
        max_turn = max(_MAX_YAW_RATE_RPS * dt_s, 20 * _TURN_STEP_RAD)
        coarse = np.arange(-max_turn, max_turn + 1e-12, 10 * _TURN_STEP_RAD)
        res = self._epipolar_px(r1, r2, coarse, cam.fx)
        best = coarse[int(np.argmin(np.minimum(res**2, (8.0 * self.cfg.ground_px) ** 2).sum(1)))]
        fine = best + np.arange(-20, 21) * _TURN_STEP_RAD
        res = self._epipolar_px(r1, r2, fine, cam.fx)
        psi = _robust_min(np.minimum(res**2, self.cfg.ground_px**2).sum(1), fine)
        # The direction of travel need not lie in the profile's level plane (the car nods, the slope changes):
        # its elevation is searched with the turn, so the near features' epipolar planes stay right.
        elev = 0.0
        for span, step in ((_ELEV_SPAN_RAD, _ELEV_SPAN_RAD / 8), (_ELEV_SPAN_RAD / 8, _ELEV_SPAN_RAD / 80)):
            e_grid = elev + np.arange(-span, span + 1e-12, step)
            p_grid = psi + np.arange(-5, 6) * _TURN_STEP_RAD
            ee, pp = (a.ravel() for a in np.meshgrid(e_grid, p_grid))
            res = self._epipolar_px(r1, r2, pp, cam.fx, ee)
            k = int(np.argmin(np.minimum(res**2, self.cfg.ground_px**2).sum(1)))
            elev, psi = float(ee[k]), float(pp[k])
        r = self._epipolar_px(r1, r2, np.array([psi]), cam.fx, elev)[0]
        agree = np.abs(r) <= self.cfg.ground_px
        # Standard error: the agreeing features' residual spread over how strongly each one pins psi.
        step = math.radians(0.01)
        moved = self._epipolar_px(r1[agree], r2[agree], np.array([psi + step]), cam.fx, elev)[0]
        slope = (moved - r[agree]) / step
        info = float((slope**2).sum())
        sigma2 = float((r[agree] ** 2).sum()) / max(int(agree.sum()) - 1, 1)
        return psi, math.sqrt(sigma2 / info) if info > 0 else math.inf

    @staticmethod
    def _epipolar_px(
        r1: np.ndarray, r2: np.ndarray, psis: np.ndarray, fx: float, elev: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """(K, N) distance of each turned current ray from its epipolar plane, in pixels (fx x sine); the
        direction of travel is the chord, raised by `elev` (rad, down positive) out of the level plane.
        Written out component by component: no (K, N, 3) temporaries."""
        half = psis / 2
        e = np.broadcast_to(np.asarray(elev, np.float64), half.shape)
        tx, ty, tz = (v[:, None] for v in (np.sin(half) * np.cos(e), np.sin(e), np.cos(half) * np.cos(e)))
        ax, ay, az = r1[:, 0], r1[:, 1], r1[:, 2]
        nx, ny, nz = ty * az - tz * ay, tz * ax - tx * az, tx * ay - ty * ax  # t x r1, (K, N) each
        c, s = np.cos(psis)[:, None], np.sin(psis)[:, None]
        bx, by, bz = r2[:, 0], r2[:, 1], r2[:, 2]
        dot = (c * bx + s * bz) * nx + by * ny + (c * bz - s * bx) * nz  # R(psi) r2 . n
        norm = np.sqrt(nx * nx + ny * ny + nz * nz)
        return fx * dot / np.where(norm > 1e-3, norm, np.inf)

    def _shift_cost(self, cam, ground, near, q, pitches, dists, psi):
        """Truncated squared pixel residuals of the road features, (P, D), and the squared residuals
        (P, D, N), for every pitch (P,) and distance travelled (D,); ground (P, N, 3), q (N, 2)."""
        c, s = math.cos(psi), math.sin(psi)
        tx, tz = math.sin(psi / 2), math.cos(psi / 2)
        # P_curr = R^T (P_prev - d t) for every pitch and distance, then projected: (P, D, N) each.
        d = dists[None, :, None]
        x, z = ground[:, None, :, 0] - d * tx, ground[:, None, :, 2] - d * tz
        xc, y, zc = c * x - s * z, ground[:, None, :, 1], s * x + c * z
        cp, sp = np.cos(pitches)[:, None, None], np.sin(pitches)[:, None, None]
        depth = np.maximum(sp * y + cp * zc, 1e-6)
        du = cam.cx + cam.fx * xc / depth - q[:, 0]
        dv = cam.cy + cam.fy * (cp * y - sp * zc) / depth - q[:, 1]
        err2 = np.where(near[:, None, :], du * du + dv * dv, np.inf)
        return np.minimum(err2, self.cfg.ground_px**2).sum(-1), err2

    def _shift(
        self, prev: np.ndarray, curr: np.ndarray, cam: GroundCamera, psi: float
    ) -> tuple[float, float] | None:
        """The distance travelled (m) and its standard error from the road features, or None."""
        cfg = self.cfg
        below = prev[:, 1] > cam.horizon_v + _HORIZON_MARGIN_PX
        if below.sum() < cfg.min_ground_points:
            return None
        p, q = prev[below], curr[below]
        if len(p) > _MAX_ROAD_FEATURES:  # the search costs per feature: an evenly spread sample
            pick = np.linspace(0, len(p) - 1, _MAX_ROAD_FEATURES).astype(np.int64)
            p, q = p[pick], q[pick]
        pitches = cam.pitch_rad + _PITCH_FIX_RAD  # (P,)
        rays = _rays(cam, p, pitches)  # (P, N, 3)
        on_road = rays[..., 1] > 1e-4
        ground = rays * (cam.height_m / np.where(on_road, rays[..., 1], 1.0))[..., None]
        near = on_road & (ground[..., 2] <= cfg.max_ground_dist_m)
        coarse = np.linspace(0.0, 4.0, 41)  # metres per frame: up to 40 m/s at 10 fps
        cost, err_coarse = self._shift_cost(cam, ground, near, q, pitches, coarse, psi)
        # The road's attitude changes slowly (nods last a fraction of a second): its evidence is pooled over
        # recent frames, each frame's cost per pitch at its best distance, relative to its own mean.
        per_pitch = cost.min(1) / max(float(cost.min(1).mean()), 1e-9)
        self._pitch_cost = per_pitch if self._pitch_cost is None else _POOL * self._pitch_cost + per_pitch
        i_p = int(np.argmin(self._pitch_cost))
        best = coarse[int(np.argmin(cost[i_p]))]
        dists = best + np.linspace(-0.1, 0.1, 21)
        one = slice(i_p, i_p + 1)
        cost, err = self._shift_cost(cam, ground[one], near[one], q, pitches[one], dists, psi)
        d = max(_robust_min(cost[0], dists), 0.0)
        agree = err[0, int(np.argmin(cost[0]))] <= cfg.ground_px**2
        if agree.sum() < cfg.min_ground_points:
            return None
        # Each agreeing feature's own best distance (coarse grid) at that pitch: their spread over the
        # square root of their number is the estimate's, plus the grid's own rounding.
        own = coarse[np.argmin(err_coarse[i_p][:, agree], axis=0)]
        d_std = float(np.std(own) / math.sqrt(len(own))) + (coarse[1] - coarse[0]) / math.sqrt(12)
        return d, d_std
