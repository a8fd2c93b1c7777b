"""The one skeleton every runtime that runs a bare YOLO graph shares: letterbox -> run -> decode, each step
timed, plus fork() and close(). A backend only loads a model (`_load`) and runs a tensor (`_run`); a remote
runtime (an inference server) fits the same two methods.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.core.config import Config
from perception.core.types import Detections
from perception.detect.decode import HeadDecoder, choose_layout
from perception.detect.labels import class_names_from, names_count
from perception.detect.metadata import ModelMetadata


@dataclass
class LoadedModel:
    """What a runtime reports once it has loaded a model: all the skeleton needs to set up the rest."""

    input_hw: tuple[int, int]  # the size frames are letterboxed to
    metadata: Mapping[str, object] = field(default_factory=dict)  # as the export stored it (metadata.py)
    layout: str | None = None  # a layout the model's own files record (a TensorRT plan's sidecar)
    tensor: np.ndarray | None = None  # the runtime's own float32 input buffer (TensorRT: pinned memory)
    warmup_runs: int = 0  # inferences at load after the first (which shows the output's layout)


class HeadDetector:
    """A `Detector` for one YOLO graph on one runtime. One constructor for every backend:
    `(model_path, cfg, requests)`; subclasses implement `_load` and `_run`, and `_new_request` and
    `_release` where the runtime keeps per-request state or holds resources."""

    backend = ""
    max_batch = 1  # frames a detect_batch call may get (the pipeline batches across streams up to this)

    def __init__(self, model_path: str | Path, cfg: Config, requests: int = 1) -> None:
        self.model_path = Path(model_path)
        self.cfg = cfg.detector
        self.requests = requests
        self.timings_ms: dict[str, float] = {}  # the last detect() by step, for benchmarks
        self._rows: tuple[np.ndarray, list[HeadDecoder]] | None = None  # detect_batch's tensor and decoders
        try:
            self._set_up(self._load(self.model_path, cfg), cfg)
        except BaseException:
            self._release()  # a model that cannot be used gives back what it took (GPU memory) at once
            raise

    def _set_up(self, model: LoadedModel, cfg: Config) -> None:
        """Recognise the layout on a first run, then build the decoder and taxonomy, then warm up."""
        self.input_hw = model.input_hw
        meta = ModelMetadata.parse(model.metadata)
        # The first run (on a blank frame) shows the real output, which the layout is recognised from.
        provisional = self.cfg.layout if self.cfg.layout != "auto" else model.layout or "ultralytics"
        self.decoder = HeadDecoder(provisional, self.input_hw, self.cfg, tensor=model.tensor)
        self._new_request()
        blank = np.zeros((*self.input_hw, 3), np.uint8)
        raw = self._run(self.decoder.letterbox(blank))
        if self.cfg.layout != "auto":
            self.layout, self.layout_reason = self.cfg.layout, "set by detector.layout"
        else:
            self.layout, self.layout_reason = choose_layout(raw, self.input_hw, meta, model.layout)
        if self.layout != provisional:  # same input buffer: a runtime bound to it stays bound
            self.decoder = HeadDecoder(self.layout, self.input_hw, self.cfg, self.decoder.letterbox.tensor)
        num_classes = self.decoder.num_classes(raw.shape, self.model_path, names_count(meta.names))
        self.class_names = class_names_from(meta.names, num_classes)
        self.decoder.set_classes(cfg.classes, self.class_names)
        self.labels = self.decoder.taxonomy.labels
        self.dropped_classes = self.decoder.taxonomy.dropped
        for _ in range(model.warmup_runs):  # first runs pay for lazy initialisation, not frame one
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

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detections for several frames (from several streams), in order. A model with a batch axis runs
        them in one inference (each frame letterboxed into its row of one tensor, decoded with its own
        mapping back); otherwise one after another. `timings_ms` then covers the whole batch."""
        n = len(images)
        if n == 1:
            return [self.detect(images[0])]
        if n <= self.max_batch:
            return self._detect_batched(images)
        totals: dict[str, float] = {}
        out = []
        for image in images:
            out.append(self.detect(image))
            for step, ms in self.timings_ms.items():
                totals[step] = totals.get(step, 0.0) + ms
        self.timings_ms.update(totals)
        return out

    def _detect_batched(self, images: Sequence[np.ndarray]) -> list[Detections]:
        n = len(images)
        if self._rows is None:  # a (max_batch, 3, H, W) tensor, and a decoder writing into each row
            batch = np.empty((self.max_batch, 3, *self.input_hw), np.float32)
            self._rows = (batch, [self.decoder.fork(tensor=batch[i : i + 1]) for i in range(self.max_batch)])
        batch, rows = self._rows
        t0 = time.monotonic_ns()
        for image, row in zip(images, rows, strict=False):
            row.letterbox(image)
        t1 = time.monotonic_ns()
        raw = self._run(batch[:n])
        t2 = time.monotonic_ns()
        detections = [row(raw[i]) for i, row in enumerate(rows[:n])]
        t3 = time.monotonic_ns()
        self.timings_ms.update(
            preprocess=(t1 - t0) / 1e6, inference=(t2 - t1) / 1e6, postprocess=(t3 - t2) / 1e6
        )
        return detections

    def fork(self) -> HeadDetector:
        twin = copy.copy(self)
        twin._rows = None
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
