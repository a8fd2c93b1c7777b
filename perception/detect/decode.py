"""Decoding: a model's raw output to `Detections` in frame pixels. One function per output layout, the
layout recognised (metadata first, output shape second, values where two layouts share a shape), per-label
NMS, and the finishing step every backend ends with.

Four output layouts cover the YOLO models users bring (input formats in preprocess.INPUT_FORMATS):
- `yolox`: YOLOX raw heads, N x A x (5 + nc): (cx, cy, w, h) in grid units, objectness, class scores.
- `yolov5`: YOLOv5/YOLOv7 exports, N x A x (5 + nc): (cx, cy, w, h) in input pixels, objectness, class
  scores (A = 3 anchors per grid cell: 25200 at 640x640).
- `ultralytics`: YOLOv8/YOLO11 exports, 1 x (4 + nc) x A: (cx, cy, w, h) in input pixels, class scores.
- `end2end`: NMS-free heads (YOLO26, YOLOv10), N x K x 6: x1, y1, x2, y2, score, class in input pixels.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from perception.core.config import DetectorConfig
from perception.core.errors import PerceptionError
from perception.core.types import Detections
from perception.detect.labels import Taxonomy
from perception.detect.metadata import ModelMetadata
from perception.detect.preprocess import INPUT_FORMATS, Letterbox

YOLOX_STRIDES = (8, 16, 32)
GRID_UNITS_MAX = 32.0  # |x|, |y| of a YOLOX head's raw box centres stay far below this (grid offsets)


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
    """A broken model's infinite boxes become NaN here, silently: finish_detections drops them."""
    half = cxcywh[:, 2:4] * 0.5
    with np.errstate(invalid="ignore", over="ignore"):
        return np.concatenate((cxcywh[:, :2] - half, cxcywh[:, :2] + half), axis=1)


def _objectness_rows(
    raw: np.ndarray, conf_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rows of an (A, 5 + nc) output (objectness in column 4, class scores after it) whose score,
    objectness x best class score, is above threshold: rows, scores, class ids, anchor indices."""
    # score = objectness * class score <= objectness, so filtering on objectness first is exact and cheap.
    candidates = np.flatnonzero(raw[:, 4] > conf_threshold)
    rows = raw[candidates]
    class_ids = rows[:, 5:].argmax(1)
    scores = rows[:, 4] * rows[np.arange(len(rows)), 5 + class_ids]
    keep = scores > conf_threshold
    return rows[keep], scores[keep], class_ids[keep], candidates[keep]


def decode_yolox(
    raw: np.ndarray, grid: np.ndarray, strides: np.ndarray, conf_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, 5 + nc) raw head output -> boxes xyxy in input pixels, scores, class ids above threshold."""
    rows, scores, class_ids, cells = _objectness_rows(raw, conf_threshold)
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


def decode_yolov5(raw: np.ndarray, conf_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, 5 + nc) YOLOv5 output -> boxes xyxy in input pixels, scores, class ids above threshold."""
    rows, scores, class_ids, _ = _objectness_rows(raw, conf_threshold)
    return _cxcywh_to_xyxy(rows[:, :4]), scores, class_ids


def decode_end2end(
    raw: np.ndarray, conf_threshold: float, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, 6) final boxes (x1, y1, x2, y2, score, class) -> boxes, scores, class ids above threshold.
    A class id the model's names do not cover is dropped, not indexed past the taxonomy."""
    class_ids = raw[:, 5].astype(np.int64)
    keep = (raw[:, 4] > conf_threshold) & (class_ids >= 0) & (class_ids < num_classes)
    return raw[keep, :4], raw[keep, 4], class_ids[keep]


def check_output_shape(output_shape: Sequence[int]) -> None:
    """Refuse an output no layout has: 3 dimensions, the class axis the short one (5 + nc or 4 + nc)."""
    if len(output_shape) != 3:
        raise PerceptionError(f"unsupported model output shape {list(output_shape)}: expected 3 dimensions")
    dim1, dim2 = output_shape[1], output_shape[2]
    if isinstance(dim2, int) and (not isinstance(dim1, int) or dim2 < dim1):
        if dim2 < 6:
            raise PerceptionError(
                f"unsupported model output shape {list(output_shape)}: too few columns for "
                "N x A x (5+nc) (YOLOX) or 1 x (4+nc) x A (Ultralytics)"
            )
        return
    if isinstance(dim1, int) and dim1 >= 5:
        return
    raise PerceptionError(
        f"unsupported model output shape {list(output_shape)}: expected N x A x (5+nc) (YOLOX) "
        "or 1 x (4+nc) x A (Ultralytics)"
    )


def yolox_anchors(input_hw: tuple[int, int]) -> int:
    return sum((input_hw[0] // s) * (input_hw[1] // s) for s in YOLOX_STRIDES)


def _box_units(raw: np.ndarray, input_hw: tuple[int, int]) -> str:
    """Which units an N x A x (5 + nc) output's box centres are in, over all anchors of one image:
    "pixels" when they span the input (YOLOv5: every grid cell's centre), "grid" when they are small
    offsets (YOLOX), "" when neither (untrained or foreign weights)."""
    xy = raw[0, :, :2]
    if xy[:, 0].max() >= input_hw[1] / 2 and xy[:, 1].max() >= input_hw[0] / 2:
        return "pixels"
    if np.abs(xy).max() < GRID_UNITS_MAX:
        return "grid"
    return ""


def choose_layout(
    raw: np.ndarray, input_hw: tuple[int, int], meta: ModelMetadata, recorded: str | None = None
) -> tuple[str, str]:
    """(layout, why) for a model's real output on one image: metadata first (end2end), the output's shape
    second, and where YOLOv5 and YOLOX share the N x A x (5 + nc) shape, the producer named in the metadata
    checked against the units of the box columns (pixels or grid offsets). Never a silent guess: a shape no
    layout fits, or evidence that disagrees, is an error that says to set `detector.layout`."""
    shape = list(raw.shape)
    if recorded:
        return recorded, "recorded in the plan's sidecar"
    if meta.task not in (None, "detect"):
        raise PerceptionError(f"model task {meta.task!r}: only detection models (task detect) are supported")
    if meta.end2end:
        return "end2end", f"{meta.describe()}: end2end is true"
    check_output_shape(shape)
    _, rows, cols = shape
    grid = yolox_anchors(input_hw)
    # The class axis is the short one, except at tiny inputs, which have fewer anchors than a COCO model has
    # classes (21 at 32 x 32): rows that are exactly the anchor count are anchors.
    if rows < cols and rows not in (grid, 3 * grid):
        return "ultralytics", f"output {shape} is 1 x (4 + classes) x anchors; {meta.describe()}"
    if cols == 6 and rows not in (grid, 3 * grid):
        return (
            "end2end",
            f"output {shape} is N x boxes x 6 and {rows} is no anchor count for {list(input_hw)}",
        )
    units = _box_units(raw, input_hw)
    why = f"output {shape} is N x anchors x (5 + classes) (YOLOv5 or YOLOX)"
    if meta.producer and units != "grid":
        return "yolov5", f"{why}; {meta.describe()}, which YOLOX exports do not write"
    if not meta.producer and units == "pixels":
        return "yolov5", f"{why}; no metadata, box centres in input pixels (they span {list(input_hw)})"
    if not meta.producer and units == "grid" and rows == grid:
        return "yolox", f"{why}; no metadata, box centres are grid offsets (|x| < {GRID_UNITS_MAX:g})"
    raise PerceptionError(
        f"{why}: cannot tell which ({meta.describe()}, box centres in "
        f"{units or 'neither input pixels nor grid offsets'}, {rows} anchors); set detector.layout"
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
    """Drop classes outside the taxonomy and boxes that are not numbers (a broken model's NaN or infinity),
    NMS, map boxes to frame pixels.

    `letterbox` None: the boxes are in frame pixels already, clipped to the frame (Ultralytics' results).
    """
    label_ids = taxonomy.lut[class_ids]
    wanted = (label_ids >= 0) & np.isfinite(boxes_xyxy).all(axis=1) & np.isfinite(scores)
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

    def num_classes(self, raw_shape: Sequence[int], model: str | Path, named: int | None = None) -> int:
        """Check a real output shape (batch included) against the layout; the number of classes it holds.
        `named`: how many class names the metadata has (end-to-end outputs carry class ids, not scores)."""
        shape = list(raw_shape)
        if self.layout == "end2end":
            if len(shape) != 3 or shape[0] != 1 or shape[2] != 6:
                raise PerceptionError(f"model {model}: output {shape} is not 1 x boxes x 6 (end-to-end)")
            return named or 80  # without names: the COCO classes Ultralytics' releases are trained on
        if self.layout == "yolov5":
            if len(shape) != 3 or shape[0] != 1 or shape[2] < 6:
                raise PerceptionError(f"model {model}: output {shape} is not 1 x anchors x (5 + classes)")
            return shape[2] - 5
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
        self.taxonomy = Taxonomy(classes, class_names, only=self.cfg.classes)
        self._num_classes = len(class_names)

    def fork(self, tensor: np.ndarray | None = None) -> HeadDecoder:
        """A decoder for a parallel request (or a row of a batch: `tensor`, a (1, 3, H, W) view to letterbox
        into): its own letterbox buffers, the same grid and taxonomy."""
        twin = copy.copy(self)
        twin.letterbox = Letterbox(self.input_hw, INPUT_FORMATS[self.layout], tensor)
        return twin

    def __call__(self, raw: np.ndarray) -> Detections:
        """One image's output, without its batch axis."""
        cfg = self.cfg
        if self.layout == "yolox":
            boxes, scores, class_ids = decode_yolox(raw, self._grid, self._strides, cfg.conf_threshold)
        elif self.layout == "ultralytics":
            boxes, scores, class_ids = decode_ultralytics(raw, cfg.conf_threshold)
        elif self.layout == "yolov5":
            boxes, scores, class_ids = decode_yolov5(raw, cfg.conf_threshold)
        else:
            boxes, scores, class_ids = decode_end2end(raw, cfg.conf_threshold, self._num_classes)
        return finish_detections(
            boxes, scores, class_ids, self.taxonomy, self.letterbox, cfg.nms_iou_threshold, cfg.max_detections
        )
