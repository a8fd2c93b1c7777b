"""The `motion:` section of the config (camera and ego motion, perception/motion/), in a module of its own so
config.py stays small; `perception.core.config` imports it from here. configs/default.yaml explains each
key."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from perception.core.config_base import Fraction, PosFloat, _Strict


class MotionConfig(_Strict):
    enabled: bool = True
    max_side_px: Annotated[int, Field(ge=64, le=4096)] = 480
    max_features: Annotated[int, Field(ge=8, le=5000)] = 400
    feature_quality: Annotated[float, Field(gt=0, lt=1)] = 0.01
    feature_spacing_px: Annotated[float, Field(ge=1, le=100)] = 8.0
    box_margin_frac: Annotated[float, Field(ge=0, le=1)] = 0.1
    ransac_px: PosFloat = 1.0
    max_fb_error_px: PosFloat = 1.0
    min_inliers: Annotated[int, Field(ge=3, le=5000)] = 25
    min_inlier_ratio: Fraction = 0.3
    min_shift_px: Annotated[float, Field(ge=0)] = 0.5
    still_flow_px: Annotated[float, Field(ge=0)] = 0.3
    ego: bool = True
    min_ground_points: Annotated[int, Field(ge=3, le=5000)] = 12
    ground_px: PosFloat = 1.5
    max_ground_dist_m: PosFloat = 40.0
    own_car_learn_frames: Annotated[int, Field(ge=0, le=100000)] = 50
