"""Detection stage: an image in, `Detections` in frame pixels and driving labels out."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from perception.config import Config
from perception.types import Detections


class Detector(Protocol):
    """What every backend provides; the pipeline knows nothing else about it."""

    class_names: list[str]  # the model's classes, indexed by Detections.class_ids
    input_hw: tuple[int, int]
    layout: str  # output layout decoded: "yolox" or "ultralytics"

    def detect(self, image: np.ndarray) -> Detections: ...


def create_detector(model_path: str | Path, cfg: Config) -> Detector:
    """Build the configured backend. Imports are local so a missing optional backend costs nothing."""
    if cfg.detector.backend == "onnxruntime":
        from perception.detect.onnxruntime import OnnxRuntimeDetector

        return OnnxRuntimeDetector(model_path, cfg.detector, cfg.classes)
    raise ValueError(f"unknown detector backend {cfg.detector.backend!r}")
