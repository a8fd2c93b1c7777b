"""Labels: the model's class names (from its metadata) and the taxonomy that maps them onto driving labels."""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence

import numpy as np

from perception.core.errors import PerceptionError

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


def _parsed(names: object) -> object:
    if isinstance(names, str):
        try:
            return ast.literal_eval(names)
        except (ValueError, SyntaxError):
            try:
                return json.loads(names)
            except ValueError:
                return None
    return names


def names_count(names: object) -> int | None:
    """How many classes the metadata names, None when it names none."""
    names = _parsed(names)
    if isinstance(names, Mapping | list | tuple) and len(names):
        return len(names)
    return None


def class_names_from(names: object, num_classes: int) -> list[str]:
    """Class names from a model's metadata, in whichever form the export stored them.

    Ultralytics writes `{0: 'person', ...}`: as a Python-literal string in ONNX metadata, as YAML in
    `metadata.yaml`, as JSON (string keys) in `.engine` headers. Without usable names, an 80-class model is
    taken to be COCO, and anything else gets `class0`, `class1`, ...
    """
    names = _parsed(names)
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


ALL_CLASSES = "*"  # in a taxonomy list: every class of the model that no other label names


def _listing(names: Sequence[str], most: int = 12) -> str:
    """The first names of a model's classes, and how many it has."""
    distinct = list(dict.fromkeys(names))
    shown = ", ".join(distinct[:most]) + (", ..." if len(distinct) > most else "")
    return f"{shown} ({len(names)} classes)"


class Taxonomy:
    """Maps the model's classes onto driving labels with one lookup table.

    `classes` maps each label to the model's class names it gathers; `"*"` takes every class no other label
    names (`{traffic_sign: ["*"]}`: all of a sign detector's classes). A name the model does not have is a
    config error; classes no label takes are dropped, and listed in `dropped` so a user can be told once.
    Names are matched to every class that carries them (exports do repeat names).
    """

    def __init__(
        self,
        classes: Mapping[str, Sequence[str]],
        class_names: Sequence[str],
        where: str = "config classes",
        only: Sequence[str | int] | None = None,
    ) -> None:
        self.labels = list(classes)
        self.class_names = list(class_names)
        ids_by_name: dict[str, list[int]] = {}
        for i, name in enumerate(class_names):
            ids_by_name.setdefault(name, []).append(i)
        self.lut = np.full(len(class_names), -1, np.int32)
        rest: int | None = None
        for label_id, (label, names) in enumerate(classes.items()):
            for name in names:
                if name == ALL_CLASSES:
                    rest = label_id
                elif name in ids_by_name:
                    self.lut[ids_by_name[name]] = label_id
                else:
                    raise PerceptionError(
                        f"{where}.{label}: {name!r} is not a class of the model "
                        f"(its classes: {_listing(self.class_names)})"
                    )
        if rest is not None:
            self.lut[self.lut < 0] = rest
        self.dropped = list(dict.fromkeys(self.class_names[i] for i in np.flatnonzero(self.lut < 0)))
        if (
            only is not None
        ):  # `--classes` / detector.classes: just these (after `dropped`, which is the taxonomy's)
            self.lut[~self._wanted(only, ids_by_name)] = -1

    def _wanted(self, only: Sequence[str | int], ids_by_name: Mapping[str, object]) -> np.ndarray:
        keep = np.zeros(len(self.class_names), bool)
        last = len(self.class_names) - 1
        for item in only:
            if isinstance(item, int) and not 0 <= item <= last:
                raise PerceptionError(f"detector.classes: {item} is no class index of the model (0-{last})")
            if isinstance(item, str) and item not in ids_by_name:
                raise PerceptionError(f"detector.classes: {item!r} is not a class of the model")
            ids = [item] if isinstance(item, int) else np.atleast_1d(ids_by_name[item]).tolist()
            if all(self.lut[i] < 0 for i in ids):
                raise PerceptionError(
                    f"detector.classes: {self.class_names[ids[0]]!r} is in no label of config classes, so "
                    "it would never be reported"
                )
            keep[ids] = True
        return keep


def describe_dropped(dropped: Sequence[str], class_names: Sequence[str]) -> str | None:
    """One line naming the classes no label of the taxonomy takes, or None when every class is kept."""
    if not dropped:
        return None
    return (
        f"{len(dropped)} of the model's {len(set(class_names))} classes are in no label of the taxonomy "
        f"(config classes) and are dropped: {', '.join(dropped)}"
    )
