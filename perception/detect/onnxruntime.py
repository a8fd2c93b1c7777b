"""ONNX Runtime backend: the CPU default, and the reference the other backends are checked against."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from perception.config import DetectorConfig
from perception.detect.postprocess import HeadDecoder, TimedHeadDetector, class_names_from, detect_layout
from perception.errors import PerceptionError


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata_props (Ultralytics stores `names`, `imgsz` there), read without optimising
    the graph. Empty when the file cannot be read."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception:  # ORT raises several types for unreadable or invalid files
        return {}
    return dict(session.get_modelmeta().custom_metadata_map)


class OnnxRuntimeDetector(TimedHeadDetector):
    """YOLOX or Ultralytics-layout ONNX model on ONNX Runtime."""

    backend = "onnxruntime"

    def __init__(
        self, model_path: str | Path, cfg: DetectorConfig, classes: dict[str, list[str]], requests: int = 1
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise PerceptionError(f"model not found: {path}")
        if cfg.precision not in ("auto", "fp32"):
            raise PerceptionError(
                f"detector.precision {cfg.precision}: ONNX Runtime runs this model in fp32 on the CPU; "
                "use --backend openvino for bf16 or fp16"
            )
        self.requests = requests
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One session serves every request (run() is thread-safe); its threads are split among them.
        threads = cfg.intra_op_threads or (max(1, (os.cpu_count() or 1) // requests) if requests > 1 else 0)
        opts.intra_op_num_threads = threads
        spinning = "1" if cfg.intra_op_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
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
        self.decoder = HeadDecoder(self.layout, self.input_hw, cfg)
        self.timings_ms: dict[str, float] = {}  # the last detect() by step, for benchmarks
        # Warm-up doubles as a check that the output really has the layout we are about to decode.
        raw = self._infer(np.zeros((*self.input_hw, 3), np.uint8))
        num_classes = self.decoder.num_classes(raw.shape, path)
        names = self.session.get_modelmeta().custom_metadata_map.get("names")
        self.class_names = class_names_from(names, num_classes)
        self.decoder.set_classes(classes, self.class_names)

    def _infer(self, image: np.ndarray) -> np.ndarray:
        t0 = time.monotonic_ns()
        tensor = self.decoder.letterbox(image)
        self._t_infer_ns = time.monotonic_ns()
        self.timings_ms["preprocess"] = (self._t_infer_ns - t0) / 1e6
        try:
            return self.session.run([self._output_name], {self._input_name: tensor})[0]
        except Exception as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise PerceptionError(
                f"model inference failed at input {list(tensor.shape)}: {first_line}"
            ) from None
