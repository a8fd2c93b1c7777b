"""ONNX Runtime backend: the CPU default, and the reference the other backends are checked against."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from perception.core.config import Config
from perception.core.errors import PerceptionError, first_line
from perception.detect.backend import HeadDetector, LoadedModel
from perception.detect.quantized import require_quantized


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


class OnnxRuntimeDetector(HeadDetector):
    """A YOLO ONNX model on ONNX Runtime. One session serves every request (run() is thread-safe)."""

    backend = "onnxruntime"

    def _load(self, path: Path, cfg: Config) -> LoadedModel:
        det = cfg.detector
        if not path.is_file():
            raise PerceptionError(f"model not found: {path}")
        if det.precision == "int8":
            require_quantized(path, self.backend)
        elif det.precision not in ("auto", "fp32"):
            raise PerceptionError(
                f"detector.precision {det.precision}: ONNX Runtime runs this model in fp32 on the CPU; "
                "use --backend openvino for bf16 or fp16"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The session's threads are split among the requests.
        requests = self.requests
        threads = det.intra_op_threads or (max(1, (os.cpu_count() or 1) // requests) if requests > 1 else 0)
        opts.intra_op_num_threads = threads
        spinning = "1" if det.intra_op_spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        opts.log_severity_level = 3
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()
        ]
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as exc:  # ORT raises several types for unreadable or invalid files
            raise PerceptionError(f"cannot load model {path}: {first_line(exc)}") from None

        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise PerceptionError(f"model {path}: expected one N x 3 x H x W image input")
        self._input_name, self._output_name = inputs[0].name, outputs[0].name
        in_h, in_w = inputs[0].shape[2:]
        fixed = isinstance(in_h, int) and isinstance(in_w, int)
        if not isinstance(inputs[0].shape[0], int):  # a batch axis: frames of several streams in one run
            self.max_batch = det.batch or 8
        return LoadedModel(
            input_hw=(in_h, in_w) if fixed else tuple(det.input_size),
            metadata=dict(self.session.get_modelmeta().custom_metadata_map),
        )

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self._output_name], {self._input_name: tensor})[0]
        except Exception as exc:
            raise PerceptionError(
                f"model inference failed at input {list(tensor.shape)}: {first_line(exc)}"
            ) from None

    def _release(self) -> None:
        self.session = None
