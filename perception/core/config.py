"""Configuration: `configs/default.yaml` holds every default; a user YAML overrides any subset of it.

`configs/default.yaml` is where defaults are documented and changed; the models below carry the same values
(a test keeps the two identical), so every algorithm can also be built in code: `Tracker(TrackerConfig())`.
Validation happens once, at load, and names the offending key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from perception.core.config_base import Fraction, PosFloat, _Strict
from perception.core.config_output import MonitorConfig, OutputConfig
from perception.core.errors import PerceptionError, first_line
from perception.core.motion_config import MotionConfig
from perception.core.yaml_file import read_mapping, shown_key, validation_message

ClassRef = Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1)]  # a model class: index or name


def _multiple_of_32(size: tuple[int, int]) -> tuple[int, int]:
    if size[0] % 32 or size[1] % 32:
        raise ValueError(f"height and width must be multiples of 32, got {list(size)}")
    return size


_Side = Annotated[int, Field(ge=32, le=4096)]
InputSize = Annotated[tuple[_Side, _Side], AfterValidator(_multiple_of_32)]  # (height, width) in pixels


DEFAULT_CLASSES: dict[str, tuple[str, ...]] = {
    "pedestrian": ("person",),
    "cyclist": ("bicycle", "motorcycle"),
    "vehicle": ("car", "bus", "truck", "train"),
    "traffic_light": ("traffic light",),
    "traffic_sign": ("stop sign",),
    "obstacle": ("fire hydrant", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow"),
}


# Detector output layouts (perception/detect/decode.py): YOLOX raw heads, YOLOv5/v7, YOLOv8/11, NMS-free.
Layout = Literal["yolox", "yolov5", "ultralytics", "end2end"]
LAYOUTS: tuple[str, ...] = get_args(Layout)


class SourceConfig(_Strict):
    mode: Literal["fast", "realtime"] = "fast"
    image_folder_fps: PosFloat = 25.0
    topic: Annotated[str, Field(min_length=1)] | None = None
    telemetry: Annotated[str, Field(min_length=1)] | None = None
    telemetry_offset_s: float = 0.0
    camera_buffer_size: Annotated[int, Field(ge=1, le=16)] = 1
    open_timeout_s: PosFloat = 10.0
    # live sources (streams, cameras): transport, stall detection, reconnecting, frame age
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    stream_probe_s: Annotated[float, Field(gt=0, le=10)] = 0.1
    stream_decode_threads: Annotated[int, Field(ge=0, le=64)] = 1
    read_timeout_s: PosFloat = 1.0
    connect_attempts: Annotated[int, Field(ge=1, le=1000)] = 3
    reconnect_attempts: Annotated[int, Field(ge=1)] | Literal["forever"] = "forever"
    backoff_initial_s: PosFloat = 0.5
    backoff_max_s: PosFloat = 8.0
    backoff_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.25
    max_frame_age_s: PosFloat = 0.5

    @field_validator("reconnect_attempts", mode="before")
    @classmethod
    def _attempts_or_forever(cls, value: Any) -> Any:
        if value == "forever" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("expected a number of attempts (1 or more) or 'forever'")

    @model_validator(mode="after")
    def _backoff_range(self) -> SourceConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s:g}) must be at least backoff_initial_s "
                f"({self.backoff_initial_s:g})"
            )
        return self


class PipelineConfig(_Strict):
    replay_queue_size: Annotated[int, Field(ge=1, le=64)] = 4


class DetectorConfig(_Strict):
    backend: Literal["auto", "onnxruntime", "openvino", "tensorrt", "ultralytics", "triton"] = "auto"
    default_model: Annotated[str, Field(min_length=1)] = "yolo11n.pt"
    layout: Literal["auto"] | Layout = "auto"
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    auto_trial: bool = True
    auto_frames: str = ""
    cache_dir: str = ""
    input_size: InputSize = (448, 800)
    conf_threshold: Fraction = 0.15
    classes: Annotated[list[ClassRef], Field(min_length=1)] | None = None
    nms_iou_threshold: Fraction = 0.5
    max_detections: Annotated[int, Field(ge=1, le=10000)] = 300
    requests: Annotated[int, Field(ge=0, le=64)] = 0
    batch: Annotated[int, Field(ge=0, le=64)] = 0
    batch_timeout_ms: Annotated[float, Field(ge=0, le=1000)] = 10.0
    intra_op_threads: Annotated[int, Field(ge=0, le=256)] = 0
    intra_op_spinning: bool = False
    openvino_device: Annotated[str, Field(min_length=1)] = "CPU"
    openvino_hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    openvino_threads: Annotated[int, Field(ge=0, le=256)] = 0
    ultralytics_device: Annotated[str, Field(min_length=1)] = "auto"
    triton_url: str = "grpc://127.0.0.1:8001"
    triton_model: str = ""
    triton_timeout_s: PosFloat = 5.0

    @field_validator("triton_url")
    @classmethod
    def _triton_url(cls, url: str) -> str:
        if not re.fullmatch(r"(grpc|grpcs|http|https)://(\[[0-9A-Fa-f:.]+\]|[^/:\s\[\]]+)(:\d{1,5})?/?", url):
            raise ValueError("expected grpc://HOST:PORT or http://HOST:PORT (grpcs://, https:// for TLS)")
        return url

    @field_validator("triton_model")
    @classmethod
    def _triton_model(cls, name: str) -> str:
        if name and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError("a Triton model name: letters, digits, '_', '.' and '-'")
        return name


def _check_taxonomy(classes: dict[str, list[str]]) -> dict[str, list[str]]:
    if not classes:
        raise ValueError("at least one label is needed")
    seen: dict[str, str] = {}
    for label, names in classes.items():
        for name in names:
            if name in seen:
                raise ValueError(f"class {name!r} is listed under both {seen[name]!r} and {label!r}")
            seen[name] = label
    return classes


class ExtraDetectorConfig(_Strict):
    """One more model run on the frames, with its own taxonomy; unset keys come from `detector`."""

    model: Annotated[str, Field(min_length=1)]
    classes: dict[str, list[str]]
    backend: Literal["auto", "onnxruntime", "openvino", "tensorrt", "ultralytics"] | None = None
    input_size: InputSize | None = None
    conf_threshold: Fraction | None = None
    every_n_frames: Annotated[int, Field(ge=1, le=1000)] = 1

    _taxonomy = field_validator("classes")(classmethod(lambda cls, v: _check_taxonomy(v)))


class TensorRTConfig(_Strict):
    engine_dir: Annotated[str, Field(min_length=1)] = "engines/cache"
    precision: Literal["fp32", "fp16", "int8"] = "fp16"
    batch: Annotated[int, Field(ge=1, le=64)] = 1
    workspace_mib: Annotated[int, Field(ge=0)] = 0
    device: Annotated[int, Field(ge=0)] = 0
    warmup_runs: Annotated[int, Field(ge=0, le=100)] = 3
    calib_min_images: Annotated[int, Field(ge=1)] = 100
    calib_max_images: Annotated[int, Field(ge=1)] = 500

    @model_validator(mode="after")
    def _calibration_range(self) -> TensorRTConfig:
        if self.calib_max_images < self.calib_min_images:
            raise ValueError(
                f"calib_max_images ({self.calib_max_images}) must be at least calib_min_images "
                f"({self.calib_min_images})"
            )
        return self


class TrackerConfig(_Strict):
    high_score_threshold: Fraction = 0.3
    new_track_score_threshold: Fraction = 0.4
    match_iou_threshold: Fraction = 0.2
    weak_match_iou_threshold: Fraction = 0.5
    confirm_s: Annotated[float, Field(ge=0)] = 0.06
    max_lost_s: PosFloat = 1.0
    position_noise: PosFloat = 0.05
    velocity_noise: PosFloat = 0.3
    measurement_noise: PosFloat = 0.05


class TTCConfig(_Strict):
    window_s: PosFloat = 0.6
    min_samples: Annotated[int, Field(ge=3, le=1000)] = 6
    min_span_s: PosFloat = 0.3
    max_ttc_s: PosFloat = 20.0
    object_height_m: dict[str, PosFloat] = Field(
        default_factory=lambda: {"pedestrian": 1.7, "cyclist": 1.7, "vehicle": 1.5}
    )
    object_width_m: dict[str, PosFloat] = Field(
        default_factory=lambda: {"pedestrian": 0.7, "cyclist": 0.8, "vehicle": 1.8}
    )
    size_prior_rel_std: PosFloat = 0.15
    pitch_std_deg: PosFloat = 2.0
    pitch_rate_std_dps: Annotated[float, Field(ge=0)] = 1.0
    edge_px_std: PosFloat = 1.0
    edge_rel_std: Annotated[float, Field(ge=0, le=1)] = 0.02
    lateral_window_s: PosFloat = 1.0
    border_margin_frac: Annotated[float, Field(ge=0, le=0.5)] = 0.04
    min_age_s: Annotated[float, Field(ge=0)] = 0.5
    min_box_px: Annotated[float, Field(ge=4)] = 24.0
    max_rel_std: PosFloat = 0.3
    max_closing_mps: PosFloat = 45.0
    agreement_sigmas: PosFloat = 3.0


class CameraConfig(_Strict):
    profile: Annotated[str, Field(min_length=1)] = "dashcam"  # name in configs/cameras/ or a path


class FCWConfig(_Strict):
    labels: list[str] = Field(default_factory=lambda: ["pedestrian", "cyclist", "vehicle", "obstacle"])
    corridor_width_m: Annotated[float, Field(gt=0, le=20)] = 2.6
    in_path_hold_s: Annotated[float, Field(ge=0)] = 0.3
    lateral_sigmas: Annotated[float, Field(ge=0)] = 1.0
    lead_switch_s: Annotated[float, Field(ge=0)] = 0.3
    cut_in_min_speed_mps: Annotated[float, Field(ge=0)] = 0.3
    cut_in_sigmas: Annotated[float, Field(ge=0)] = 2.0
    reaction_time_s: Annotated[float, Field(ge=0, le=5)] = 1.5
    closing_accel_tau_s: PosFloat = 0.5
    max_closing_accel_mps2: Annotated[float, Field(ge=0)] = 10.0
    caution_decel_mps2: PosFloat = 2.0
    warning_decel_mps2: PosFloat = 4.0
    caution_ttc_s: PosFloat = 6.0
    warning_ttc_s: PosFloat = 4.5
    path_min_speed_mps: Annotated[float, Field(ge=0)] = 2.0
    crossing_min_speed_mps: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"pedestrian": 0.5, "cyclist": 0.5, "vehicle": 3.0, "obstacle": 0.5}
    )
    crossing_sigmas: Annotated[float, Field(ge=0)] = 3.0
    min_persistence_s: Annotated[float, Field(ge=0)] = 0.2
    min_clear_s: Annotated[float, Field(ge=0)] = 0.5
    hysteresis: Annotated[float, Field(ge=0, le=2)] = 0.15
    cooldown_s: Annotated[float, Field(ge=0)] = 3.0
    max_dist_m: PosFloat = 80.0

    @model_validator(mode="after")
    def _warning_before_caution(self) -> FCWConfig:
        if self.warning_ttc_s > self.caution_ttc_s:
            raise ValueError("warning_ttc_s must not exceed caution_ttc_s")
        if self.warning_decel_mps2 < self.caution_decel_mps2:
            raise ValueError("warning_decel_mps2 must not be below caution_decel_mps2")
        return self


class BenchConfig(_Strict):
    warmup_frames: Annotated[int, Field(ge=0, le=1000)] = 10
    repeat: Annotated[int, Field(ge=1, le=100)] = 1
    compare: list[Literal["sequential", "detector", "ultralytics", "backends"]] = Field(
        default_factory=lambda: ["sequential", "detector"]
    )


class Config(_Strict):
    source: SourceConfig = Field(default_factory=SourceConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    tensorrt: TensorRTConfig = Field(default_factory=TensorRTConfig)
    classes: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_CLASSES.items()}
    )
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    camera: CameraConfig = Field(default_factory=CameraConfig)
    motion: MotionConfig = Field(default_factory=MotionConfig)
    ttc: TTCConfig = Field(default_factory=TTCConfig)
    fcw: FCWConfig = Field(default_factory=FCWConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    extra_detectors: list[ExtraDetectorConfig] = Field(default_factory=list)

    _taxonomy = field_validator("classes")(classmethod(lambda cls, v: _check_taxonomy(v)))

    @property
    def labels(self) -> list[str]:
        """Every label a detection can have: the taxonomy's, then new ones the extra detectors bring."""
        labels = list(self.classes)
        for extra in self.extra_detectors:
            labels += [label for label in extra.classes if label not in labels]
        return labels


def default_config_path() -> Path:
    """The packaged copy in a wheel install, else the repository's `configs/` (editable install)."""
    package = Path(__file__).resolve().parent.parent  # perception/
    packaged = package / "configs" / "default.yaml"
    return packaged if packaged.is_file() else package.parent / "configs" / "default.yaml"


def _merge(base: dict[str, Any], override: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge override into base; `classes` is replaced whole so a user can drop labels."""
    merged = dict(base)
    for key, value in override.items():
        if key not in base:
            raise PerceptionError(f"unknown config key: {path}{shown_key(key)}")
        if isinstance(value, dict) and isinstance(base[key], dict) and key != "classes":
            merged[key] = _merge(base[key], value, f"{path}{shown_key(key)}.")
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load defaults, apply a user file and then explicit overrides (e.g. from CLI flags), validate."""
    data = read_mapping(default_config_path(), "config")
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = _merge(data, read_mapping(Path(path), "config"))
        except PerceptionError as exc:
            msg = str(exc)
            raise PerceptionError(msg if msg.startswith("config") else f"config {path}: {msg}") from None
    if overrides:
        data = _merge(data, overrides)
    try:
        # Validated as JSON, strictly: no bool for a number, no string for a number (YAML's `1.5` is a
        # number, its `"1.5"` a string), lists for pairs; values YAML has and JSON lacks (dates) as text.
        text = json.dumps(data, default=str)
    except (TypeError, ValueError, RecursionError) as exc:  # e.g. an alias that contains itself
        raise PerceptionError(f"config {source}: cannot be read as plain values: {exc}") from None
    try:
        cfg = Config.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise PerceptionError(f"config {source}: {validation_message(exc)}") from None
    _check_camera(cfg, source)
    return cfg


def _check_camera(cfg: Config, source: str) -> None:
    """The camera profile is a file of its own: found and valid now, not after the model has loaded."""
    from perception.core.camera_profile import load_camera_profile

    try:
        load_camera_profile(cfg.camera.profile)
    except (PerceptionError, OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise PerceptionError(f"config {source}: camera.profile: {first_line(exc)}") from None
