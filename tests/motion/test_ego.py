"""Ego motion by geometry: a synthetic road scene seen by a known camera, moved by a known turn and
distance, is read back (over several draws of noise and mismatches: a narrow view confuses a turn with a
sideways shift now and then, and the stated uncertainty must cover it); a still scene reads stopped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from perception.core.config import MotionConfig
from perception.motion.camera_motion import CameraMotion
from perception.motion.ego import EgoMotionEstimator, GroundCamera

KIND = "unit"
CAM = GroundCamera(fx=718.856, fy=718.856, cx=607.19, cy=185.22, pitch_rad=0.0, height_m=1.65)
DT_S = 0.1


def _project(cam: GroundCamera, points: np.ndarray, pitch_rad: float) -> np.ndarray:
    """Pixels (N, 2) of 'level'-frame points (N, 3) (x right, y down along the road's normal, z ahead)
    seen by the camera pitched down by `pitch_rad` against that frame."""
    c, s = math.cos(pitch_rad), math.sin(pitch_rad)
    yc = c * points[:, 1] - s * points[:, 2]
    zc = np.maximum(s * points[:, 1] + c * points[:, 2], 1e-6)
    return np.column_stack((cam.cx + cam.fx * points[:, 0] / zc, cam.cy + cam.fy * yc / zc))


def scene(rng: np.random.Generator, rail_share: float = 0.0) -> np.ndarray:
    """Level-frame points: the road ahead (4-35 m, +-8 m sideways) and trees and hills (above it); a share
    of the road's points moved onto guard rails 0.75 m above it, 4-6 m to either side."""
    road = np.column_stack((rng.uniform(-8, 8, 150), np.full(150, CAM.height_m), rng.uniform(4, 35, 150)))
    rail = rng.random(150) < rail_share
    road[rail, 0] = rng.choice([-1.0, 1.0], int(rail.sum())) * rng.uniform(4, 6, int(rail.sum()))
    road[rail, 1] = CAM.height_m - 0.75
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


def read_back(yaw_dps: float, speed_mps: float, seeds: range, rail_share: float = 0.0) -> np.ndarray:
    """(seeds, 4): yaw rate and speed errors and their stated standard deviations at the fourth frame of
    a drive (the road's tilt is pooled over a fraction of a second), one drive per seed."""
    rows = []
    for seed in seeds:
        rng, estimator = np.random.default_rng(seed), EgoMotionEstimator(MotionConfig())
        for _ in range(4):
            motion = observe(scene(rng, rail_share), math.radians(yaw_dps) * DT_S, speed_mps * DT_S, rng)
            ego = estimator.estimate(motion, CAM, DT_S)
        assert ego.stopped is False
        rows.append(
            (ego.yaw_rate_dps - yaw_dps, ego.speed_mps - speed_mps, ego.yaw_rate_std_dps, ego.speed_std_mps)
        )
    return np.array(rows)


@pytest.mark.parametrize(
    "yaw_dps, speed_mps", [(25.0, 9.6), (-12.0, 14.0), (0.0, 20.0), (3.0, 5.0), (10.0, 2.0)]
)
def test_turn_and_speed_are_read_back(yaw_dps: float, speed_mps: float) -> None:
    errors = read_back(yaw_dps, speed_mps, range(8))
    yaw_err, speed_err, yaw_std, speed_std = np.abs(errors).T
    assert np.median(yaw_err) < 0.2 and yaw_err.max() < 1.0  # deg/s
    assert np.all(yaw_err <= 3 * yaw_std) and np.all(yaw_std < 1.5)
    assert np.median(speed_err) < 0.02 * speed_mps and speed_err.max() < 0.08 * speed_mps
    # At a crawl the shift barely shows, the road's tilt is the profile's (known to ~2 degrees), and the
    # speed's uncertainty says so.
    assert np.all(speed_err <= 3 * speed_std) and np.all(speed_std < 0.6 * speed_mps)
    assert np.median(speed_std) < (0.05 if speed_mps >= 9 else 0.5) * speed_mps


def test_rails_above_the_road_do_not_pass_for_it() -> None:
    """A third of the road's features on guard rails 0.75 m up: taken for road points they read the
    distance 1.65 / 0.9 times too long, and they agree with each other; the road is the lowest surface."""
    errors = read_back(20.0, 12.0, range(6), rail_share=0.35)
    assert np.median(np.abs(errors[:, 1])) < 0.03 * 12.0 and np.abs(errors[:, 1]).max() < 0.08 * 12.0


def test_a_camera_pitched_other_than_its_profile_says() -> None:
    """Pitched 2 degrees down while the profile says level (a nod, a slope): the first frame leans on the
    profile, and says so in its uncertainty; within half a second the road's tilt is learnt from the
    direction of travel, the turn holds and the speed is within 5 %."""
    estimator, rng = EgoMotionEstimator(MotionConfig()), np.random.default_rng(8)
    egos = []
    for _ in range(6):
        motion = observe(scene(rng), math.radians(25.0) * DT_S, 0.96, rng, pitch_rad=math.radians(2.0))
        egos.append(estimator.estimate(motion, CAM, DT_S))
    assert abs(egos[0].speed_mps - 9.6) <= 3 * egos[0].speed_std_mps
    for ego in egos[3:]:
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


def test_degenerate_features_give_no_motion() -> None:
    """Features all on one image line (a blank frame but for a kerb): the essential matrix is anything;
    no rotation a car could make comes out of it, and the ego motion stays unknown rather than wrong."""
    from perception.motion.pose import relative_pose

    line = np.column_stack((np.arange(40.0) * 10, np.full(40, 200.0)))
    assert relative_pose(line, line + 0.01, CAM, 1.5, 25) is None
