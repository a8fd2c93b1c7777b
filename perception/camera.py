"""Camera geometry: a pinhole camera at a known height above a flat road, pitched by a known angle.

It turns a box into a distance two ways, and fuses them by their uncertainty:
- ground plane: the box's bottom edge is where the object meets the road; its image row gives the
  distance. Precise near the car, but a small pitch error (a bump, a slope) grows with distance squared.
- size prior: an object of typical real height H that spans h pixels is fy * H / h away. Its relative
  error (people and cars differ in height) is the same at every distance, so it wins far away.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perception.config import TTCConfig
from perception.errors import PerceptionError

CAMERA_DIR = Path(__file__).resolve().parent.parent / "configs" / "cameras"
_PACKAGED_CAMERA_DIR = Path(__file__).resolve().parent / "configs" / "cameras"
_EDGE_PX = 2.0


class CameraProfile(BaseModel):
    """Intrinsics either explicit (fx, fy, cx, cy) or from a horizontal field of view; pitch either
    explicit or from the image row of the horizon. Values refer to `image_size` and scale with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]  # width, height
    height_m: Annotated[float, Field(gt=0, le=10)]
    fx: Annotated[float, Field(gt=0)] | None = None
    fy: Annotated[float, Field(gt=0)] | None = None
    cx: float | None = None
    cy: float | None = None
    hfov_deg: Annotated[float, Field(gt=1, lt=179)] | None = None
    pitch_deg: Annotated[float, Field(ge=-45, le=45)] | None = None  # positive: looking down
    horizon_frac: Annotated[float, Field(gt=0, lt=1)] | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> CameraProfile:
        explicit = [v is not None for v in (self.fx, self.fy, self.cx, self.cy)]
        if all(explicit) == (self.hfov_deg is not None) or (any(explicit) and not all(explicit)):
            raise ValueError("give either fx, fy, cx, cy or hfov_deg")
        if (self.pitch_deg is None) == (self.horizon_frac is None):
            raise ValueError("give either pitch_deg or horizon_frac")
        return self


def load_camera_profile(name_or_path: str) -> CameraProfile:
    """A profile by name (configs/cameras/NAME.yaml) or by path."""
    path = Path(name_or_path)
    if not path.suffix:
        packaged = _PACKAGED_CAMERA_DIR / f"{name_or_path}.yaml"
        path = packaged if packaged.is_file() else CAMERA_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise PerceptionError(f"camera profile not found: {name_or_path}")
    try:
        return CameraProfile.model_validate(yaml.safe_load(path.read_text()))
    except (ValidationError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()
        raise PerceptionError(f"camera profile {path}: {' '.join(first[:3])}") from None


def profile_from_kitti_calib(
    calib_path: Path, image_wh: tuple[int, int], height_m: float = 1.65
) -> CameraProfile:
    """KITTI's left colour camera (P2 of a calib/NNNNNN.txt), level, at KITTI's mounting height."""
    line = next((x for x in Path(calib_path).read_text().splitlines() if x.startswith("P2:")), None)
    if line is None:
        raise PerceptionError(f"no P2 matrix in {calib_path}")
    p2 = np.array(line.split()[1:], float).reshape(3, 4)
    return CameraProfile(
        image_size=image_wh,
        fx=p2[0, 0],
        fy=p2[1, 1],
        cx=p2[0, 2],
        cy=p2[1, 2],
        height_m=height_m,
        pitch_deg=0.0,
    )


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


def estimate_distance(
    camera: Camera,
    boxes_xyxy: np.ndarray,
    heights_m: np.ndarray,
    size_rel_std: float,
    pitch_std_rad: float,
    edge_px_std: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Distance (m) to each box and its standard deviation; NaN where neither cue applies.

    heights_m: typical real height per box (NaN: no prior for that label).
    """
    h_img, _ = camera.frame_hw
    top, bottom = boxes_xyxy[:, 1].astype(np.float64), boxes_xyxy[:, 3].astype(np.float64)
    bottom_seen = bottom < h_img - _EDGE_PX  # a box cut by the frame edge has no ground contact point
    whole = bottom_seen & (top > _EDGE_PX)

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
    return dist, std


class Ranging:
    """estimate_distance with the configured height priors and uncertainties, per driving label."""

    def __init__(self, cfg: TTCConfig, labels: list[str]) -> None:
        self.cfg = cfg
        self.heights_m = np.array([cfg.object_height_m.get(label, np.nan) for label in labels])

    def __call__(
        self, camera: Camera, boxes_xyxy: np.ndarray, label_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return estimate_distance(
            camera,
            boxes_xyxy,
            self.heights_m[label_ids],
            self.cfg.size_prior_rel_std,
            math.radians(self.cfg.pitch_std_deg),
            self.cfg.edge_px_std,
        )
