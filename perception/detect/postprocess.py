"""Pre- and post-processing shared by every detector backend: letterbox, decode per layout, NMS, taxonomy.

Two output layouts cover the YOLO models users bring:
- `yolox`: raw heads, N x A x (5 + nc): (cx, cy, w, h) in grid units, objectness, class scores;
  input BGR 0..255, padded at bottom/right.
- `ultralytics`: YOLOv8/YOLO11 exports, 1 x (4 + nc) x A: (cx, cy, w, h) in input pixels, class scores;
  input RGB 0..1, padded evenly on both sides.
"""

from __future__ import annotations

import ast
import copy
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.config import DetectorConfig
from perception.errors import PerceptionError
from perception.types import Detections

# fmt: off
COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
# fmt: on

PAD_VALUE = 114
YOLOX_STRIDES = (8, 16, 32)


@dataclass(frozen=True, slots=True)
class InputFormat:
    """How a layout's models expect their input tensor."""

    rgb: bool
    scale: float
    pad_center: bool


INPUT_FORMATS = {
    "yolox": InputFormat(rgb=False, scale=1.0, pad_center=False),
    "ultralytics": InputFormat(rgb=True, scale=1.0 / 255.0, pad_center=True),
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

    def __call__(self, image: np.ndarray) -> np.ndarray:
        frame_hw = image.shape[:2]
        if frame_hw != self._frame_hw:
            self._fit(frame_hw)
        cv2.resize(image, self._view.shape[1::-1], dst=self._view, interpolation=cv2.INTER_LINEAR)
        # HWC -> CHW by cv2.split into contiguous planes, then one contiguous convert per plane: half the
        # time of converting the transposed (strided) view directly.
        cv2.split(self._padded, self._planes)
        scale = np.float32(self.fmt.scale)
        for dst, src in zip(self.tensor[0], self._channel_order, strict=True):
            np.multiply(self._planes[src], scale, out=dst, casting="unsafe")
        return self.tensor

    def to_frame(self, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Input-tensor pixels to frame pixels, in place, clipped to the frame."""
        x0, y0 = self.offset_xy
        boxes_xyxy -= np.array([x0, y0, x0, y0], np.float32)
        boxes_xyxy /= self.ratio
        h, w = self._frame_hw
        np.clip(boxes_xyxy, 0, [w, h, w, h], out=boxes_xyxy)
        return boxes_xyxy


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


def detect_layout(output_shape: Sequence[int | str | None], num_classes: int | None = None) -> str:
    """Tell the layout from the output shape: the class axis is the short one (5 + nc or 4 + nc)."""
    if len(output_shape) != 3:
        raise PerceptionError(f"unsupported model output shape {list(output_shape)}: expected 3 dimensions")
    dim1, dim2 = output_shape[1], output_shape[2]
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


def class_names_from(names: object, num_classes: int) -> list[str]:
    """Class names from a model's metadata, in whichever form the export stored them.

    Ultralytics writes `{0: 'person', ...}`: as a Python-literal string in ONNX metadata, as YAML in
    `metadata.yaml`, as JSON (string keys) in `.engine` headers. Without usable names, an 80-class model is
    taken to be COCO, and anything else gets `class0`, `class1`, ...
    """
    if isinstance(names, str):
        try:
            names = ast.literal_eval(names)
        except (ValueError, SyntaxError):
            try:
                names = json.loads(names)
            except ValueError:
                names = None
    try:
        if isinstance(names, Mapping):
            by_index = {int(k): str(v) for k, v in names.items()}
            return [by_index[i] for i in range(num_classes)]
        if isinstance(names, Sequence) and not isinstance(names, str) and len(names) == num_classes:
            return [str(n) for n in names]
    except (KeyError, ValueError, TypeError):
        pass
    if num_classes == len(COCO_NAMES):
        return list(COCO_NAMES)
    return [f"class{i}" for i in range(num_classes)]


class Taxonomy:
    """Maps the model's classes onto driving labels with one lookup table."""

    def __init__(self, classes: Mapping[str, Sequence[str]], class_names: Sequence[str]) -> None:
        self.labels = list(classes)
        self.class_names = list(class_names)
        index = {name: i for i, name in enumerate(class_names)}
        self.lut = np.full(len(class_names), -1, np.int32)
        for label_id, (label, names) in enumerate(classes.items()):
            for name in names:
                if name not in index:
                    raise PerceptionError(f"config classes.{label}: {name!r} is not a class of the model")
                self.lut[index[name]] = label_id


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
        self.taxonomy = Taxonomy(classes, class_names)

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


class TimedHeadDetector:
    """detect() and fork() for backends that run a raw head and decode it with HeadDecoder: their `_infer`
    sets `timings_ms["preprocess"]` and `_t_infer_ns` (inference start); this adds inference and
    postprocess, so the pipeline and `perception bench` see every step the same way."""

    decoder: HeadDecoder
    timings_ms: dict[str, float]
    requests: int = 1
    _t_infer_ns: int

    def _infer(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _new_request(self) -> None:
        """Backend hook for fork(): the per-request state the runtime needs (OpenVINO: an infer request
        bound to this handle's letterbox tensor). An ONNX Runtime session runs concurrent calls as it is."""

    def fork(self) -> TimedHeadDetector:
        twin = copy.copy(self)
        twin.decoder = self.decoder.fork()
        twin.timings_ms = {}
        twin._new_request()
        return twin

    def close(self) -> None:
        """Nothing to release beyond what garbage collection frees (sessions, compiled models)."""

    def detect(self, image: np.ndarray) -> Detections:
        raw = self._infer(image)
        t0 = time.monotonic_ns()
        self.timings_ms["inference"] = (t0 - self._t_infer_ns) / 1e6
        detections = self.decoder(raw[0])
        self.timings_ms["postprocess"] = (time.monotonic_ns() - t0) / 1e6
        return detections
