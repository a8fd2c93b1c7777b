"""Detection stage: an image in, `Detections` in frame pixels and driving labels out."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from perception.config import Config
from perception.types import Detections


class Detector(Protocol):
    """What every backend provides; the pipeline knows nothing else about it."""

    backend: str  # "onnxruntime", "openvino", "tensorrt" or "ultralytics"
    class_names: list[str]  # the model's classes, indexed by Detections.class_ids
    input_hw: tuple[int, int]
    layout: str  # output layout decoded: "yolox" or "ultralytics"

    def detect(self, image: np.ndarray) -> Detections: ...


BACKENDS = ("onnxruntime", "openvino", "tensorrt", "ultralytics")


def resolve_backend(model_path: str | Path, backend: str) -> str:
    """The backend `auto` means for this model on this machine.

    TensorRT wherever it can run (an NVIDIA GPU with tensorrt and pycuda installed) for ONNX and plans;
    otherwise ONNX Runtime for ONNX (faster than OpenVINO for these FP32 models on the 2-core AMD machines
    measured, see benchmarks/README.md), OpenVINO for its own IR, Ultralytics for PyTorch `.pt`.
    """
    if backend != "auto":
        return backend
    path = Path(model_path)
    suffix = path.suffix.lower()
    if suffix in (".engine", ".plan"):
        return "tensorrt"
    if suffix == ".pt":
        return "ultralytics"
    if suffix == ".xml" or (path.is_dir() and any(path.glob("*.xml"))):
        return "openvino"
    if suffix == ".onnx":
        from perception.detect.gpu import tensorrt_available

        if tensorrt_available():
            return "tensorrt"
    return "onnxruntime"


def create_detector(model_path: str | Path, cfg: Config) -> Detector:
    """Build the configured backend. Imports are local so a missing optional backend costs nothing."""
    backend = resolve_backend(model_path, cfg.detector.backend)
    if backend == "onnxruntime":
        from perception.detect.onnxruntime import OnnxRuntimeDetector

        return OnnxRuntimeDetector(model_path, cfg.detector, cfg.classes)
    if backend == "openvino":
        from perception.detect.openvino import OpenVinoDetector

        return OpenVinoDetector(model_path, cfg.detector, cfg.classes)
    if backend == "ultralytics":
        from perception.detect.ultralytics import UltralyticsDetector

        return UltralyticsDetector(model_path, cfg.detector, cfg.classes)
    if backend == "tensorrt":
        from perception.detect.tensorrt import TensorRTDetector

        return TensorRTDetector(model_path, cfg)
    raise ValueError(f"unknown detector backend {backend!r}")
