"""The camera's motion between two frames from its tracked static features, up to the distance travelled:
rotation and direction of travel (two-view geometry; perception/motion/ego.py reads a car's motion out of
it).

The essential matrix (the five-point solver inside MAGSAC++, cv2.findEssentialMat) holds for every static
point whatever its distance; features on other road users are its outliers. For a given direction of
travel the rotation is refined in closed form (`rotation_given`): a narrow view confuses a small turn with
a small sideways shift, and the car's kinematics may pin the travel where the features do not.

Coordinates: the camera's, x right, y down, z ahead; X_curr = R (X_prev - d m) with m the unit direction
of travel in the previous frame's coordinates (OpenCV's convention: X_curr = R X_prev + t, t = -d R m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

_MAX_ROTATION_RAD = math.radians(20.0)  # between two frames, about any axis: a car does not turn so far
_MIN_SPREAD = 0.05  # the agreeing features' narrow extent over their wide one, at least
_MAX_FEATURES = 300  # the solver's cost grows with the features: an evenly spread sample pins it as well


@dataclass(frozen=True, slots=True)
class GroundCamera:
    """The numbers of the camera the fits need, at the frame's size (from perception/threat/camera.py's
    Camera, which this stage may not import)."""

    fx: float
    fy: float
    cx: float
    cy: float
    pitch_rad: float  # down positive: the profile's tilt of the camera against the road
    height_m: float

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def rays(self, uv: np.ndarray) -> np.ndarray:
        """Camera-frame ray directions (N, 3), z = 1, of pixels (N, 2)."""
        return np.column_stack(
            ((uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy, np.ones(len(uv)))
        )

    def pixels(self, points: np.ndarray) -> np.ndarray:
        """Pixels (..., 2) of camera-frame points (..., 3)."""
        z = np.maximum(points[..., 2], 1e-6)
        return np.stack(
            (self.cx + self.fx * points[..., 0] / z, self.cy + self.fy * points[..., 1] / z), axis=-1
        )


@dataclass(frozen=True, slots=True)
class RelativePose:
    """The camera's motion between two frames, up to the distance travelled."""

    rotation: np.ndarray  # R (3, 3)
    travel: np.ndarray  # m (3,): unit direction of travel, previous frame's camera coordinates
    inliers: np.ndarray  # (N,) bool over the features given: those it explains
    rays_prev: np.ndarray  # (n, 3) the inliers' rays in the previous frame, z = 1, in feature order
    rays_curr: np.ndarray  # (n, 3) ... and in this one
    sigma_px: float  # their distance from their epipolar lines (Sampson), RMS
    parallax_px: float  # their median flow once the rotation is taken out: how well the travel is pinned


def spread(n: int, limit: int) -> np.ndarray:
    """Indices of an evenly spread sample of at most `limit` of `n` items (features come strongest first:
    a spread keeps weak and strong ones, and their spread over the picture)."""
    return np.arange(n) if n <= limit else np.linspace(0, n - 1, limit).astype(np.int64)


def relative_pose(
    prev: np.ndarray, curr: np.ndarray, cam: GroundCamera, threshold_px: float, min_inliers: int
) -> RelativePose | None:
    """R and the direction of travel that features `prev` -> `curr` (N, 2 pixels) agree with, or None
    where too few agree."""
    pick = spread(len(prev), _MAX_FEATURES)
    x1, x2 = prev[pick], curr[pick]
    k = cam.matrix
    e, mask = cv2.findEssentialMat(x1, x2, k, method=cv2.USAC_MAGSAC, prob=0.999, threshold=threshold_px)
    if e is None or mask is None or e.shape[0] < 3:
        return None
    e = e[:3]  # several solutions stacked: the first is the best supported
    ok = mask.ravel() > 0
    if ok.sum() < min_inliers:
        return None
    spans = np.linalg.svd(x1[ok] - x1[ok].mean(axis=0), compute_uv=False)
    if spans[1] < _MIN_SPREAD * spans[0]:
        return None  # features along one line (a kerb on a blank frame): any motion fits them
    rotation, travel = _car_solution(e)
    if (np.trace(rotation) - 1) / 2 < math.cos(_MAX_ROTATION_RAD):
        return None  # degenerate (features on a line, one plane seen edge-on): no camera turns so far
    r1, r2 = cam.rays(x1[ok]), cam.rays(x2[ok])
    sigma_px = math.sqrt(float(np.mean(sampson_px(e, r1, r2, cam.fx)[0] ** 2)))
    parallax_px = float(np.median(np.linalg.norm(cam.pixels(r1 @ rotation.T) - x2[ok], axis=1)))
    inliers = np.zeros(len(prev), bool)
    inliers[pick[ok]] = True
    return RelativePose(rotation, travel, inliers, r1, r2, sigma_px, parallax_px)


def _car_solution(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Of the essential matrix's four (R, t) a car's: the smaller rotation (a car turns by degrees between
    frames, not by half a turn) and travel forward (reversing reads as forward). Cheaper than triangulating
    every feature for all four (cv2.recoverPose), and as sure for a car."""
    r1, r2, t = cv2.decomposeEssentialMat(e)
    rotation = r1 if np.trace(r1) >= np.trace(r2) else r2
    travel = -(rotation.T @ t.ravel())
    return rotation, travel if travel[2] >= 0 else -travel


def sampson_px(e: np.ndarray, r1: np.ndarray, r2: np.ndarray, fx: float) -> tuple[np.ndarray, np.ndarray]:
    """Each ray pair's signed distance from its epipolar line under E (pixels at focal length `fx`), and
    the factor from the algebraic residual r2.E.r1 to it."""
    e1, e2 = r1 @ e.T, r2 @ e
    scale = fx / np.sqrt(e1[:, 0] ** 2 + e1[:, 1] ** 2 + e2[:, 0] ** 2 + e2[:, 1] ** 2 + 1e-18)
    return scale * np.einsum("ij,ij->i", r2, e1), scale


def rotation_given(
    travel: np.ndarray,
    rotation: np.ndarray,
    r1: np.ndarray,
    r2: np.ndarray,
    fx: float,
    robust_px: float,
    passes: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """The rotation that best explains rays r1 -> r2 (N, 3) for a given direction of travel, starting at
    `rotation`, and its covariance (3, 3, rad^2). For a small correction w (R -> R (I + [w]x)) the epipolar
    constraint is linear in w: solved in closed form, re-weighted (Cauchy at `robust_px`) against the odd
    mismatch."""
    cov = np.full((3, 3), np.inf)
    for _ in range(passes):
        t = -(rotation @ travel)
        res, scale = sampson_px(_skew(t) @ rotation, r1, r2, fx)
        # d(r2 . t x R (w x r1))/dw = r1 x u with u = R^T (r2 x t)
        jac = scale[:, None] * np.cross(r1, np.cross(r2, t) @ rotation)
        weight = 1.0 / (1.0 + (res / robust_px) ** 2)
        try:
            inv = np.linalg.inv(jac.T @ (jac * weight[:, None]))
        except np.linalg.LinAlgError:
            return rotation, cov
        rotation = rotation @ cv2.Rodrigues(-inv @ (jac.T @ (weight * res)))[0]
        cov = float((weight * res * res).sum() / max(float(weight.sum()) - 3.0, 1.0)) * inv
    return rotation, cov


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
