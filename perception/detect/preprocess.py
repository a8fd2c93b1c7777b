"""Preprocessing: a BGR frame into the input tensor a layout's models expect (letterbox), and boxes back."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class InputFormat:
    """How a layout's models expect their input tensor."""

    rgb: bool
    scale: float
    pad_center: bool


YOLOX_INPUT = InputFormat(rgb=False, scale=1.0, pad_center=False)  # BGR 0..255, padded at bottom/right
ULTRALYTICS_INPUT = InputFormat(rgb=True, scale=1.0 / 255.0, pad_center=True)  # RGB 0..1, padded evenly

INPUT_FORMATS = {  # per output layout (decode.LAYOUTS): YOLOX's own preprocessing, else YOLOv5's
    "yolox": YOLOX_INPUT,
    "yolov5": ULTRALYTICS_INPUT,
    "ultralytics": ULTRALYTICS_INPUT,
    "end2end": ULTRALYTICS_INPUT,
}


class Letterbox:
    """Resize-and-pad into a reused NCHW float32 tensor; maps boxes back to frame pixels.

    Buffers are allocated once per frame size, so the hot path only resizes and converts. `tensor` lets a
    backend hand in its own (1, 3, H, W) float32 buffer (TensorRT: pinned host memory), saving a copy.
    """

    def __init__(self, input_hw: tuple[int, int], fmt: InputFormat, tensor: np.ndarray | None = None) -> None:
        self.input_hw = input_hw
        self.fmt = fmt
        if tensor is None:
            tensor = np.empty((1, 3, *input_hw), np.float32)
        elif tensor.shape != (1, 3, *input_hw) or tensor.dtype != np.float32:
            raise ValueError(f"letterbox tensor must be float32 (1, 3, {input_hw[0]}, {input_hw[1]})")
        self.tensor = tensor
        self._padded = np.full((*input_hw, 3), PAD_VALUE, np.uint8)
        self._planes = [np.empty(input_hw, np.uint8) for _ in range(3)]
        self._channel_order = (2, 1, 0) if fmt.rgb else (0, 1, 2)  # frames are BGR
        self._frame_hw: tuple[int, int] | None = None
        self.ratio = 1.0
        self.offset_xy = (0, 0)

    def _fit(self, frame_hw: tuple[int, int]) -> None:
        in_h, in_w = self.input_hw
        self.ratio = min(in_h / frame_hw[0], in_w / frame_hw[1])
        new_h, new_w = round(frame_hw[0] * self.ratio), round(frame_hw[1] * self.ratio)
        pad_x, pad_y = (in_w - new_w) // 2, (in_h - new_h) // 2
        self.offset_xy = (pad_x, pad_y) if self.fmt.pad_center else (0, 0)
        self._padded[:] = PAD_VALUE
        x0, y0 = self.offset_xy
        self._view = self._padded[y0 : y0 + new_h, x0 : x0 + new_w]
        self._frame_hw = frame_hw
        # The padding rows above and below the image never change: converted once here, then only the rows
        # the image covers are converted per frame (a 16:9 frame fills 56 % of a square input's rows).
        self._convert(0, in_h)
        self._rows = (y0, y0 + new_h)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        frame_hw = image.shape[:2]
        if frame_hw != self._frame_hw:
            self._fit(frame_hw)
        cv2.resize(image, self._view.shape[1::-1], dst=self._view, interpolation=cv2.INTER_LINEAR)
        self._convert(*self._rows)
        return self.tensor

    def _convert(self, row0: int, row1: int) -> None:
        """Rows row0..row1 of the padded uint8 HWC image into the CHW float tensor. HWC -> CHW by cv2.split
        into contiguous planes, then one contiguous convert per plane: half the time of converting the
        transposed (strided) view directly."""
        planes = [p[row0:row1] for p in self._planes]
        cv2.split(self._padded[row0:row1], planes)
        scale = np.float32(self.fmt.scale)
        for dst, src in zip(self.tensor[0], self._channel_order, strict=True):
            np.multiply(planes[src], scale, out=dst[row0:row1], casting="unsafe")

    def to_frame(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Input-tensor pixels to frame pixels, in place, clipped to the frame."""
        x0, y0 = self.offset_xy
        boxes_xyxy -= np.array([x0, y0, x0, y0], np.float32)
        boxes_xyxy /= self.ratio
        h, w = self._frame_hw
        np.clip(boxes_xyxy, 0, [w, h, w, h], out=boxes_xyxy)
        return boxes_xyxy
