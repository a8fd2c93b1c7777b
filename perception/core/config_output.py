"""The `output` and `monitor` sections of the config (what a run writes, publishes and serves), validated at
load; config.py embeds them. Defaults as in configs/default.yaml (a test keeps them equal)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator

from perception.core.config_base import Fraction, _Strict
from perception.core.mqtt_config import MqttConfig

X264_PRESETS = (
    *("ultrafast", "superfast", "veryfast", "faster", "fast"),
    *("medium", "slow", "slower", "veryslow"),
)


class OutputConfig(_Strict):
    video: bool = True
    video_crf: Annotated[int, Field(ge=0, le=51)] = 23
    video_preset: Literal[X264_PRESETS] = "ultrafast"  # type: ignore[valid-type]
    video_keyframe_s: Annotated[float, Field(gt=0, le=10)] = 1.0
    events: bool = True
    tracks: bool = True
    show: bool = False
    display_conf: Fraction = 0.25
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    mcap: bool = False
    mcap_image_hz: Annotated[float, Field(ge=0, le=1000)] = 5.0
    mcap_image_max_width: Annotated[int, Field(ge=32, le=8192)] = 640
    mcap_jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 75
    mcap_chunk_kib: Annotated[int, Field(ge=16, le=65536)] = 256
    foxglove: Annotated[str, AfterValidator(lambda v: (parse_host_port(v), v)[1])] | None = None


def parse_host_port(text: str) -> tuple[str, int]:
    """'HOST:PORT' (IPv6 in brackets: '[::1]:8080') to (host, port); ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT with a port from 0 to 65535, e.g. 127.0.0.1:8080, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 host goes in brackets, e.g. [::1]:8080, got {text!r}")
    return host, int(port)


class MonitorConfig(_Strict):
    serve: str | None = None
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 75
    max_fps: Annotated[float, Field(gt=0, le=100)] = 10.0
    max_width: Annotated[int, Field(ge=32, le=8192)] = 960
    fps_window_s: Annotated[float, Field(gt=0, le=600)] = 5.0

    @field_validator("serve")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            parse_host_port(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to serve on, or None when monitoring is off."""
        return None if self.serve is None else parse_host_port(self.serve)


