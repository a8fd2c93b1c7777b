"""Ego motion by geometry: a synthetic road scene seen by a known camera, moved by a known turn and
distance, is read back; a still scene reads stopped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.core.config import MotionConfig
from perception.motion.camera_motion import CameraMotion
from perception.motion.ego import EgoMotionEstimator, GroundCamera, _project

KIND = "unit"
CAM = GroundCamera(fx=718.856, fy=718.856, cx=607.19, cy=185.22, pitch_rad=0.0, height_m=1.65)
DT_S = 0.1


def scene(rng: np.random.Generator) -> np.ndarray:
    """Level-frame points: the road ahead (4-35 m, +-8 m sideways) and trees and hills (above it)."""
    road = np.column_stack((rng.uniform(-8, 8, 150), np.full(150, CAM.height_m), rng.uniform(4, 35, 150)))
    far = np.column_stack((rng.uniform(-80, 80, 150), rng.uniform(-15, 1.0, 150), rng.uniform(30, 300, 150)))
    return np.concatenate((road, far))


def observe(
    points: np.ndarray, psi: float, dist_m: float, rng: np.random.Generator, pitch_rad: float = 0.0
) -> CameraMotion:
    """The features as tracked from the previous frame to this one after the car turned by psi along the
    chord of its arc by dist_m, with 0.3 px of tracking noise and 10 % of mismatches; the camera pitched
    down by pitch_rad against the road."""
    t = dist_m * np.array([math.sin(psi / 2), 0.0, math.cos(psi / 2)])
    c, s = math.cos(psi), math.sin(psi)
    x, z = points[:, 0] - t[0], points[:, 2] - t[2]
    moved = np.column_stack((c * x - s * z, points[:, 1], s * x + c * z))
    prev, curr = _project(CAM, points, pitch_rad), _project(CAM, moved, pitch_rad)
    seen = (prev[:, 0] > 0) & (prev[:, 0] < 1241) & (prev[:, 1] > 0) & (prev[:, 1] < 376)
    seen &= (curr[:, 0] > 0) & (curr[:, 0] < 1241) & (curr[:, 1] > 0) & (curr[:, 1] < 376)
    prev, curr = prev[seen], curr[seen] + rng.normal(0, 0.3, (int(seen.sum()), 2))
    wrong = rng.random(len(curr)) < 0.1
    curr[wrong] += rng.uniform(-30, 30, (int(wrong.sum()), 2))
    n = len(prev)
    return CameraMotion(
        trusted=True, confidence=0.9, inlier_count=n, tracked_count=n, points_prev=prev.astype(np.float32),
        points_curr=curr.astype(np.float32), inliers=np.ones(n, bool),
    )  # fmt: skip


@pytest.mark.parametrize("yaw_dps, speed_mps", [(25.0, 9.6), (-12.0, 14.0), (0.0, 20.0), (3.0, 5.0)])
def test_turn_and_speed_are_read_back(yaw_dps: float, speed_mps: float) -> None:
    rng = np.random.default_rng(4)
    motion = observe(scene(rng), math.radians(yaw_dps) * DT_S, speed_mps * DT_S, rng)
    ego = EgoMotionEstimator(MotionConfig()).estimate(motion, CAM, DT_S)
    assert ego.stopped is False
    assert abs(ego.yaw_rate_dps - yaw_dps) < 0.5 and ego.yaw_rate_std_dps < 0.5
    assert abs(ego.speed_mps - speed_mps) < 0.05 * speed_mps and ego.speed_std_mps < 0.1 * speed_mps


def test_a_camera_pitched_other_than_its_profile_says() -> None:
    """Pitched 2 degrees down while the profile says level (a nod, a slope): the turn holds, the speed
    stays within 5 %."""
    rng = np.random.default_rng(8)
    motion = observe(scene(rng), math.radians(25.0) * DT_S, 0.96, rng, pitch_rad=math.radians(2.0))
    ego = EgoMotionEstimator(MotionConfig()).estimate(motion, CAM, DT_S)
    assert abs(ego.yaw_rate_dps - 25.0) < 0.5
    assert abs(ego.speed_mps - 9.6) < 0.05 * 9.6


def test_a_still_scene_reads_stopped() -> None:
    rng = np.random.default_rng(5)
    points = _project(CAM, scene(rng), 0.0)
    points = points[(points[:, 1] > 0) & (points[:, 1] < 376) & (points[:, 0] > 0) & (points[:, 0] < 1241)]
    n = len(points)
    still = CameraMotion(
        trusted=True, confidence=1.0, inlier_count=n, tracked_count=n, points_prev=points.astype(np.float32),
        points_curr=(points + rng.normal(0, 0.05, points.shape)).astype(np.float32), inliers=np.ones(n, bool),
    )  # fmt: skip
    ego = EgoMotionEstimator(MotionConfig()).estimate(still, CAM, DT_S)
    assert ego.stopped is True and ego.speed_mps == 0.0 and ego.yaw_rate_dps == 0.0


def test_unknown_without_a_previous_frame_or_a_camera() -> None:
    estimator = EgoMotionEstimator(MotionConfig())
    first = estimator.estimate(CameraMotion(), CAM, DT_S)
    assert math.isnan(first.speed_mps) and first.stopped is None and first.camera_motion_confidence is None
    rng = np.random.default_rng(6)
    motion = observe(scene(rng), 0.05, 1.0, rng)
    no_camera = estimator.estimate(motion, None, DT_S)
    assert (
        math.isnan(no_camera.speed_mps) and math.isnan(no_camera.yaw_rate_dps) and no_camera.stopped is False
    )
