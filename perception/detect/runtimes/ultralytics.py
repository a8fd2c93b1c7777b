"""Ultralytics backend: anything `ultralytics.YOLO` loads (.pt, and its ONNX, OpenVINO, TensorRT exports),
returning the project's own `Detections`, so the rest of the pipeline is unchanged; and `export_model`,
the route from a `.pt` to the formats the other backends run.

Ultralytics runs its own letterbox and class-aware NMS (at our thresholds, restricted to the classes the
taxonomy keeps); `finish_detections` then applies the same per-label NMS every other backend ends with, so
a car box and a truck box on one vehicle are one detection here too. The two in a row equal one per-label
NMS except in a rare chain (car A suppresses car B in Ultralytics' pass, a truck then suppresses A: a
single per-label pass might have kept B); on the parity frames and the accuracy set the results of this
backend and the OpenVINO one are identical.

Ultralytics reaches for the network on its own (AutoUpdate pip installs of missing requirements, event
reporting, asset lookups); it is imported with YOLO_OFFLINE=1 and YOLO_AUTOINSTALL=False so it never does.
The one exception is deliberate: a released model name such as `yolo11n.pt` that is not on disk is
downloaded when the machine is online, as Ultralytics users expect.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from perception.core.config import Config, DetectorConfig
from perception.core.errors import PerceptionError, first_line
from perception.core.types import Detections
from perception.detect.decode import finish_detections
from perception.detect.labels import Taxonomy, class_names_from
from perception.detect.quantized import is_quantized

INSTALL_HINT = 'pip install -e ".[ultralytics]"'
_TRUE = {"1", "true", "yes", "on", "y", "t"}
_user_offline: bool | None = None  # YOLO_OFFLINE as the user set it, before this module forced it on


def load_ultralytics() -> Any:
    """The `ultralytics` module, imported offline: no AutoUpdate, no telemetry, quiet."""
    global _user_offline
    if _user_offline is None:
        _user_offline = os.environ.get("YOLO_OFFLINE", "").strip().lower() in _TRUE
    os.environ["YOLO_OFFLINE"] = "1"  # read at import: `ONLINE` is False, so no events and no AutoUpdate
    os.environ["YOLO_AUTOINSTALL"] = "False"  # never pip-install a missing requirement at run time
    os.environ.setdefault("YOLO_VERBOSE", "False")
    try:
        import ultralytics
    except ImportError:
        raise PerceptionError(f"the ultralytics backend needs Ultralytics: {INSTALL_HINT}") from None
    return ultralytics


@contextlib.contextmanager
def _network_allowed() -> Iterator[None]:
    """Lift YOLO_OFFLINE for one deliberate download (Ultralytics checks it again when a download fails)."""
    os.environ["YOLO_OFFLINE"] = "0"
    try:
        yield
    finally:
        os.environ["YOLO_OFFLINE"] = "1"


def resolve_model(model: str | Path) -> tuple[str, bool]:
    """(what to pass to YOLO, whether it must be downloaded). A local file or folder wins; a bare released
    model name is looked up in Ultralytics' weights folder, else downloaded when online."""
    path = Path(model)
    if path.exists():
        return str(path), False
    from ultralytics.utils import SETTINGS, is_online
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    if path.parent == Path(".") and path.name in GITHUB_ASSETS_NAMES:
        cached = Path(SETTINGS["weights_dir"]) / path.name
        if cached.is_file():
            return str(cached), False
        if not _user_offline:
            with _network_allowed():
                online = is_online()
            if online:
                return path.name, True
        raise PerceptionError(f"model not found: {model} (offline: pass --model with a local file)")
    raise PerceptionError(f"model not found: {model}")


def _open(model: str | Path, task: str | None = "detect") -> Any:
    ultralytics = load_ultralytics()
    source, download = resolve_model(model)
    try:
        with _network_allowed() if download else contextlib.nullcontext():
            return ultralytics.YOLO(source, task=task)
    except Exception as exc:  # Ultralytics raises many types for unreadable or unsupported files
        raise PerceptionError(f"cannot load model {model}: {first_line(exc)}") from None


def device_and_half(cfg: DetectorConfig, model_path: str | Path) -> tuple[str | None, bool]:
    """Ultralytics' `device` (None: its own choice, the first CUDA GPU where torch sees one, else the CPU) and
    `half` from `detector.ultralytics_device` and `detector.precision` (fp16: half precision, which
    Ultralytics applies on a GPU only)."""
    precision = cfg.precision
    if precision == "bf16":
        raise PerceptionError("detector.precision bf16: the ultralytics backend runs fp32 or fp16 (half)")
    if precision == "int8" and (
        Path(str(model_path)).suffix.lower() == ".pt" or not is_quantized(model_path)
    ):
        raise PerceptionError(
            f"detector.precision int8: {model_path} is not quantized; Ultralytics runs INT8 exports as they "
            "are (yolo export format=openvino int8=True), or: perception quantize MODEL --calib FRAMES"
        )
    device = None if cfg.ultralytics_device == "auto" else cfg.ultralytics_device
    return device, precision == "fp16"


def precision_options(device: str | None, half: bool) -> dict[str, Any]:
    """predict()/track() keyword arguments for a device and half precision: `quantize=16` in Ultralytics
    releases that replaced `half` with it (8.4), `half=True` in earlier ones; nothing when left to it."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    options: dict[str, Any] = {} if device is None else {"device": device}
    if half:
        options.update({"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True})
    return options


class UltralyticsDetector:
    """`ultralytics.YOLO` behind the Detector protocol."""

    backend = "ultralytics"
    layout = "ultralytics"
    requests = 1  # one request at a time

    def __init__(self, model_path: str | Path, cfg: Config, requests: int = 1) -> None:
        classes = cfg.classes
        cfg = self.cfg = cfg.detector
        device, half = device_and_half(cfg, model_path)  # checked before the model loads
        self.model = _open(model_path)
        self._options = precision_options(device, half)  # predict()'s device and precision, every frame
        self._imgsz = list(cfg.input_size)
        self._classes: list[int] | None = None
        # Warm-up sets up Ultralytics' predictor (the model is loaded there, once); an export with a fixed
        # input size then shows its own size.
        self._predict(np.zeros((*cfg.input_size, 3), np.uint8))
        self.input_hw = tuple(int(v) for v in self.model.predictor.imgsz)
        is_pt = Path(str(model_path)).suffix.lower() == ".pt"
        # A PyTorch model runs a list of frames as one batch (several streams: one GPU call); exports have
        # the batch size they were exported with.
        self.max_batch = 8 if is_pt else 1
        if not is_pt and not getattr(self.model.predictor.model, "metadata", None):
            raise PerceptionError(
                f"model {model_path} is not an Ultralytics export (no Ultralytics metadata), so Ultralytics "
                "cannot decode its output: use --backend onnxruntime or openvino"
            )
        names = self.model.names
        self.class_names = class_names_from(names, len(names))
        self.taxonomy = Taxonomy(classes, self.class_names, only=cfg.classes)
        self.labels, self.dropped_classes = self.taxonomy.labels, self.taxonomy.dropped
        metadata = getattr(self.model.predictor.model, "metadata", None) or {}
        end2end = bool(metadata.get("end2end") or getattr(self.model.model, "end2end", False))
        self.layout = "end2end" if end2end else "ultralytics"
        self.layout_reason = "decoded by Ultralytics itself"
        # Ultralytics drops other classes after picking each box's best class, as finish_detections does.
        self._classes = np.flatnonzero(self.taxonomy.lut >= 0).tolist()

    def _predict(self, image: np.ndarray | list[np.ndarray]):
        """One frame's Results, or a list of them for a list of frames."""
        cfg = self.cfg
        try:
            results = self.model.predict(
                image,
                imgsz=self._imgsz,
                conf=cfg.conf_threshold,
                iou=cfg.nms_iou_threshold,
                max_det=cfg.max_detections,
                classes=self._classes,
                verbose=False,
                **self._options,
            )
            return results if isinstance(image, list) else results[0]
        except Exception as exc:
            raise PerceptionError(f"Ultralytics inference failed: {first_line(exc)}") from None

    def fork(self) -> UltralyticsDetector:
        raise PerceptionError("the ultralytics backend runs one request at a time (detector.requests: 1)")

    def close(self) -> None:
        """Drop the model (Ultralytics holds no other resources)."""
        self.model = None

    def detect(self, image: np.ndarray) -> Detections:
        return self._finish(self._predict(image).boxes)

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        if len(images) == 1:
            return [self.detect(images[0])]
        return [self._finish(result.boxes) for result in self._predict(list(images))]

    def _finish(self, boxes) -> Detections:
        return finish_detections(
            boxes.xyxy.cpu().numpy(),
            boxes.conf.cpu().numpy(),
            boxes.cls.cpu().numpy().astype(np.int32),
            self.taxonomy,
            None,
            self.cfg.nms_iou_threshold,
            self.cfg.max_detections,
        )


EXPORT_FORMATS = ("onnx", "openvino")


def export_model(
    model: str | Path, fmt: str, imgsz: tuple[int, int] | None = None, dynamic: bool = False
) -> Path:
    """Export a `.pt` through Ultralytics, next to it; returns the exported file (ONNX) or folder
    (OpenVINO)."""
    if fmt not in EXPORT_FORMATS:
        raise PerceptionError(f"export format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if Path(str(model)).suffix.lower() != ".pt":
        raise PerceptionError(f"export starts from an Ultralytics .pt model, got {model}")
    yolo = _open(model, task=None)
    kwargs: dict[str, Any] = {"format": fmt, "dynamic": dynamic}
    if imgsz is not None:
        kwargs["imgsz"] = list(imgsz)
    if fmt == "onnx":
        if importlib.util.find_spec("onnx") is None:
            raise PerceptionError(f"export to ONNX needs the onnx package: {INSTALL_HINT}")
        kwargs["simplify"] = importlib.util.find_spec("onnxslim") is not None
    try:
        out = yolo.export(**kwargs)
    except Exception as exc:
        raise PerceptionError(f"export of {model} to {fmt} failed: {first_line(exc)}") from None
    return Path(out)
