"""The one skeleton every runtime that runs a bare YOLO graph shares: letterbox -> run -> decode, each step
timed, plus fork() and close(). A backend only loads a model (`_load`) and runs a tensor (`_run`); a remote
runtime (an inference server) fits the same two methods.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.config import Config
from perception.detect.decode import HeadDecoder, detect_layout
from perception.detect.labels import class_names_from
from perception.types import Detections


@dataclass
class LoadedModel:
    """What a runtime reports once it has loaded a model: all the skeleton needs to set up the rest."""

    input_hw: tuple[int, int]  # the size frames are letterboxed to
    output_shape: list[int | None]  # the output's dimensions, None where dynamic
    metadata: Mapping[str, object] = field(default_factory=dict)  # as the export stored it: names, ...
    layout: str | None = None  # a layout the model's own files record (a TensorRT plan's sidecar)
    tensor: np.ndarray | None = None  # the runtime's own float32 input buffer (TensorRT: pinned memory)
    warmup_runs: int = 1  # inferences at load (the first also checks the output against the layout)


class HeadDetector:
    """A `Detector` for one YOLO graph on one runtime. One constructor for every backend:
    `(model_path, cfg, requests)`; subclasses implement `_load` and `_run`, and `_new_request` and
    `_release` where the runtime keeps per-request state or holds resources."""

    backend = ""

    def __init__(self, model_path: str | Path, cfg: Config, requests: int = 1) -> None:
        self.model_path = Path(model_path)
        self.cfg = cfg.detector
        self.requests = requests
        self.timings_ms: dict[str, float] = {}  # the last detect() by step, for benchmarks
        model = self._load(self.model_path, cfg)
        self.input_hw = model.input_hw
        if self.cfg.layout != "auto":
            self.layout = self.cfg.layout
        else:
            self.layout = model.layout or detect_layout(model.output_shape, input_hw=self.input_hw)
        self.decoder = HeadDecoder(self.layout, self.input_hw, self.cfg, tensor=model.tensor)
        self._new_request()
        # Warm-up doubles as a check that the output really has the layout we are about to decode.
        blank = np.zeros((*self.input_hw, 3), np.uint8)
        raw = self._run(self.decoder.letterbox(blank))
        num_classes = self.decoder.num_classes(raw.shape, self.model_path)
        self.class_names = class_names_from(model.metadata.get("names"), num_classes)
        self.decoder.set_classes(cfg.classes, self.class_names)
        for _ in range(model.warmup_runs - 1):  # first runs pay for lazy runtime initialisation
            self.detect(blank)

    # ------------------------------------------------------------ what a backend provides

    def _load(self, path: Path, cfg: Config) -> LoadedModel:
        """Load the model (a refusal is a PerceptionError naming the file) and say what it takes."""
        raise NotImplementedError

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        """Run one (1, 3, H, W) float32 input; the raw output with its batch axis, as float32."""
        raise NotImplementedError

    def _new_request(self) -> None:
        """Per-request state for this handle (OpenVINO: an infer request bound to this handle's letterbox
        tensor); called once at load and once per fork(). An ONNX Runtime session needs none."""

    def _release(self) -> None:
        """Free what the runtime holds (sessions, compiled models, GPU memory)."""

    # ------------------------------------------------------------ the Detector protocol

    def detect(self, image: np.ndarray) -> Detections:
        t0 = time.monotonic_ns()
        tensor = self.decoder.letterbox(image)
        t1 = time.monotonic_ns()
        raw = self._run(tensor)
        t2 = time.monotonic_ns()
        detections = self.decoder(raw[0])
        t3 = time.monotonic_ns()
        timings = self.timings_ms
        timings["preprocess"] = (t1 - t0) / 1e6
        timings["inference"] = (t2 - t1) / 1e6
        timings["postprocess"] = (t3 - t2) / 1e6
        return detections

    def fork(self) -> HeadDetector:
        twin = copy.copy(self)
        twin.decoder = self.decoder.fork()
        twin.timings_ms = {}
        twin._new_request()
        return twin

    def close(self) -> None:
        """Release the runtime's resources; calling it again does nothing. Forks share the loaded model:
        close the detector they came from once every fork is done."""
        if not getattr(self, "_closed", False):
            self._closed = True
            self._release()
