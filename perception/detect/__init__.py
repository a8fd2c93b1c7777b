"""Detection stage: an image in, `Detections` in frame pixels and driving labels out.

By question: `preprocess` (letterbox), `decode` (layouts, NMS), `labels` (names, taxonomy), `metadata` (what
an export says), `backend` (the skeleton runtimes fill), one module per runtime, `extra` (more detectors).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from perception.core.config import Config, DetectorConfig
from perception.core.errors import PerceptionError
from perception.core.types import Detections


class Detector(Protocol):
    """What every backend provides; the pipeline knows nothing else about it."""

    backend: str  # "onnxruntime", "openvino", "tensorrt", "ultralytics" or "triton"
    class_names: list[str]  # the model's classes, indexed by Detections.class_ids
    input_hw: tuple[int, int]
    layout: str  # output layout decoded (config.LAYOUTS): "yolox", "yolov5", "ultralytics" or "end2end"
    layout_reason: str  # why that layout (metadata, shape, values): said once at load
    labels: list[str]  # the taxonomy's labels, indexed by Detections.label_ids
    dropped_classes: list[str]  # the model's classes no label takes (reported once at start)
    requests: int  # frames it was set up to have in inference at once (threads split among them)

    max_batch: int  # frames one detect_batch call may get (1: no batching)

    def detect(self, image: np.ndarray) -> Detections: ...

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for several frames (the pipeline batches across streams), in order."""
        ...

    def fork(self) -> Detector:
        """Another handle on the same loaded model, with its own buffers, so a second thread can run a
        request at the same time. Called `requests - 1` times; backends with one request raise."""
        ...

    def close(self) -> None:
        """Release what the runtime holds (sessions, compiled models, GPU memory); again: nothing. Called
        once by whoever created the detector, after every fork is done."""
        ...


BACKENDS = ("onnxruntime", "openvino", "tensorrt", "ultralytics", "triton")


def resolve_backend(model_path: str | Path, backend: str) -> str:
    """The backend `auto` means for this model by its format, before any measurement.

    TensorRT wherever it can run (an NVIDIA GPU with tensorrt and pycuda installed) for ONNX and plans;
    Ultralytics for PyTorch `.pt`; OpenVINO for its own IR; ONNX Runtime for ONNX. On a CPU, `create_detector`
    then lets a timed trial pick between ONNX Runtime and OpenVINO and their precisions (detect/choose.py).
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
        from perception.detect.tensorrt.gpu import tensorrt_available

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


def create_detector(
    model_path: str | Path, cfg: Config, requests: int = 1, frames_from: str | Path | None = None
) -> Detector:
    """Build the configured backend, set up for `requests` frames in inference at once (ONNX Runtime,
    OpenVINO and Triton; the others always run one). Every backend takes `(model_path, cfg, requests)`.
    `backend: auto` on a CPU picks the runtime and precision per machine and model (detect/choose.py; the
    choice is in the detector's `choice`), checking reduced precision on real frames: `detector.auto_frames`,
    else `frames_from` (the run's source, when a file or folder). Imports are local so a missing optional
    backend costs nothing."""
    backend = resolve_backend(model_path, cfg.detector.backend)
    if cfg.detector.backend == "auto" and backend in ("onnxruntime", "openvino"):
        from perception.detect.auto.choose import choose_backend

        if backend == "onnxruntime":
            _check_model_folder(Path(model_path))
        detector, choice = choose_backend(model_path, cfg, requests, frames_from, _create)
        detector.choice = choice
        return detector
    return _create(model_path, cfg, requests)


def _create(model_path: str | Path, cfg: Config, requests: int = 1) -> Detector:
    backend = resolve_backend(model_path, cfg.detector.backend)
    if backend != "openvino":  # which says so itself
        _check_model_folder(Path(model_path))
    if backend == "onnxruntime":
        from perception.detect.runtimes.onnxruntime import OnnxRuntimeDetector as cls
    elif backend == "openvino":
        from perception.detect.runtimes.openvino import OpenVinoDetector as cls
    elif backend == "ultralytics":
        from perception.detect.runtimes.ultralytics import UltralyticsDetector as cls
    elif backend == "tensorrt":
        from perception.detect.tensorrt.runtime import TensorRTDetector as cls
    elif backend == "triton":
        from perception.detect.triton.backend import TritonDetector as cls
    else:
        raise ValueError(f"unknown detector backend {backend!r}")
    return cls(model_path, cfg, requests)


def _check_model_folder(path: Path) -> None:
    """A folder is read as an OpenVINO export (its one `.xml`); one without tells what it does hold."""
    if not path.is_dir() or any(path.glob("*.xml")):
        return
    files = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".onnx", ".engine", ".plan", ".pt"))
    hint = f"; pass the model file itself, e.g. --model {path / files[0]}" if files else ""
    raise PerceptionError(
        f"model folder {path} holds no model file: a folder must be an OpenVINO export with its .xml{hint}"
    )
