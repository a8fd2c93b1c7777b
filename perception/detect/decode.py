"""Decoding: a model's raw output to `Detections` in frame pixels. One function per output layout, the
layout told from the output shape, per-label NMS, and the finishing step every backend ends with.

Two output layouts cover the YOLO models users bring:
- `yolox`: raw heads, N x A x (5 + nc): (cx, cy, w, h) in grid units, objectness, class scores;
  input BGR 0..255, padded at bottom/right.
- `ultralytics`: YOLOv8/YOLO11 exports, 1 x (4 + nc) x A: (cx, cy, w, h) in input pixels, class scores;
  input RGB 0..1, padded evenly on both sides.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from perception.config import DetectorConfig
from perception.detect.labels import Taxonomy
from perception.detect.preprocess import INPUT_FORMATS, Letterbox
from perception.errors import PerceptionError
from perception.types import Detections

YOLOX_STRIDES = (8, 16, 32)


def yolox_grid(input_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Anchor-cell offsets (A, 2) and strides (A, 1) of YOLOX's three heads, in output order."""
    grids, strides = [], []
    for stride in YOLOX_STRIDES:
        gh, gw = input_hw[0] // stride, input_hw[1] // stride
        ys, xs = np.mgrid[0:gh, 0:gw]
        grids.append(np.stack((xs, ys), -1).reshape(-1, 2))
        strides.append(np.full((gh * gw, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


def _cxcywh_to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = cxcywh[:, 2:4] * 0.5
    return np.concatenate((cxcywh[:, :2] - half, cxcywh[:, :2] + half), axis=1)


def decode_yolox(
    raw: np.ndarray, grid: np.ndarray, strides: np.ndarray, conf_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, 5 + nc) raw head output -> boxes xyxy in input pixels, scores, class ids above threshold."""
    # score = objectness * class score <= objectness, so filtering on objectness first is exact and cheap.
    candidates = np.flatnonzero(raw[:, 4] > conf_threshold)
    rows = raw[candidates]
    class_ids = rows[:, 5:].argmax(1)
    scores = rows[:, 4] * rows[np.arange(len(rows)), 5 + class_ids]
    keep = scores > conf_threshold
    rows, class_ids, scores, cells = rows[keep], class_ids[keep], scores[keep], candidates[keep]
    stride = strides[cells]
    cxcywh = np.concatenate(((rows[:, :2] + grid[cells]) * stride, np.exp(rows[:, 2:4]) * stride), axis=1)
    return _cxcywh_to_xyxy(cxcywh), scores, class_ids


def decode_ultralytics(raw: np.ndarray, conf_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(4 + nc, A) output -> boxes xyxy in input pixels, scores, class ids above threshold."""
    class_scores = raw[4:]
    best = class_scores.max(0)
    cells = np.flatnonzero(best > conf_threshold)
    class_ids = class_scores[:, cells].argmax(0)
    return _cxcywh_to_xyxy(raw[:4, cells].T), best[cells], class_ids


def detect_layout(
    output_shape: Sequence[int | str | None],
    num_classes: int | None = None,
    input_hw: tuple[int, int] | None = None,
) -> str:
    """Tell the layout from the output shape: the class axis is the short one (5 + nc or 4 + nc), unless
    the other is the anchor count of a stride 8/16/32 head at `input_hw` (small inputs have fewer anchors
    than a COCO model has classes: 21 at 32 x 32)."""
    if len(output_shape) != 3:
        raise PerceptionError(f"unsupported model output shape {list(output_shape)}: expected 3 dimensions")
    dim1, dim2 = output_shape[1], output_shape[2]
    if input_hw is not None and isinstance(dim1, int) and isinstance(dim2, int) and dim1 != dim2:
        anchors = sum(-(-input_hw[0] // s) * -(-input_hw[1] // s) for s in YOLOX_STRIDES)
        if anchors in (dim1, dim2):
            return "yolox" if dim1 == anchors else "ultralytics"
    if isinstance(dim2, int) and (not isinstance(dim1, int) or dim2 < dim1):
        if dim2 < 6:
            raise PerceptionError(
                f"unsupported model output shape {list(output_shape)}: too few columns for "
                "N x A x (5+nc) (YOLOX) or 1 x (4+nc) x A (Ultralytics)"
            )
        return "yolox"
    if isinstance(dim1, int) and dim1 >= 5:
        return "ultralytics"
    raise PerceptionError(
        f"unsupported model output shape {list(output_shape)}: expected N x A x (5+nc) (YOLOX) "
        "or 1 x (4+nc) x A (Ultralytics)"
    )


def nms_by_label(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    label_ids: np.ndarray,
    iou_threshold: float,
    max_detections: int,
) -> np.ndarray:
    """Indices kept by NMS run separately per driving label, best first.

    Per label, not per COCO class: a car and a truck box on the same vehicle are one object to track.
    """
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    xywh = boxes_xyxy.copy()
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxesBatched(xywh, scores, label_ids, 0.0, iou_threshold)
    keep = np.asarray(keep, np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    return keep[:max_detections]


def finish_detections(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    taxonomy: Taxonomy,
    letterbox: Letterbox | None,
    iou_threshold: float,
    max_detections: int,
) -> Detections:
    """Drop classes outside the taxonomy, NMS, map boxes to frame pixels.

    `letterbox` None: the boxes are in frame pixels already, clipped to the frame (Ultralytics' results).
    """
    label_ids = taxonomy.lut[class_ids]
    wanted = label_ids >= 0
    boxes_xyxy = boxes_xyxy[wanted].astype(np.float32, copy=False)
    scores = scores[wanted].astype(np.float32, copy=False)
    label_ids = label_ids[wanted]
    keep = nms_by_label(boxes_xyxy, scores, label_ids, iou_threshold, max_detections)
    frame_boxes = boxes_xyxy[keep] if letterbox is None else letterbox.to_frame(boxes_xyxy[keep])
    # A box that lay in the padding is empty once clipped to the frame: nothing to track there.
    visible = (frame_boxes[:, 2] > frame_boxes[:, 0]) & (frame_boxes[:, 3] > frame_boxes[:, 1])
    keep = keep[visible]
    return Detections(
        boxes_xyxy=frame_boxes[visible],
        scores=scores[keep],
        class_ids=class_ids[wanted][keep].astype(np.int32, copy=False),
        label_ids=label_ids[keep],
    )


class HeadDecoder:
    """A model's raw output to `Detections`, for one layout and input size: the part every backend that runs a
    bare YOLO graph (ONNX Runtime, OpenVINO, TensorRT) shares.

    It owns the letterbox, so boxes map back through the very ratio and padding the input was made with, and
    the YOLOX anchor grid; both are built once per model.
    """

    def __init__(
        self,
        layout: str,
        input_hw: tuple[int, int],
        cfg: DetectorConfig,
        tensor: np.ndarray | None = None,
    ) -> None:
        self.layout = layout
        self.input_hw = input_hw
        self.cfg = cfg
        self.letterbox = Letterbox(input_hw, INPUT_FORMATS[layout], tensor)
        if layout == "yolox":
            self._grid, self._strides = yolox_grid(input_hw)
        self.taxonomy: Taxonomy | None = None

    def num_classes(self, raw_shape: Sequence[int], model: str | Path) -> int:
        """Check a real output shape (batch included) against the layout; the number of classes it holds."""
        shape = list(raw_shape)
        if self.layout == "yolox":
            anchors = len(self._grid)
            if len(shape) != 3 or shape[1] != anchors or shape[2] < 6:
                raise PerceptionError(
                    f"model {model}: output {shape} is not a YOLOX raw head for input {list(self.input_hw)} "
                    f"(expected N x {anchors} x (5 + classes))"
                )
            return shape[2] - 5
        if len(shape) != 3 or shape[0] != 1 or shape[1] < 5:
            raise PerceptionError(f"model {model}: output {shape} is not 1 x (4 + classes) x anchors")
        return shape[1] - 4

    def set_classes(self, classes: Mapping[str, Sequence[str]], class_names: Sequence[str]) -> None:
        self.taxonomy = Taxonomy(classes, class_names, self.cfg.classes)

    def fork(self) -> HeadDecoder:
        """A decoder for a parallel request: its own letterbox buffers, the same grid and taxonomy."""
        twin = copy.copy(self)
        twin.letterbox = Letterbox(self.input_hw, INPUT_FORMATS[self.layout])
        return twin

    def __call__(self, raw: np.ndarray) -> Detections:
        """One image's output: (A, 5 + nc) for YOLOX, (4 + nc, A) for Ultralytics."""
        cfg = self.cfg
        if self.layout == "yolox":
            boxes, scores, class_ids = decode_yolox(raw, self._grid, self._strides, cfg.conf_threshold)
        else:
            boxes, scores, class_ids = decode_ultralytics(raw, cfg.conf_threshold)
        return finish_detections(
            boxes, scores, class_ids, self.taxonomy, self.letterbox, cfg.nms_iou_threshold, cfg.max_detections
        )
