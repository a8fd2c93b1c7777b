"""Global image motion between consecutive frames, from sparse features on the static scene.

Corners (goodFeaturesToTrack) on a downscaled grey copy, away from the detected boxes (other road users
move on their own), are followed into the next frame with pyramidal Lucas-Kanade and checked by tracking
them back; a RANSAC similarity (rotation, scale, translation: estimateAffinePartial2D) over the survivors
is the camera's motion. As in BoT-SORT's sparse optical flow GMC, but with a confidence: where too few
features agree (night, fog, a blank wall, a scene that moves on its own) the warp is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from perception.core.config import MotionConfig
from perception.motion.own_car import OwnCarBand

_IDENTITY = np.eye(2, 3)
_LK_WINDOW = (11, 11)
_LK_LEVELS = 3
_LK_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)


@dataclass(slots=True)
class CameraMotion:
    """How the image moved from the previous frame to this one, in full-size pixels.

    `warp_2x3` maps a previous frame's point to this frame (identity when not trusted or too small to
    matter); `applied`: it is worth applying. `points_prev`/`points_curr` are the tracked features, (N, 2)
    full-size pixels, and `inliers` those that agree with the warp: the ego-motion estimate reuses them."""

    warp_2x3: np.ndarray = field(default_factory=lambda: _IDENTITY.copy())
    trusted: bool = False
    applied: bool = False
    confidence: float | None = None  # None: no previous frame to compare with
    inlier_count: int = 0
    tracked_count: int = 0
    points_prev: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    points_curr: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    inliers: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    @property
    def near_flow_px(self) -> float:
        """How far the nearer static features moved: the 75th percentile of the tracked features'
        displacements (NaN without any). Not the median: from a car moving at speed, distant features (half
        of them, in the upper half of the frame) barely move, the road below does."""
        if len(self.points_prev) == 0:
            return float("nan")
        return float(np.percentile(np.linalg.norm(self.points_curr - self.points_prev, axis=1), 75))


def feature_mask(shape_hw: tuple[int, int], boxes_xyxy: np.ndarray, scale: float, margin_frac: float):
    """255 where features may be taken, 0 inside the (grown, scaled) boxes. Painted for all boxes at once:
    +1/-1 at each box's corners, summed along both axes, counts the boxes covering each pixel."""
    h, w = shape_hw
    if len(boxes_xyxy) == 0:
        return np.full(shape_hw, 255, np.uint8)
    b = boxes_xyxy.astype(np.float64)
    grow = (b[:, 2:] - b[:, :2]) * margin_frac
    x0, y0 = np.clip(np.floor((b[:, :2] - grow) * scale).astype(np.int64), 0, (w, h)).T
    x1, y1 = np.clip(np.ceil((b[:, 2:] + grow) * scale).astype(np.int64), 0, (w, h)).T
    marks = np.zeros((h + 1, w + 1), np.int32)
    np.add.at(marks, (y0, x0), 1)
    np.add.at(marks, (y0, x1), -1)
    np.add.at(marks, (y1, x0), -1)
    np.add.at(marks, (y1, x1), 1)
    np.cumsum(marks, axis=1, out=marks)  # along rows first: contiguous, and most rows hold no mark
    np.cumsum(marks, axis=0, out=marks)
    return (marks[:h, :w] <= 0).view(np.uint8) * np.uint8(255)


def warp_shift_px(warp_2x3: np.ndarray, frame_hw: tuple[int, int]) -> float:
    """The largest displacement the warp gives any image corner (the most it moves any pixel)."""
    h, w = frame_hw
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    moved = corners @ warp_2x3.T
    return float(np.abs(moved - corners[:, :2]).max())


class CameraMotionEstimator:
    """Per stream: keeps the previous grey frame and its features; `estimate` once per frame."""

    def __init__(self, cfg: MotionConfig | None = None, hood_row_frac: float | None = None) -> None:
        self.cfg = cfg or MotionConfig()
        self.own_car = OwnCarBand(self.cfg, hood_row_frac)  # the car's own hood: no features from it
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (a new stream, another resolution)."""
        self.own_car.reset()
        self._prev: np.ndarray | None = None
        self._prev_points: np.ndarray | None = None
        self._scale = 1.0

    def _grey(self, image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        self._scale = min(1.0, self.cfg.max_side_px / max(h, w))
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        if self._scale < 1.0:
            size = (max(1, round(w * self._scale)), max(1, round(h * self._scale)))
            grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(grey)

    def estimate(self, image: np.ndarray, boxes_xyxy: np.ndarray) -> CameraMotion:
        """This frame's motion against the previous one; `boxes_xyxy` (N, 4): this frame's detections,
        whose pixels give no features for the next frame."""
        cfg = self.cfg
        grey = self._grey(image)
        prev, prev_points = self._prev, self._prev_points
        mask = feature_mask(grey.shape[:2], boxes_xyxy, self._scale, cfg.box_margin_frac)
        self.own_car.clear_features(mask)  # the car's own hood, burnt-in text: not the scene
        self._prev = grey
        self._prev_points = self._features(grey, mask)
        if prev is None or prev.shape != grey.shape:
            return CameraMotion()
        if prev_points is None or len(prev_points) < 3:
            return CameraMotion(confidence=0.0)
        motion = self._measure(prev, grey, prev_points, image.shape[:2])
        self.own_car.update(prev, grey, motion.trusted and motion.near_flow_px >= cfg.still_flow_px)
        return motion

    def _features(self, grey: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
        """Corners from the upper and the lower half separately, half the budget each: the strongest ones
        crowd into foliage and skylines, while the road below (what the ego motion needs) and a spread over
        the frame (what pins a rotation) have weaker ones."""
        cfg, mid, parts = self.cfg, grey.shape[0] // 2, []
        for top, bottom in ((0, mid), (mid, grey.shape[0])):
            found = cv2.goodFeaturesToTrack(
                grey[top:bottom], cfg.max_features // 2, cfg.feature_quality, cfg.feature_spacing_px,
                mask=mask[top:bottom], blockSize=3,
            )  # fmt: skip
            if found is not None:
                parts.append(found.reshape(-1, 2) + (0.0, top))
        return np.concatenate(parts).reshape(-1, 1, 2).astype(np.float32) if parts else None

    def _measure(
        self, prev: np.ndarray, grey: np.ndarray, p0: np.ndarray, frame_hw: tuple[int, int]
    ) -> CameraMotion:
        cfg = self.cfg
        lk = {"winSize": _LK_WINDOW, "maxLevel": _LK_LEVELS, "criteria": _LK_CRITERIA}
        p1, ok1, _ = cv2.calcOpticalFlowPyrLK(prev, grey, p0, None, **lk)
        back, ok2, _ = cv2.calcOpticalFlowPyrLK(grey, prev, p1, None, **lk)
        fb_error = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
        good = ok1.ravel().astype(bool) & ok2.ravel().astype(bool) & (fb_error <= cfg.max_fb_error_px)
        a, b = p0.reshape(-1, 2)[good], p1.reshape(-1, 2)[good]
        inv = 1.0 / self._scale
        motion = CameraMotion(
            confidence=0.0,
            tracked_count=len(a),
            points_prev=a * inv,
            points_curr=b * inv,
            inliers=np.zeros(len(a), bool),
        )
        if len(a) < 3:
            return motion
        warp, inliers = cv2.estimateAffinePartial2D(
            a, b, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_px, maxIters=500, confidence=0.995
        )
        if warp is None or inliers is None:
            return motion
        motion.inliers = inliers.ravel().astype(bool)
        n_in = int(motion.inliers.sum())
        ratio = n_in / len(a)
        motion.inlier_count = n_in
        # Agreement, discounted while the agreeing features are still few.
        motion.confidence = round(ratio * min(1.0, n_in / (2.0 * cfg.min_inliers)), 4)
        motion.trusted = n_in >= cfg.min_inliers and ratio >= cfg.min_inlier_ratio
        if not motion.trusted:
            return motion
        warp = warp.astype(np.float64)
        warp[:, 2] *= inv  # the linear part is the same at every scale; the shift scales back to full size
        if warp_shift_px(warp, frame_hw) > cfg.min_shift_px:
            motion.warp_2x3, motion.applied = warp, True
        return motion
