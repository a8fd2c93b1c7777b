"""The car's own parts in the picture: a hood or dashboard along the bottom that stays still while the scene
moves. Nothing may come from it: no feature for the camera's motion, no detection (a hood is detected as a
wide `vehicle` along the bottom edge, the same track for a whole clip).

Learnt from the first moving frames (the camera's motion trusted and not still): per image row of the
downscaled grey frame, how many textured pixels (a spatial gradient above `texture`) changed from the last
frame (moving) and how many did not (static). Rows of the car's own body hold static texture (the hood's
edge, reflections fixed to it, the dashboard) and no moving texture; the scene's rows, moving texture.
Scanning up from the bottom, the rows with no moving texture form the band, kept only if static texture
shows in it (a smooth road holds no texture either way and is never taken for the car). The camera profile
can give the band instead (`hood_row_frac`).
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.core.motion_config import MotionConfig

_TEXTURE = 24.0  # a pixel is textured above this gradient (grey levels per pixel, Sobel 3x3 / 8 scaled)
_CHANGED = 12.0  # ... and changed if its grey level moved by more than this between two frames
_MAX_BAND_FRAC = 0.45  # the car's parts never reach above this share of the picture, from the bottom
_MOVING_ROW_FRAC = 0.01  # a row whose moving textured pixels exceed this share of its width is scene


class OwnCarBand:
    """Per stream: learns the bottom band of the car's own parts; `row_frac` once known (None before,
    1.0 when there is none)."""

    def __init__(self, cfg: MotionConfig, given_row_frac: float | None = None) -> None:
        self.cfg = cfg
        self.given = given_row_frac
        self.reset()

    def reset(self) -> None:
        self._moving: np.ndarray | None = None
        self._static: np.ndarray | None = None
        self._frames = 0
        self.row_frac: float | None = self.given if self.given is not None else None
        if self.cfg.own_car_learn_frames == 0 and self.given is None:
            self.row_frac = 1.0  # learning off: no band

    def update(self, prev: np.ndarray, grey: np.ndarray, moving: bool) -> None:
        """One pair of consecutive downscaled grey frames; counted only while the scene moves."""
        if self.row_frac is not None or not moving or prev.shape != grey.shape:
            return
        h = grey.shape[0]
        if self._moving is None:
            self._moving, self._static = np.zeros(h), np.zeros(h)
        gx = cv2.Sobel(grey, cv2.CV_16S, 1, 0, ksize=3)
        gy = cv2.Sobel(grey, cv2.CV_16S, 0, 1, ksize=3)
        textured = (np.abs(gx).astype(np.int32) + np.abs(gy)) > 8 * _TEXTURE
        changed = cv2.absdiff(prev, grey) > _CHANGED
        self._moving += (textured & changed).sum(1)
        self._static += (textured & ~changed).sum(1)
        self._frames += 1
        if self._frames >= self.cfg.own_car_learn_frames:
            self.row_frac = self._band(grey.shape[1])

    def _band(self, width: int) -> float:
        """The top of the band as a share of the height (1.0: no band)."""
        h = len(self._moving)
        moving = self._moving / self._frames > _MOVING_ROW_FRAC * width
        top = h
        for row in range(h - 1, int(h * (1 - _MAX_BAND_FRAC)) - 1, -1):
            if moving[row]:
                break
            top = row
        if top == h or self._static[top:].sum() / self._frames < _MOVING_ROW_FRAC * width:
            return 1.0  # no band, or one with no static texture: a smooth road, not the car
        return top / h

    def feature_rows(self, h: int) -> int:
        """Rows of a frame `h` tall above the band (all of them while unknown)."""
        return h if self.row_frac is None else int(round(self.row_frac * h))

    def covers(self, boxes_xyxy: np.ndarray, frame_h: int) -> np.ndarray:
        """(N,) bool: boxes lying mostly (half their area or more) in the band: the car's own parts."""
        if self.row_frac is None or self.row_frac >= 1.0 or len(boxes_xyxy) == 0:
            return np.zeros(len(boxes_xyxy), bool)
        top = self.row_frac * frame_h
        b = boxes_xyxy.astype(np.float64)
        height = np.maximum(b[:, 3] - b[:, 1], 1e-6)
        inside = np.clip(b[:, 3] - np.maximum(b[:, 1], top), 0.0, None)
        return inside >= 0.5 * height
