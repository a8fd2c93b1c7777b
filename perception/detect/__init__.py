"""Detection stage: an image in, `Detections` in frame pixels and driving labels out."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from perception.config import Config, DetectorConfig
from perception.types import Detections


class Detector(Protocol):
    """What every backend provides; the pipeline knows nothing else about it."""

    backend: str  # "onnxruntime", "openvino", "tensorrt", "ultralytics" or "triton"
    class_names: list[str]  # the model's classes, indexed by Detections.class_ids
    input_hw: tuple[int, int]
    layout: str  # output layout decoded: "yolox" or "ultralytics"
    requests: int  # frames it was set up to have in inference at once (threads split among them)

    def detect(self, image: np.ndarray) -> Detections: ...

    def fork(self) -> Detector:
        """Another handle on the same loaded model, with its own buffers, so a second thread can run a
        request at the same time. Called `requests - 1` times; backends with one request raise."""
        ...


BACKENDS = ("onnxruntime", "openvino", "tensorrt", "ultralytics", "triton")


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


def inference_requests(cfg: DetectorConfig, throughput: bool) -> int:
    """Frames to have in inference at once: `detector.requests`, or by default two for throughput (a file
    replayed in fast mode: two single-threaded requests on 2 cores make ~20 % more frames per second than
    one using both, as inference has serial parts that leave a core idle) and one for latency (live and
    realtime: each frame finished as soon as possible)."""
    if cfg.requests:
        return cfg.requests
    return min(2, os.cpu_count() or 1) if throughput else 1


def create_detector(model_path: str | Path, cfg: Config, requests: int = 1) -> Detector:
    """Build the configured backend, set up for `requests` frames in inference at once (ONNX Runtime,
    OpenVINO and Triton; the others always run one). Imports are local so a missing optional backend costs
    nothing."""
    backend = resolve_backend(model_path, cfg.detector.backend)
    if backend == "onnxruntime":
        from perception.detect.onnxruntime import OnnxRuntimeDetector

        return OnnxRuntimeDetector(model_path, cfg.detector, cfg.classes, requests)
    if backend == "openvino":
        from perception.detect.openvino import OpenVinoDetector

        return OpenVinoDetector(model_path, cfg.detector, cfg.classes, requests)
    if backend == "ultralytics":
        from perception.detect.ultralytics import UltralyticsDetector

        return UltralyticsDetector(model_path, cfg.detector, cfg.classes)
    if backend == "tensorrt":
        from perception.detect.tensorrt import TensorRTDetector

        return TensorRTDetector(model_path, cfg)
    if backend == "triton":
        from perception.detect.triton import TritonDetector

        return TritonDetector(model_path, cfg, requests)
    raise ValueError(f"unknown detector backend {backend!r}")
