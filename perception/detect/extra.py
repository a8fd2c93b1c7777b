"""Extra detectors: more models on the same frames (a traffic-sign detector beside the main one), built from
config `extra_detectors`. Each keeps its own taxonomy; its detections are put into the run's label space
(`Config.labels`) and class space (`run_class_names`), so they merge with the main detector's before
tracking and a track keeps the model's own class name ("speed limit 50")."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.core.config import Config, ExtraDetectorConfig
from perception.core.errors import PerceptionError
from perception.core.types import Detections
from perception.detect import Detector, create_detector


@dataclass
class ExtraDetector:
    """One extra model, with what it takes to merge its detections into the run's."""

    detector: Detector
    name: str  # "extra_detectors[0] gtsdb_yolov5n_640.onnx", for messages and latency keys
    every_n_frames: int  # runs on frames whose index is a multiple of this
    label_map: np.ndarray  # (its labels,) int32: its label id -> the run's (index into Config.labels)
    class_offset: int  # its class id + this -> index into run_class_names()

    def due(self, frame_index: int) -> bool:
        return frame_index % self.every_n_frames == 0

    @property
    def latency_key(self) -> str:
        """Its time in a frame's `latency_ms`: `detect:<model stem>`."""
        return f"detect:{Path(self.name.split(' ', 1)[-1]).stem}"

    @property
    def class_ids(self) -> np.ndarray:
        """The run's class ids this detector produces (unobserved on frames it skips)."""
        return np.arange(self.class_offset, self.class_offset + len(self.detector.class_names))

    def detect(self, image: np.ndarray) -> Detections:
        """Its detections in the run's label and class ids."""
        det = self.detector.detect(image)
        return Detections(
            det.boxes_xyxy, det.scores, det.class_ids + self.class_offset, self.label_map[det.label_ids]
        )

    @property
    def timings_ms(self) -> dict[str, float]:
        return getattr(self.detector, "timings_ms", {})

    def fork(self) -> ExtraDetector:
        twin = ExtraDetector(**vars(self))
        twin.detector = self.detector.fork()
        return twin

    def close(self) -> None:
        self.detector.close()


def extra_config(cfg: Config, extra: ExtraDetectorConfig) -> Config:
    """The config an extra detector is built with: the run's detector section with the entry's own keys,
    its own taxonomy."""
    keys = ("backend", "input_size", "conf_threshold")
    update = {k: getattr(extra, k) for k in keys if getattr(extra, k) is not None}
    return cfg.model_copy(
        update={
            "detector": cfg.detector.model_copy(update=update),
            "classes": extra.classes,
            "extra_detectors": [],
        }
    )


def create_extra_detectors(cfg: Config, main: Detector, requests: int = 1) -> list[ExtraDetector]:
    """Every `extra_detectors` entry, loaded; class ids numbered after the main detector's. An entry that
    cannot load is an error naming it; the ones already loaded are closed first."""
    labels = cfg.labels
    offset = len(main.class_names)
    built: list[ExtraDetector] = []
    try:
        for i, extra in enumerate(cfg.extra_detectors):
            where = f"extra_detectors[{i}]"
            try:
                detector = create_detector(extra.model, extra_config(cfg, extra), requests)
            except PerceptionError as exc:
                message = str(exc)
                if message.startswith("config classes."):  # the entry's own taxonomy: name its key
                    message = f"{where}.classes.{message.removeprefix('config classes.')}"
                else:
                    message = f"{where} ({extra.model}): {message}"
                raise PerceptionError(message) from None
            label_map = np.array([labels.index(label) for label in detector.labels], np.int32)
            name = f"{where} {Path(extra.model).name}"
            built.append(ExtraDetector(detector, name, extra.every_n_frames, label_map, offset))
            offset += len(detector.class_names)
    except BaseException:
        for extra_detector in built:
            extra_detector.close()
        raise
    return built


def run_class_names(main: Detector, extras: Sequence[ExtraDetector]) -> list[str]:
    """The run's class names: the main model's, then each extra model's, as the class ids are numbered."""
    names = list(main.class_names)
    for extra in extras:
        names += extra.detector.class_names
    return names


def merge_detections(parts: Sequence[Detections]) -> Detections:
    """One frame's detections from several detectors, best first (no NMS across models: a sign detector's
    box and the main model's are different objects, or different labels)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections.empty()
    if len(parts) == 1:
        return parts[0]
    scores = np.concatenate([p.scores for p in parts])
    order = np.argsort(-scores, kind="stable")
    return Detections(
        np.concatenate([p.boxes_xyxy for p in parts])[order],
        scores[order],
        np.concatenate([p.class_ids for p in parts])[order],
        np.concatenate([p.label_ids for p in parts])[order],
    )
