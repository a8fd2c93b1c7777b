"""Camera geometry: a pinhole camera at a known height above a flat road, pitched by a known angle.

It turns a box into a distance two ways, and fuses them by their uncertainty:
- ground plane: the box's bottom edge is where the object meets the road; its image row gives the
  distance. Precise near the car, but a small pitch error (a bump, a slope) grows with distance squared.
- size prior: an object of typical real height H that spans h pixels is fy * H / h away. Its relative
  error (people and cars differ in height) is the same at every distance, so it wins far away.

A box cut by the frame border (or whose edge is too close to it to tell) has lost the edge that a cue
needs: a cut bottom has no ground contact point, a cut top or bottom no full height. Its lateral position
comes from the same ground plane: the box's columns at the object's distance, with its width bounded by a
typical rear-face width (an object off to one side also shows its flank, which widens its box toward the
image centre).
"""

from __future__ import annotations

import math

import numpy as np

from perception.core.camera_profile import CameraProfile
from perception.core.config import TTCConfig

_EDGE_PX = 2.0

class Camera:
    """The profile at one frame size, with the projections the TTC and FCW stages need."""

    def __init__(self, profile: CameraProfile, frame_hw: tuple[int, int]) -> None:
        h, w = frame_hw
        sx, sy = w / profile.image_size[0], h / profile.image_size[1]
        if profile.hfov_deg is not None:
            fx = profile.image_size[0] / 2 / math.tan(math.radians(profile.hfov_deg) / 2)
            fy, cx, cy = fx, profile.image_size[0] / 2, profile.image_size[1] / 2
        else:
            fx, fy, cx, cy = profile.fx, profile.fy, profile.cx, profile.cy
        self.fx, self.fy, self.cx, self.cy = fx * sx, fy * sy, cx * sx, cy * sy
        if profile.pitch_deg is not None:
            self.pitch_rad = math.radians(profile.pitch_deg)
        else:  # the horizon sits at fy * tan(pitch) above the principal point
            self.pitch_rad = math.atan((self.cy - profile.horizon_frac * h) / self.fy)
        self.height_m = profile.height_m
        self.frame_hw = frame_hw
        self._cos, self._sin = math.cos(self.pitch_rad), math.sin(self.pitch_rad)

    @property
    def horizon_v(self) -> float:
        return self.cy - self.fy * math.tan(self.pitch_rad)

    def project_ground(self, x_m: np.ndarray, z_m: np.ndarray, y_m: np.ndarray | float = 0.0):
        """Image (u, v) of points x_m right, z_m ahead, y_m above the road (numpy-broadcast)."""
        y_down = self.height_m - np.asarray(y_m)
        y_c = y_down * self._cos - z_m * self._sin
        z_c = y_down * self._sin + z_m * self._cos
        return self.cx + self.fx * x_m / z_c, self.cy + self.fy * y_c / z_c

    def ground_distance_m(self, v: np.ndarray) -> np.ndarray:
        """Distance ahead of the road point imaged at row v; NaN at or above the horizon."""
        r = (np.asarray(v, np.float64) - self.cy) / self.fy
        denom = r * self._cos + self._sin
        z = np.divide(
            self.height_m * (self._cos - r * self._sin),
            denom,
            out=np.full_like(r, np.nan),
            where=denom > 1e-6,
        )
        return z

    def lateral_m(self, u: np.ndarray, z_m: np.ndarray) -> np.ndarray:
        """Lateral offset (right positive) of a road point at column u, z_m ahead."""
        z_c = self.height_m * self._sin + z_m * self._cos
        return (np.asarray(u, np.float64) - self.cx) / self.fx * z_c

    def corridor_u(self, v: np.ndarray, half_width_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Left and right image columns of a straight ego corridor at image rows v."""
        z = self.ground_distance_m(v)
        half_px = half_width_m * self.fx / (self.height_m * self._sin + z * self._cos)
        return self.cx - half_px, self.cx + half_px


LEFT, TOP, RIGHT, BOTTOM = range(4)


def cut_sides(boxes_xyxy: np.ndarray, frame_hw: tuple[int, int], margin_frac: float) -> np.ndarray:
    """(N, 4) bool: which sides (left, top, right, bottom) of each box may be cut by the frame border.

    A tracker's filtered box edge wanders by a few per cent of the box's size around the detector's, which
    itself stops at the border: an edge closer to the border than `margin_frac` of the box's size (and
    never closer than _EDGE_PX) cannot be told from a cut one."""
    h, w = frame_hw
    b = boxes_xyxy.astype(np.float64)
    margin = np.maximum(_EDGE_PX, margin_frac * (b[:, 2:] - b[:, :2]))  # (N, 2): by width, by height
    return np.stack(
        (
            b[:, 0] <= margin[:, 0],
            b[:, 1] <= margin[:, 1],
            b[:, 2] >= w - margin[:, 0],
            b[:, 3] >= h - margin[:, 1],
        ),
        axis=1,
    )


def estimate_distance(
    camera: Camera,
    boxes_xyxy: np.ndarray,
    heights_m: np.ndarray,
    size_rel_std: float,
    pitch_std_rad: float,
    edge_px_std: float,
    cut: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance (m) to each box, its standard deviation (NaN where neither cue applies), and the ground
    plane's share in it (0..1: how much a change of camera pitch moves it).

    heights_m: typical real height per box (NaN: no prior for that label), size_rel_std their spread.
    cut: (N, 4) sides cut by the frame border (cut_sides); by default only edges within _EDGE_PX of it.
    """
    if cut is None:
        cut = cut_sides(boxes_xyxy, camera.frame_hw, 0.0)
    top, bottom = boxes_xyxy[:, 1].astype(np.float64), boxes_xyxy[:, 3].astype(np.float64)
    bottom_seen = ~cut[:, BOTTOM]  # a box cut by the frame edge has no ground contact point
    whole = bottom_seen & ~cut[:, TOP]

    z_ground = np.where(bottom_seen, camera.ground_distance_m(bottom), np.nan)
    # dZ/dv from one pixel of edge noise, and dZ from a pitch error: both grow as Z^2 / (fy * height).
    grow = z_ground**2 / (camera.fy * camera.height_m)
    var_ground = (grow * edge_px_std) ** 2 + (z_ground**2 / camera.height_m * pitch_std_rad) ** 2

    h_px = np.maximum(bottom - top, 1.0)
    z_size = np.where(whole, camera.fy * heights_m / h_px, np.nan)
    var_size = (z_size * size_rel_std) ** 2

    w_ground = np.where(
        np.isfinite(z_ground) & (var_ground > 0), 1.0 / np.where(var_ground > 0, var_ground, 1), 0
    )
    w_size = np.where(np.isfinite(z_size), 1.0 / np.where(var_size > 0, var_size, 1), 0)
    w_sum = w_ground + w_size
    dist = np.divide(
        np.nan_to_num(z_ground) * w_ground + np.nan_to_num(z_size) * w_size,
        w_sum,
        out=np.full_like(w_sum, np.nan),
        where=w_sum > 0,
    )
    std = np.divide(1.0, np.sqrt(w_sum), out=np.full_like(w_sum, np.nan), where=w_sum > 0)
    ground_share = np.divide(w_ground, w_sum, out=np.zeros_like(w_sum), where=w_sum > 0)
    return dist, std, ground_share


def lateral_extent(
    camera: Camera,
    boxes_xyxy: np.ndarray,
    dist_m: np.ndarray,
    dist_std_m: np.ndarray,
    widths_m: np.ndarray,
    width_rel_std: float,
    edge_px_std: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lateral centre (m, right positive), width (m) and the centre's standard deviation per box, on the
    road at the object's distance; NaN where the distance is unknown.

    An object off to one side shows its rear and its flank: the flank reaches toward the image centre
    (its far end is farther away, so nearer the vanishing point), so the box's inner edge overstates how
    far the object reaches in. The outer edge is the rear face's corner; the object reaches in from it
    by the box's width or the label's typical width `widths_m`, whichever is less. A box cut by the frame
    border keeps the border as its outer edge, which only errs toward the centre (the object reaches at
    least that far out).
    """
    u1, u2 = boxes_xyxy[:, 0].astype(np.float64), boxes_xyxy[:, 2].astype(np.float64)
    x1, x2 = camera.lateral_m(u1, dist_m), camera.lateral_m(u2, dist_m)
    wide = np.nan_to_num(widths_m, nan=np.inf)
    left_of_axis = (u1 + u2) / 2 < camera.cx
    # left of the axis: from the outer (left) edge inward; right of it: from the right edge inward
    inner = np.where(left_of_axis, np.minimum(x2, x1 + wide), np.maximum(x1, x2 - wide))
    outer = np.where(left_of_axis, x1, x2)
    centre, width = (inner + outer) / 2, np.abs(inner - outer)
    clamped = np.where(left_of_axis, x1 + wide < x2, x2 - wide > x1)
    rel_dist = np.divide(dist_std_m, dist_m, out=np.full_like(centre, np.nan), where=dist_m > 0)
    var = (centre * rel_dist) ** 2 + (dist_m / camera.fx * edge_px_std) ** 2
    var += np.where(clamped, (np.nan_to_num(widths_m) * width_rel_std / 2) ** 2, 0.0)
    return centre, width, np.sqrt(var)


class Ranging:
    """estimate_distance and lateral_extent with the configured priors and uncertainties, per driving
    label. (Per detector class would be finer, but detectors confuse car, van, truck and bus on small
    and partial views: a taxi taken for a bus would be placed twice as far.)"""

    def __init__(self, cfg: TTCConfig, labels: list[str]) -> None:
        self.cfg = cfg
        self.heights_m = np.array([cfg.object_height_m.get(label, np.nan) for label in labels])
        self.widths_m = np.array([cfg.object_width_m.get(label, np.nan) for label in labels])

    def cut_sides(self, camera: Camera, boxes_xyxy: np.ndarray) -> np.ndarray:
        return cut_sides(boxes_xyxy, camera.frame_hw, self.cfg.border_margin_frac)

    def __call__(
        self, camera: Camera, boxes_xyxy: np.ndarray, label_ids: np.ndarray, cut: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Distance, its standard deviation and its ground-plane share per box (estimate_distance)."""
        return estimate_distance(
            camera,
            boxes_xyxy,
            self.heights_m[label_ids],
            self.cfg.size_prior_rel_std,
            math.radians(self.cfg.pitch_std_deg),
            self.cfg.edge_px_std,
            self.cut_sides(camera, boxes_xyxy) if cut is None else cut,
        )

    def rate_std_mps(self, camera: Camera, dist_m: np.ndarray, ground_share: np.ndarray) -> np.ndarray:
        """How fast the estimated distance drifts while the camera pitches (braking, accelerating, bumps
        at ttc.pitch_rate_std_dps): the ground plane's Z moves by Z^2 / height per radian of pitch."""
        pitch_rate = math.radians(self.cfg.pitch_rate_std_dps)
        return np.nan_to_num(ground_share * dist_m**2 / camera.height_m * pitch_rate)

    def lateral(
        self,
        camera: Camera,
        boxes_xyxy: np.ndarray,
        label_ids: np.ndarray,
        dist_m: np.ndarray,
        dist_std_m: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return lateral_extent(
            camera,
            boxes_xyxy,
            dist_m,
            dist_std_m,
            self.widths_m[label_ids],
            self.cfg.size_prior_rel_std,
            self.cfg.edge_px_std,
        )
