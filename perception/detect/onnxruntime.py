"""ONNX Runtime backend: the CPU default, and the reference the other backends are checked against."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import onnxruntime as ort

from perception.config import DetectorConfig
from perception.detect.postprocess import (
    COCO_NAMES,
    INPUT_FORMATS,
    Letterbox,
    Taxonomy,
    decode_ultralytics,
    decode_yolox,
    detect_layout,
    finish_detections,
    yolox_grid,
)
from perception.errors import PerceptionError
from perception.types import Detections


def _class_names(session: ort.InferenceSession, num_classes: int) -> list[str]:
    """Ultralytics exports store `names` in the model metadata; otherwise assume COCO when it fits."""
    names = session.get_modelmeta().custom_metadata_map.get("names")
    if names:
        try:
            parsed = ast.literal_eval(names)
            return [parsed[i] for i in range(num_classes)]
        except (ValueError, SyntaxError, KeyError, TypeError):
            pass
    if num_classes == len(COCO_NAMES):
        return list(COCO_NAMES)
    return [f"class{i}" for i in range(num_classes)]


class OnnxRuntimeDetector:
    """YOLOX or Ultralytics-layout ONNX model on ONNX Runtime."""

    def __init__(self, model_path: str | Path, cfg: DetectorConfig, classes: dict[str, list[str]]) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise PerceptionError(f"model not found: {path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = cfg.intra_op_threads
        opts.log_severity_level = 3
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
        ]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # ORT raises several types for unreadable or invalid files
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise PerceptionError(f"cannot load model {path}: {first_line}") from None

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise PerceptionError(f"model {path}: expected one N x 3 x H x W image input")
        self._input_name, self._output_name = inputs[0].name, outputs[0].name
        in_h, in_w = inputs[0].shape[2:]
        fixed = isinstance(in_h, int) and isinstance(in_w, int)
        self.input_hw = (in_h, in_w) if fixed else tuple(cfg.input_size)
        self.layout = cfg.layout if cfg.layout != "auto" else detect_layout(outputs[0].shape)
        self.cfg = cfg

        self.letterbox = Letterbox(self.input_hw, INPUT_FORMATS[self.layout])
        if self.layout == "yolox":
            self._grid, self._strides = yolox_grid(self.input_hw)
        # Warm-up doubles as a check that the output really has the layout we are about to decode.
        raw = self._infer(np.zeros((*self.input_hw, 3), np.uint8))
        num_classes = self._check_output(raw, path)
        self.class_names = _class_names(self.session, num_classes)
        self.taxonomy = Taxonomy(classes, self.class_names)

    def _infer(self, image: np.ndarray) -> np.ndarray:
        tensor = self.letterbox(image)
        try:
            return self.session.run([self._output_name], {self._input_name: tensor})[0]
        except Exception as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise PerceptionError(
                f"model inference failed at input {list(tensor.shape)}: {first_line}"
            ) from None

    def _check_output(self, raw: np.ndarray, path: Path) -> int:
        shape = list(raw.shape)
        if self.layout == "yolox":
            anchors = len(self._grid)
            if raw.ndim != 3 or raw.shape[1] != anchors or raw.shape[2] < 6:
                raise PerceptionError(
                    f"model {path}: output {shape} is not a YOLOX raw head for input {list(self.input_hw)} "
                    f"(expected N x {anchors} x (5 + classes))"
                )
            return raw.shape[2] - 5
        if raw.ndim != 3 or raw.shape[0] != 1 or raw.shape[1] < 5:
            raise PerceptionError(f"model {path}: output {shape} is not 1 x (4 + classes) x anchors")
        return raw.shape[1] - 4

    def detect(self, image: np.ndarray) -> Detections:
        raw = self._infer(image)[0]
        cfg = self.cfg
        if self.layout == "yolox":
            boxes, scores, class_ids = decode_yolox(raw, self._grid, self._strides, cfg.conf_threshold)
        else:
            boxes, scores, class_ids = decode_ultralytics(raw, cfg.conf_threshold)
        return finish_detections(
            boxes, scores, class_ids, self.taxonomy, self.letterbox, cfg.nms_iou_threshold, cfg.max_detections
        )
