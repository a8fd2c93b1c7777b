"""Ego speed and yaw rate from the image motion of the static scene, by geometry alone.

1. The camera's rotation and direction of travel between two frames (perception/motion/pose.py).
2. The road: a car moves along the road under its wheels (it cannot climb off it), so the road's tangent
   plane holds the direction of travel. Its tilt against the camera (the mount, the car's nod on its
   springs, a change of slope) is that direction's elevation, pooled over the last fraction of a second
   by precision; the plane lies the profile's mounting height below the camera.
3. The kinematics: the travel must be a car's (forward, along the chord of its turn give or take the
   sideslip of a camera riding ahead of the rear axle). Where it is not, or the features barely show the
   shift (crawling, a scene far away), the chord stands in and the rotation is refined for it: a narrow
   view confuses a small turn with a sideways shift.
4. The yaw rate: the rotation about the road's normal.
5. The speed: a road feature below the horizon lies where its ray meets the road plane; moved by the
   rotation and a distance d along the travel it must reappear where it is tracked. d is the smallest
   distance that a good share of them agree with: rails, kerbs and hedges above the road agree with
   longer ones, nothing static lies under the road.

Coordinates: the camera's, x right, y down, z ahead; yaw > 0 turns right.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from perception.core.config import MotionConfig
from perception.core.types import EgoMotion
from perception.motion.camera_motion import CameraMotion
from perception.motion.pose import GroundCamera, RelativePose, relative_pose, rotation_given, spread

__all__ = ["EgoMotionEstimator", "GroundCamera"]

_MAX_YAW_RATE_RPS = math.radians(90.0)  # beyond any car's (a tight U-turn: ~40 deg/s): not a car's motion
_MAX_SPEED_MPS = 60.0  # the distance search's range
_MAX_ROAD_FEATURES = 200  # the distance search costs per feature: an evenly spread sample
_HORIZON_MARGIN_PX = 8.0
_MAX_TILT_RAD = math.radians(4.0)  # how far the road plane may tilt from the profile's pitch
_SIDESLIP_RAD = math.radians(3.0)  # how far the travel may leave the chord of the turn (the camera rides
# ahead of the rear axle: a degree or two in a bend; beyond, a turn mistaken for a shift)
_SLIDE_RAD = math.radians(0.5)  # a small sideways turn of the travel: how much the turn answers it
_MIN_PARALLAX_PX = 1.0  # below this median de-rotated flow the direction of travel is not measurable
_TILT_MEMORY_S = 0.3  # the road tilt's memory (a nod lasts a fraction of a second)
_PROFILE_TILT_INFO = 1 / math.radians(2.0) ** 2  # a profile's pitch is known to ~2 degrees (1 / rad^2)
_ROAD_SUPPORT = 0.5  # a surface below the horizon may be the road with half the best support or more


class EgoMotionEstimator:
    """Per stream: ego speed and yaw rate at each frame from its CameraMotion's tracked features."""

    def __init__(self, cfg: MotionConfig | None = None) -> None:
        self.cfg = cfg or MotionConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the road's tilt learnt so far (another stream, another resolution)."""
        self._tilt_rad: float | None = None  # the road plane's pitch against the camera; None: the profile's
        self._tilt_info = _PROFILE_TILT_INFO  # its precision (1 / rad^2)

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
        unknown = EgoMotion(stopped=stopped, camera_motion_confidence=conf)
        prev = motion.points_prev.astype(np.float64)
        curr = motion.points_curr.astype(np.float64)
        pose = relative_pose(prev, curr, cam, cfg.ground_px, cfg.min_inliers)
        if pose is None:
            return unknown
        p, q = prev[pose.inliers], curr[pose.inliers]
        r1, r2 = pose.rays_prev, pose.rays_curr
        rotation, cov, travel, normal = self._car_motion(pose, cam, r1, r2, dt_s)
        psi, psi_std = self._turn(rotation, cov, travel, normal, r1, r2, cam.fx)
        if abs(psi) > _MAX_YAW_RATE_RPS * dt_s:
            return unknown  # no car turns so fast: a wrong solution
        yaw, yaw_std = math.degrees(psi) / dt_s, math.degrees(psi_std) / dt_s
        shift = self._shift(p, q, cam, rotation, travel, normal, dt_s)
        if shift is None:
            return EgoMotion(math.nan, math.nan, yaw, yaw_std, stopped, conf)
        d_m, d_std_m = shift
        return EgoMotion(d_m / dt_s, d_std_m / dt_s, yaw, yaw_std, stopped, conf)

    def _car_motion(
        self, pose: RelativePose, cam: GroundCamera, r1: np.ndarray, r2: np.ndarray, dt_s: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rotation (and its covariance), direction of travel and road normal of a car's motion from
        the inliers' rays r1 -> r2: the measured travel where a car can have it (the road's tilt learnt
        from it), else the chord of the turn."""
        # The tilt changes (a nod lasts a fraction of a second): what was learnt fades, to the profile's.
        self._tilt_info = max(self._tilt_info * math.exp(-dt_s / _TILT_MEMORY_S), _PROFILE_TILT_INFO)
        normal = self._road_normal(cam)
        psi = _turn_about(pose.rotation, normal)
        if _plausible(pose, cam, psi):
            self._pool_tilt(pose, cam)
            normal = self._road_normal(cam)
            travel = pose.travel
        else:
            travel = _chord(normal, psi)
        # The essential matrix's rotation goes with its own travel; for the chord it is refitted.
        passes = 1 if travel is pose.travel else 3
        rotation, cov = rotation_given(travel, pose.rotation, r1, r2, cam.fx, self.cfg.ground_px, passes)
        return rotation, cov, travel, normal

    def _turn(
        self,
        rotation: np.ndarray,
        cov: np.ndarray,
        travel: np.ndarray,
        normal: np.ndarray,
        r1: np.ndarray,
        r2: np.ndarray,
        fx: float,
    ) -> tuple[float, float]:
        """The turn (rad) and its standard deviation: the features' noise, and the turn's share of the
        travel's own uncertainty (a sideslip anywhere within the gate)."""
        psi = _turn_about(rotation, normal)
        slid = cv2.Rodrigues(normal * _SLIDE_RAD)[0] @ travel
        moved, _ = rotation_given(slid, rotation, r1, r2, fx, self.cfg.ground_px, passes=1)
        coupling = (_turn_about(moved, normal) - psi) / _SLIDE_RAD
        var = float(normal @ cov @ normal) + (coupling * _SIDESLIP_RAD) ** 2 / 3
        return psi, math.sqrt(max(var, 0.0))

    def _road_normal(self, cam: GroundCamera) -> np.ndarray:
        """The road's normal (down) in camera coordinates: the pooled tilt, the profile's until measured."""
        tilt = cam.pitch_rad if self._tilt_rad is None else self._tilt_rad
        return np.array([0.0, math.cos(tilt), math.sin(tilt)])

    def _pool_tilt(self, pose: RelativePose, cam: GroundCamera) -> None:
        """Pool the tilt of the plane through the camera's x axis holding this direction of travel, by
        precision: a direction is known to a feature's residual over the parallax, over the square root of
        the features."""
        m = pose.travel
        tilt = math.atan2(-m[1], m[2])
        info = (pose.parallax_px / max(pose.sigma_px, 1e-3)) ** 2 * int(pose.inliers.sum())
        before = cam.pitch_rad if self._tilt_rad is None else self._tilt_rad
        self._tilt_rad = (self._tilt_info * before + info * tilt) / (self._tilt_info + info)
        self._tilt_info += info

    def _shift(
        self,
        prev: np.ndarray,
        curr: np.ndarray,
        cam: GroundCamera,
        rotation: np.ndarray,
        travel: np.ndarray,
        normal: np.ndarray,
        dt_s: float,
    ) -> tuple[float, float] | None:
        """The distance travelled (m) and its standard deviation (the road features' spread, and the road
        tilt's uncertainty), or None where too few road features agree."""
        cfg = self.cfg
        horizon_v = cam.cy - cam.fy * normal[2] / normal[1]  # where the road plane's rays run flat
        below = np.flatnonzero(prev[:, 1] > horizon_v + _HORIZON_MARGIN_PX)
        if len(below) < cfg.min_ground_points:
            return None
        below = below[spread(len(below), _MAX_ROAD_FEATURES)]
        rays, q = cam.rays(prev[below]), curr[below]
        down = rays @ normal
        on_road = down > 1e-4
        ground = rays * (cam.height_m / np.where(on_road, down, 1.0))[:, None]  # (N, 3) on the road plane
        near = on_road & (ground[:, 2] <= cfg.max_ground_dist_m)
        turned = ground @ rotation.T  # moved by d along the travel after: R (X - d m) = R X + d (-R m)
        step = -(rotation @ travel)
        coarse = np.linspace(0.0, _MAX_SPEED_MPS * dt_s, 41)
        cost, _ = self._shift_cost(cam, turned, step, near, q, coarse)
        best = _lowest_surface(cost, len(q) * cfg.ground_px**2)
        fine = coarse[best] + np.linspace(-1.0, 1.0, 21) * (coarse[1] - coarse[0])
        cost, err = self._shift_cost(cam, turned, step, near, q, fine)
        d = max(_parabola_min(cost, fine), 0.0)
        agree = err[int(np.argmin(cost))] <= cfg.ground_px**2
        if agree.sum() < cfg.min_ground_points:
            return None
        # Each agreeing feature's own distance (its residual projected on how d moves it, linearised at d):
        # their spread over the square root of their number.
        at = cam.pixels(turned[agree] + d * step)
        slope = (cam.pixels(turned[agree] + (d + 1e-3) * step) - at) / 1e-3
        own = d + ((q[agree] - at) * slope).sum(1) / np.maximum((slope * slope).sum(1), 1e-12)
        # A tilt error e moves a road point seen at depression beta by e / (sin beta cos beta) of its depth.
        sin_beta = down[agree] / np.linalg.norm(rays[agree], axis=1)
        tilt_gain = float(np.mean(1.0 / (sin_beta * np.sqrt(1.0 - sin_beta**2))))
        tilt_std = 1 / math.sqrt(self._tilt_info)
        return d, math.hypot(float(np.std(own)) / math.sqrt(len(own)), d * tilt_std * tilt_gain)

    def _shift_cost(self, cam, turned, step, near, q, dists):
        """Truncated squared pixel residuals summed per distance (D,), and each feature's (D, N)."""
        diff = cam.pixels(turned[None, :, :] + dists[:, None, None] * step) - q
        err2 = np.where(near, (diff * diff).sum(-1), np.inf)
        return np.minimum(err2, self.cfg.ground_px**2).sum(-1), err2


def _plausible(pose: RelativePose, cam: GroundCamera, psi: float) -> bool:
    """A measured direction of travel a car can have: measurable, forward, near the road plane the
    profile gives, along the chord of its turn give or take a sideslip."""
    m = pose.travel
    if pose.parallax_px < _MIN_PARALLAX_PX or m[2] <= 0:
        return False
    tilt, sideways = math.atan2(-m[1], m[2]), math.atan2(m[0], m[2])
    return abs(tilt - cam.pitch_rad) <= _MAX_TILT_RAD and abs(sideways - psi / 2) <= _SIDESLIP_RAD


def _turn_about(rotation: np.ndarray, normal: np.ndarray) -> float:
    """The rotation's angle about the road's normal (rad): the car's turn, right positive."""
    return -float(cv2.Rodrigues(rotation)[0].ravel() @ normal)


def _chord(normal: np.ndarray, psi: float) -> np.ndarray:
    """The car's own direction of travel: in the road plane, straight ahead turned by half the turn."""
    ahead = np.array([0.0, -normal[2], normal[1]])  # the camera's forward, laid into the road plane
    return math.sin(psi / 2) * np.array([1.0, 0.0, 0.0]) + math.cos(psi / 2) * ahead


def _lowest_surface(cost: np.ndarray, all_disagree: float) -> int:
    """Of the distances a good share of the road features agree with (local minima of the truncated cost
    with at least `_ROAD_SUPPORT` of the best one's support), the index of the smallest. Features on the
    road read the true distance; those on a rail or hedge above it, taken for road points, a longer one
    (they lie nearer than the road behind them); nothing static lies under the road."""
    support = all_disagree - cost  # the truncated squares the agreeing features save: a soft count
    peak = np.ones(len(cost), bool)
    peak[1:] &= support[1:] >= support[:-1]
    peak[:-1] &= support[:-1] >= support[1:]
    strong = np.flatnonzero(peak & (support >= _ROAD_SUPPORT * support.max()) & (support > 0))
    return int(strong[0]) if len(strong) else int(np.argmin(cost))


def _parabola_min(cost: np.ndarray, values: np.ndarray) -> float:
    """The argmin of a sampled cost, refined by a parabola through its neighbours."""
    k = int(np.argmin(cost))
    if 0 < k < len(cost) - 1:
        a, b, c = cost[k - 1], cost[k], cost[k + 1]
        denom = a - 2 * b + c
        if denom > 0:
            return float(values[k] + 0.5 * (a - c) / denom * (values[1] - values[0]))
    return float(values[k])
