"""Optical-flow scale: the growth of a real crop pasted at sub-pixel sizes is measured exactly."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.eval.synthetic import _paste, load_assets
from perception.threat.flow import flow_scale
from tests.conftest import ASSETS

KIND = "integration"


def test_flow_scale_measures_growth_of_a_real_crop() -> None:
    road, sprites = load_assets(ASSETS)
    sprite = sprites["car"].image
    gray = lambda image: cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # noqa: E731
    for height_px, ratio in ((50, 1.02), (90, 1.04), (90, 1.0), (60, 0.98)):
        width_px = height_px * sprite.shape[1] / sprite.shape[0]
        x1, y1 = 400.3, 300.6
        before, after = road.copy(), road.copy()
        _paste(before, sprite, x1, y1, x1 + width_px, y1 + height_px)
        cx, cy = x1 + width_px / 2, y1 + height_px / 2
        hw, hh = width_px * ratio / 2, height_px * ratio / 2
        _paste(after, sprite, cx - hw, cy - hh, cx + hw, cy + hh)
        measured = flow_scale(gray(before), gray(after), np.array([[x1, y1, x1 + width_px, y1 + height_px]]))[
            0
        ]
        assert measured == pytest.approx(ratio, abs=0.004), (height_px, ratio)
