"""Camera profiles: what a user knows of a camera (field of view or intrinsics, mounting height, pitch or
horizon), as YAML in configs/cameras/ or a file, validated at load. The geometry that uses them lives in
perception/threat/camera.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from perception.core.errors import PerceptionError

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # perception/
CAMERA_DIR = PACKAGE_DIR.parent / "configs" / "cameras"
_PACKAGED_CAMERA_DIR = PACKAGE_DIR / "configs" / "cameras"


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
    # the car's own hood or dashboard: rows below this share of the height (None: learnt from the video)
    hood_row_frac: Annotated[float, Field(gt=0, le=1)] | None = None

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
