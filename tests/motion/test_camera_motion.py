"""Camera motion: known warps of a real dashcam frame are recovered; a still camera gives the identity; a
frame without texture is not trusted."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.core.config import MotionConfig
from perception.motion import CameraMotionEstimator
from perception.motion.camera_motion import feature_mask, warp_shift_px

KIND = "integration"
NO_BOXES = np.zeros((0, 4), np.float32)


def warp_of(frame_hw: tuple[int, int], roll_deg: float, shift_px: tuple[float, float]) -> np.ndarray:
    h, w = frame_hw
    m = cv2.getRotationMatrix2D((w / 2, h / 2), roll_deg, 1.0)
    m[:, 2] += shift_px
    return m


def measure(first: np.ndarray, second: np.ndarray, boxes: np.ndarray = NO_BOXES, **cfg):
    estimator = CameraMotionEstimator(MotionConfig(**cfg))
    assert estimator.estimate(first, boxes).confidence is None  # no previous frame yet
    return estimator.estimate(second, boxes)


@pytest.mark.parametrize(
    "roll_deg, shift_px", [(0.0, (15.0, -8.0)), (1.5, (-20.0, 12.0)), (-0.4, (6.0, 3.0)), (0.8, (0.0, 0.0))]
)
def test_known_warps_of_a_real_frame_are_recovered(highway_frame, roll_deg, shift_px) -> None:
    hw = highway_frame.shape[:2]
    truth = warp_of(hw, roll_deg, shift_px)
    moved = cv2.warpAffine(highway_frame, truth, hw[::-1], borderMode=cv2.BORDER_REFLECT)
    motion = measure(highway_frame, moved)
    assert motion.trusted and motion.applied and motion.confidence > 0.8
    # Every pixel lands where the true warp puts it, within half a pixel.
    h, w = hw
    grid = np.stack(np.meshgrid(np.linspace(0, w, 9), np.linspace(0, h, 9)), -1).reshape(-1, 2)
    ones = np.ones((len(grid), 1))
    err = np.abs(np.hstack((grid, ones)) @ motion.warp_2x3.T - np.hstack((grid, ones)) @ truth.T)
    assert err.max() < 0.5


def test_a_still_camera_gives_exactly_the_identity(highway_frame) -> None:
    motion = measure(highway_frame, highway_frame.copy())
    assert motion.trusted and not motion.applied
    assert np.array_equal(motion.warp_2x3, np.eye(2, 3))
    assert motion.near_flow_px < 0.05


def test_a_blank_or_foggy_frame_is_not_trusted(highway_frame) -> None:
    blank = np.full_like(highway_frame, 90)
    motion = measure(blank, blank)
    assert not motion.trusted and not motion.applied and motion.confidence == 0.0
    assert np.array_equal(motion.warp_2x3, np.eye(2, 3))
    # Heavy fog: contrast nearly gone, noise dominates; whatever is found must not move the tracks.
    rng = np.random.default_rng(1)
    fog = (0.03 * highway_frame + 200).astype(np.uint8)
    noisy = [np.clip(fog + rng.normal(0, 2, fog.shape), 0, 255).astype(np.uint8) for _ in range(2)]
    motion = measure(*noisy)
    assert not motion.applied


def test_features_avoid_detected_boxes(highway_frame) -> None:
    """A box covering all but a thin border leaves no features where other vehicles move."""
    h, w = highway_frame.shape[:2]
    mask = feature_mask((h // 2, w // 2), np.array([[10, 10, w - 10, h - 10]], np.float32), 0.5, 0.0)
    assert mask[5:-5, 5:-5].max() == 0 and mask[0].min() == 255
    boxes = np.array([[0, 0, w, h]], np.float32)
    motion = measure(highway_frame, highway_frame, boxes)
    assert motion.tracked_count == 0 and not motion.trusted


def test_warp_shift_is_the_largest_corner_displacement() -> None:
    assert warp_shift_px(np.eye(2, 3), (540, 960)) == 0.0
    shifted = np.array([[1.0, 0, 3.0], [0, 1.0, -4.0]])
    assert warp_shift_px(shifted, (540, 960)) == 4.0


@pytest.mark.unit
def test_feature_mask_matches_painting_each_box() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(-50, 1000, (40, 2))
    boxes = np.hstack((xy, xy + rng.uniform(5, 300, (40, 2)))).astype(np.float32)
    mask = feature_mask((270, 480), boxes, 0.5, 0.1)
    painted = np.full((270, 480), 255, np.uint8)
    grow = (boxes[:, 2:] - boxes[:, :2]) * 0.1
    lo = np.clip(np.floor((boxes[:, :2] - grow) * 0.5).astype(int), 0, (480, 270))
    hi = np.clip(np.ceil((boxes[:, 2:] + grow) * 0.5).astype(int), 0, (480, 270))
    for (x0, y0), (x1, y1) in zip(lo, hi, strict=True):
        painted[y0:y1, x0:x1] = 0
    assert np.array_equal(mask, painted)
