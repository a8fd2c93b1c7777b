"""Configuration: `configs/default.yaml` holds every default; a user YAML overrides any subset of it.

The models below deliberately have no defaults of their own, so the YAML file stays the one place where
defaults live. Validation happens once, at load, and names the offending key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from perception.errors import PerceptionError

PosFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Strict):
    mode: Literal["fast", "realtime"]
    image_folder_fps: PosFloat
    camera_buffer_size: Annotated[int, Field(ge=1, le=16)]
    open_timeout_s: PosFloat
    # live sources (streams, cameras): transport, stall detection, reconnecting, frame age
    rtsp_transport: Literal["tcp", "udp"]
    stream_probe_s: Annotated[float, Field(gt=0, le=10)]
    stream_decode_threads: Annotated[int, Field(ge=0, le=64)]
    read_timeout_s: PosFloat
    connect_attempts: Annotated[int, Field(ge=1, le=1000)]
    reconnect_attempts: Annotated[int, Field(ge=1)] | Literal["forever"]
    backoff_initial_s: PosFloat
    backoff_max_s: PosFloat
    backoff_jitter: Annotated[float, Field(ge=0, lt=1)]
    max_frame_age_s: PosFloat

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
    replay_queue_size: Annotated[int, Field(ge=1, le=64)]


class DetectorConfig(_Strict):
    backend: Literal["auto", "onnxruntime", "openvino", "tensorrt", "ultralytics", "triton"]
    default_model: Annotated[str, Field(min_length=1)]
    layout: Literal["auto", "yolox", "ultralytics"]
    precision: Literal["auto", "fp32", "bf16", "fp16"]
    input_size: tuple[Annotated[int, Field(ge=32, le=4096)], Annotated[int, Field(ge=32, le=4096)]]
    conf_threshold: Fraction
    nms_iou_threshold: Fraction
    max_detections: Annotated[int, Field(ge=1, le=10000)]
    requests: Annotated[int, Field(ge=0, le=64)]
    intra_op_threads: Annotated[int, Field(ge=0, le=256)]
    intra_op_spinning: bool
    openvino_device: Annotated[str, Field(min_length=1)]
    openvino_hint: Literal["LATENCY", "THROUGHPUT"]
    openvino_threads: Annotated[int, Field(ge=0, le=256)]
    triton_url: str
    triton_model: str
    triton_timeout_s: PosFloat

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

    @field_validator("input_size")
    @classmethod
    def _multiple_of_32(cls, size: tuple[int, int]) -> tuple[int, int]:
        if size[0] % 32 or size[1] % 32:
            raise ValueError(f"height and width must be multiples of 32, got {list(size)}")
        return size


class TensorRTConfig(_Strict):
    engine_dir: Annotated[str, Field(min_length=1)]
    precision: Literal["fp32", "fp16", "int8"]
    batch: Annotated[int, Field(ge=1, le=64)]
    workspace_mib: Annotated[int, Field(ge=0)]
    device: Annotated[int, Field(ge=0)]
    warmup_runs: Annotated[int, Field(ge=0, le=100)]
    calib_min_images: Annotated[int, Field(ge=1)]
    calib_max_images: Annotated[int, Field(ge=1)]

    @model_validator(mode="after")
    def _calibration_range(self) -> TensorRTConfig:
        if self.calib_max_images < self.calib_min_images:
            raise ValueError(
                f"calib_max_images ({self.calib_max_images}) must be at least calib_min_images "
                f"({self.calib_min_images})"
            )
        return self


class TrackerConfig(_Strict):
    high_score_threshold: Fraction
    new_track_score_threshold: Fraction
    match_iou_threshold: Fraction
    weak_match_iou_threshold: Fraction
    confirm_s: Annotated[float, Field(ge=0)]
    max_lost_s: PosFloat
    position_noise: PosFloat
    velocity_noise: PosFloat
    measurement_noise: PosFloat


class TTCConfig(_Strict):
    window_s: PosFloat
    min_samples: Annotated[int, Field(ge=3, le=1000)]
    min_span_s: PosFloat
    max_ttc_s: PosFloat
    object_height_m: dict[str, PosFloat]
    size_prior_rel_std: PosFloat
    pitch_std_deg: PosFloat
    edge_px_std: PosFloat


class CameraConfig(_Strict):
    profile: Annotated[str, Field(min_length=1)]  # name in configs/cameras/ or a path


class FCWConfig(_Strict):
    labels: list[str]
    lane_width_m: Annotated[float, Field(gt=0, le=20)]
    caution_ttc_s: PosFloat
    warning_ttc_s: PosFloat
    min_persistence_s: Annotated[float, Field(ge=0)]
    min_clear_s: Annotated[float, Field(ge=0)]
    hysteresis: Annotated[float, Field(ge=0, le=2)]
    cooldown_s: Annotated[float, Field(ge=0)]
    max_dist_m: PosFloat
    max_closing_mps: PosFloat
    max_ttc_rel_std: PosFloat

    @model_validator(mode="after")
    def _warning_before_caution(self) -> FCWConfig:
        if self.warning_ttc_s > self.caution_ttc_s:
            raise ValueError("warning_ttc_s must not exceed caution_ttc_s")
        return self


class OutputConfig(_Strict):
    video: bool
    video_fourcc: Annotated[str, Field(min_length=4, max_length=4)]
    events: bool
    show: bool


class BenchConfig(_Strict):
    warmup_frames: Annotated[int, Field(ge=0, le=1000)]
    repeat: Annotated[int, Field(ge=1, le=100)]
    compare: list[Literal["sequential", "detector", "ultralytics"]]


class Config(_Strict):
    source: SourceConfig
    pipeline: PipelineConfig
    detector: DetectorConfig
    tensorrt: TensorRTConfig
    classes: dict[str, list[str]]
    tracker: TrackerConfig
    camera: CameraConfig
    ttc: TTCConfig
    fcw: FCWConfig
    output: OutputConfig
    bench: BenchConfig

    @field_validator("classes")
    @classmethod
    def _non_empty_taxonomy(cls, classes: dict[str, list[str]]) -> dict[str, list[str]]:
        if not classes:
            raise ValueError("at least one label is needed")
        seen: dict[str, str] = {}
        for label, names in classes.items():
            for name in names:
                if name in seen:
                    raise ValueError(f"class {name!r} is listed under both {seen[name]!r} and {label!r}")
                seen[name] = label
        return classes

    @property
    def labels(self) -> list[str]:
        return list(self.classes)


def default_config_path() -> Path:
    """The packaged copy in a wheel install, else the repository's `configs/` (editable install)."""
    packaged = Path(__file__).parent / "configs" / "default.yaml"
    return packaged if packaged.is_file() else Path(__file__).parent.parent / "configs" / "default.yaml"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PerceptionError(f"config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PerceptionError(f"config {path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PerceptionError(f"config {path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], override: dict[str, Any], path: str = "") -> dict[str, Any]:
    """Deep-merge override into base; `classes` is replaced whole so a user can drop labels."""
    merged = dict(base)
    for key, value in override.items():
        if key not in base:
            raise PerceptionError(f"unknown config key: {path}{key}")
        if isinstance(value, dict) and isinstance(base[key], dict) and key != "classes":
            merged[key] = _merge(base[key], value, f"{path}{key}.")
        else:
            merged[key] = value
    return merged


def _format_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    value = err.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    msg = err["msg"].removeprefix("Value error, ")
    return f"{key + ': ' if key else ''}{msg}{shown}{more}"


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load defaults, apply a user file and then explicit overrides (e.g. from CLI flags), validate."""
    data = _read_yaml(default_config_path())
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            data = _merge(data, _read_yaml(Path(path)))
        except PerceptionError as exc:
            msg = str(exc)
            raise PerceptionError(msg if msg.startswith("config") else f"config {path}: {msg}") from None
    if overrides:
        data = _merge(data, overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise PerceptionError(f"config {source}: {_format_error(exc)}") from None
