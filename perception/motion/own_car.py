"""The car's own parts in the picture: a hood or dashboard along the bottom that stays still while the scene
moves, and whatever else is fixed to the camera (burnt-in timestamp or speed text, a logo, wipers at rest,
a mirror's edge). Nothing may come from them: no feature for the camera's motion (a fixed feature says the
car stands still), and from the bottom band no detection either (a hood is detected as a wide `vehicle`
along the bottom edge, the same track for a whole clip).

Learnt from the first moving frames (the camera's motion trusted and not still): per image row of the
downscaled grey frame, how many textured pixels (a spatial gradient above `texture`) changed from the last
frame (moving) and how many did not (static). Rows of the car's own body hold static texture (the hood's
edge, reflections fixed to it, the dashboard) and no moving texture; the scene's rows, moving texture.
Scanning up from the bottom, the rows with no moving texture form the band, kept only if static texture
shows in it (a smooth road holds no texture either way and is never taken for the car). The camera profile
can give the band instead (`hood_row_frac`).

Anywhere in the picture, a textured pixel that keeps its grey level (within `_FIXED`, compression noise)
in most of those moving frames (`_FIXED_SHARE`) is fixed to the camera: even a distant hill shifts by a
fraction of a pixel as a car drives and vibrates, which changes a textured pixel by more. Cells of such
pixels (a glyph's edges) and their neighbours give no feature; the detector is left alone there (text over
a car ahead must not hide it).
"""

from __future__ import annotations

import cv2
import numpy as np

from perception.core.motion_config import MotionConfig

_TEXTURE = 24.0  # a pixel is textured above this gradient (grey levels per pixel, Sobel 3x3 / 8 scaled)
_CHANGED = 12.0  # ... and changed if its grey level moved by more than this between two frames
_MAX_BAND_FRAC = 0.45  # the car's parts never reach above this share of the picture, from the bottom
_MOVING_ROW_FRAC = 0.01  # a row whose moving textured pixels exceed this share of its width is scene
_FIXED = 4.0  # a textured pixel within this many grey levels of the last frame's did not move ...
_FIXED_SHARE = 0.75  # ... and one that did not in this share of the moving frames is fixed to the camera
_CELL_PX = 8  # fixed pixels are gathered into cells of this size (downscaled grey frame) ...
_CELL_MIN_PX = 3  # ... that count as fixed with this many; their neighbours too


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
        self._fixed_count: np.ndarray | None = None  # per pixel: moving frames it was textured and fixed
        self._frames = 0
        self.learnt = self.cfg.own_car_learn_frames == 0  # learning off: nothing to learn
        self.fixed: np.ndarray | None = None  # (H, W) bool once learnt: pixels fixed to the camera
        self.row_frac: float | None = self.given if self.given is not None else None
        if self.cfg.own_car_learn_frames == 0 and self.given is None:
            self.row_frac = 1.0  # learning off: no band

    def update(self, prev: np.ndarray, grey: np.ndarray, moving: bool) -> None:
        """One pair of consecutive downscaled grey frames; counted only while the scene moves."""
        if self.learnt or not moving or prev.shape != grey.shape:
            return
        h = grey.shape[0]
        if self._moving is None:
            self._moving, self._static = np.zeros(h), np.zeros(h)
            self._fixed_count = np.zeros(grey.shape, np.uint16)
        gx = cv2.Sobel(grey, cv2.CV_16S, 1, 0, ksize=3)
        gy = cv2.Sobel(grey, cv2.CV_16S, 0, 1, ksize=3)
        textured = (np.abs(gx).astype(np.int32) + np.abs(gy)) > 8 * _TEXTURE
        diff = cv2.absdiff(prev, grey)
        changed = diff > _CHANGED
        self._moving += (textured & changed).sum(1)
        self._static += (textured & ~changed).sum(1)
        self._fixed_count += textured & (diff <= _FIXED)
        self._frames += 1
        if self._frames >= self.cfg.own_car_learn_frames:
            if self.row_frac is None:  # unless the profile gave it
                self.row_frac = self._band(grey.shape[1])
            self.fixed = self._fixed_cells()
            self.learnt = True
            self._moving = self._static = self._fixed_count = None

    def _fixed_cells(self) -> np.ndarray | None:
        """(H, W) bool: the cells holding pixels fixed to the camera, and their neighbours; None if none."""
        fixed = self._fixed_count >= _FIXED_SHARE * self._frames
        h, w = fixed.shape
        ch, cw = -(-h // _CELL_PX), -(-w // _CELL_PX)
        padded = np.zeros((ch * _CELL_PX, cw * _CELL_PX), np.uint16)
        padded[:h, :w] = fixed
        cells = padded.reshape(ch, _CELL_PX, cw, _CELL_PX).sum(axis=(1, 3)) >= _CELL_MIN_PX
        if not cells.any():
            return None
        cells = cv2.dilate(cells.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        return np.repeat(np.repeat(cells, _CELL_PX, axis=0), _CELL_PX, axis=1)[:h, :w]

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

    def clear_features(self, mask: np.ndarray) -> None:
        """Zero `mask` (a feature mask of the downscaled grey frame) on the band and the fixed pixels."""
        mask[self.feature_rows(mask.shape[0]) :] = 0
        if self.fixed is not None and self.fixed.shape == mask.shape:
            mask[self.fixed] = 0

    def covers(self, boxes_xyxy: np.ndarray, frame_h: int) -> np.ndarray:
        """(N,) bool: boxes lying mostly (half their area or more) in the band: the car's own parts."""
        if self.row_frac is None or self.row_frac >= 1.0 or len(boxes_xyxy) == 0:
            return np.zeros(len(boxes_xyxy), bool)
        top = self.row_frac * frame_h
        b = boxes_xyxy.astype(np.float64)
        height = np.maximum(b[:, 3] - b[:, 1], 1e-6)
        inside = np.clip(b[:, 3] - np.maximum(b[:, 1], top), 0.0, None)
        return inside >= 0.5 * height
