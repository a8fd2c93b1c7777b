"""What a model's export says about itself: Ultralytics and YOLOv5 write `names`, `stride`, `imgsz`, `task`,
`end2end` into ONNX `metadata_props`, OpenVINO's `metadata.yaml`, or a TensorRT `.engine` header; values
come as Python-literal strings (ONNX) or typed (YAML, JSON). Read once at load, so layout and class names
come from the model, not from assumptions."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field


def _value(raw: object) -> object:
    """A metadata value as Python: ONNX stores `True`, `[640, 640]`, `{0: 'person'}` as strings."""
    if isinstance(raw, str):
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return raw
    return raw


@dataclass(frozen=True)
class ModelMetadata:
    """The parts of an export's metadata the detector uses; None where the export did not say."""

    names: object = None  # class names as stored ({0: 'person', ...} or a list); see labels.class_names_from
    stride: int | None = None
    imgsz: tuple[int, int] | None = None
    end2end: bool | None = None  # an NMS-free head (YOLO26, YOLOv10): N x K x 6 final boxes
    task: str | None = None  # detect, segment, pose, obb, classify
    producer: str = ""  # "ultralytics" (author field), "yolov5" (names and stride only), "" (nothing)
    raw: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, object] | None) -> ModelMetadata:
        raw = dict(raw or {})
        values = {k: _value(v) for k, v in raw.items()}
        stride = values.get("stride")
        if isinstance(stride, list | tuple) and stride:  # some exports list one stride per head
            stride = max(stride)
        imgsz = values.get("imgsz")
        if isinstance(imgsz, int):
            imgsz = (imgsz, imgsz)
        elif isinstance(imgsz, list | tuple) and len(imgsz) == 2:
            imgsz = (int(imgsz[0]), int(imgsz[1]))
        else:
            imgsz = None
        end2end = values.get("end2end")
        task = values.get("task")
        author = str(values.get("author", ""))
        if "ultralytics" in author.lower():
            producer = "ultralytics"
        elif values.get("names") is not None and stride is not None:
            producer = "yolov5"  # YOLOv5's export.py writes exactly {stride, names}
        else:
            producer = ""
        return cls(
            names=values.get("names"),
            stride=int(stride) if isinstance(stride, int | float) else None,
            imgsz=imgsz,
            end2end=end2end if isinstance(end2end, bool) else None,
            task=task if isinstance(task, str) else None,
            producer=producer,
            raw=raw,
        )

    def describe(self) -> str:
        """For messages: which export wrote it and the keys that matter."""
        keys = [k for k in ("names", "stride", "imgsz", "task", "end2end") if k in self.raw]
        who = {"ultralytics": "Ultralytics", "yolov5": "YOLOv5-style"}.get(self.producer, "model")
        return f"{who} metadata ({', '.join(keys)})" if keys else "no metadata"
