"""Labels: the model's class names (from its metadata) and the taxonomy that maps them onto driving labels."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence

import numpy as np

from perception.errors import PerceptionError

# fmt: off
COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)
# fmt: on


def class_names_from(names: object, num_classes: int) -> list[str]:
    """Class names from a model's metadata, in whichever form the export stored them.

    Ultralytics writes `{0: 'person', ...}`: as a Python-literal string in ONNX metadata, as YAML in
    `metadata.yaml`, as JSON (string keys) in `.engine` headers. Without usable names, an 80-class model is
    taken to be COCO, and anything else gets `class0`, `class1`, ...
    """
    if isinstance(names, str):
        try:
            names = ast.literal_eval(names)
        except (ValueError, SyntaxError):
            try:
                names = json.loads(names)
            except ValueError:
                names = None
    try:
        if isinstance(names, Mapping):
            by_index = {int(k): str(v) for k, v in names.items()}
            return [by_index[i] for i in range(num_classes)]
        if isinstance(names, Sequence) and not isinstance(names, str) and len(names) == num_classes:
            return [str(n) for n in names]
    except (KeyError, ValueError, TypeError):
        pass
    if num_classes == len(COCO_NAMES):
        return list(COCO_NAMES)
    return [f"class{i}" for i in range(num_classes)]


class Taxonomy:
    """Maps the model's classes onto driving labels with one lookup table; `only` (config
    `detector.classes`, names or indices) keeps just those classes."""

    def __init__(
        self,
        classes: Mapping[str, Sequence[str]],
        class_names: Sequence[str],
        only: Sequence[str | int] | None = None,
    ) -> None:
        self.labels = list(classes)
        self.class_names = list(class_names)
        index = {name: i for i, name in enumerate(class_names)}
        self.lut = np.full(len(class_names), -1, np.int32)
        for label_id, (label, names) in enumerate(classes.items()):
            for name in names:
                if name not in index:
                    raise PerceptionError(f"config classes.{label}: {name!r} is not a class of the model")
                self.lut[index[name]] = label_id
        if only is not None:
            self.lut[~self._wanted(only, index)] = -1

    def _wanted(self, only: Sequence[str | int], index: Mapping[str, int]) -> np.ndarray:
        keep = np.zeros(len(self.class_names), bool)
        last = len(self.class_names) - 1
        for item in only:
            if isinstance(item, int) and not 0 <= item <= last:
                raise PerceptionError(f"detector.classes: {item} is no class index of the model (0-{last})")
            if isinstance(item, str) and item not in index:
                raise PerceptionError(f"detector.classes: {item!r} is not a class of the model")
            i = item if isinstance(item, int) else index[item]
            if self.lut[i] < 0:
                raise PerceptionError(
                    f"detector.classes: {self.class_names[i]!r} is in no label of config classes, so it "
                    "would never be reported"
                )
            keep[i] = True
        return keep
