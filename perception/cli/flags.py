"""Command-line flags that set a config key, in one table shared by `run`, `detect` and `bench`.

A flag given on the command line overrides the config file, which overrides configs/default.yaml; a flag
left out changes nothing. Each flag is defined once here (its help, its choices, the key it sets), so the
commands cannot drift apart.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from perception.core.errors import PerceptionError
from perception.core.mqtt_config import parse_mqtt_url
from perception.detect import BACKENDS

BACKEND_CHOICES = ("auto", *BACKENDS)


def _imgsz(values: list[int]) -> list[int]:
    if len(values) > 2:
        raise PerceptionError(f"--imgsz takes a height and an optional width, got {len(values)} numbers")
    return [values[0], values[-1]]


def _classes(values: list[str]) -> list[str | int]:
    """Class names, or indices as Ultralytics users give them (`--classes 0 2`)."""
    return [int(v) if v.isdigit() else v for v in values]


def _mqtt(url: str) -> dict[str, str]:
    """`--mqtt URL` sets output.mqtt.url; a malformed URL is the flag's error, not the config's."""
    try:
        parse_mqtt_url(url)
    except ValueError as exc:
        raise PerceptionError(f"--mqtt: {exc}") from None
    return {"url": url}


def _compare(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


@dataclass(frozen=True)
class Flag:
    key: tuple[str, str]  # config section and key
    options: dict[str, Any]  # argparse add_argument options
    convert: Callable[[Any], Any] = field(default=lambda value: value)


FLAGS: dict[str, Flag] = {
    "--backend": Flag(
        ("detector", "backend"),
        {
            "choices": BACKEND_CHOICES,
            "help": "detector runtime (default: config detector.backend; auto: TensorRT on an NVIDIA GPU, "
            "else ONNX Runtime / OpenVINO by model format)",
        },
    ),
    "--imgsz": Flag(
        ("detector", "input_size"),
        {"type": int, "nargs": "+", "metavar": "N", "help": "model input height [width] (multiples of 32)"},
        _imgsz,
    ),
    "--conf": Flag(
        ("detector", "conf_threshold"),
        {
            "type": float,
            "metavar": "SCORE",
            "help": "detection score threshold (config detector.conf_threshold)",
        },
    ),
    "--classes": Flag(
        ("detector", "classes"),
        {
            "nargs": "+",
            "metavar": "CLASS",
            "help": "keep only these model classes, by name or index (e.g. --classes car person, or 2 0); "
            "each must be in a label of config classes",
        },
        _classes,
    ),
    "--mode": Flag(
        ("source", "mode"),
        {
            "choices": ("fast", "realtime"),
            "help": "file replay: every frame (fast), or paced like live (realtime)",
        },
    ),
    "--topic": Flag(
        ("source", "topic"),
        {
            "metavar": "TOPIC",
            "help": "ROS bag / MCAP sources: the image topic to replay (default: the only one; config "
            "source.topic)",
        },
    ),
    "--telemetry": Flag(
        ("source", "telemetry"),
        {
            "metavar": "FILE",
            "help": "the car's own speed and turn rate: CSV t_s,speed_mps[,yaw_rate_dps], NMEA or GPX "
            "(config source.telemetry)",
        },
    ),
    "--telemetry-offset": Flag(
        ("source", "telemetry_offset_s"),
        {
            "type": float,
            "metavar": "S",
            "help": "the telemetry's time (from its first record) at the video's first frame (default 0)",
        },
    ),
    "--show": Flag(
        ("output", "show"),
        {"action": "store_const", "const": True, "help": "show the annotated frames in a window (q to stop)"},
    ),
    "--serve": Flag(
        ("monitor", "serve"),
        {
            "metavar": "HOST:PORT",
            "help": "serve /metrics (Prometheus), /health (JSON) and a live view page over HTTP, e.g. "
            "127.0.0.1:8080 (config monitor.serve)",
        },
    ),
    "--foxglove": Flag(
        ("output", "foxglove"),
        {
            "nargs": "?",
            "const": "127.0.0.1:8765",
            "metavar": "HOST:PORT",
            "help": "a live Foxglove WebSocket server with the annotated frames, warning and latency "
            "(default 127.0.0.1:8765; config output.foxglove)",
        },
    ),
    "--mqtt": Flag(
        ("output", "mqtt"),
        {
            "metavar": "URL",
            "help": "publish warnings, stream state and tracks to an MQTT broker: mqtt://HOST:PORT[/PREFIX] "
            "(mqtts:// for TLS; credentials from PERCEPTION_MQTT_USERNAME / _PASSWORD; config output.mqtt)",
        },
        _mqtt,
    ),
    "--compare": Flag(
        ("bench", "compare"),
        {"metavar": "MODES", "help": "comma-separated baselines: sequential,detector,ultralytics,backends"},
        _compare,
    ),
    "--repeat": Flag(
        ("bench", "repeat"), {"type": int, "help": "rounds of every mode (config bench.repeat)"}
    ),
    "--warmup": Flag(
        ("bench", "warmup_frames"),
        {"type": int, "help": "warm-up frames per run (config bench.warmup_frames)"},
    ),
}


def add_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        parser.add_argument(name, **FLAGS[name].options)


def flag_overrides(args: argparse.Namespace, **extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The config overrides the given flags make (only flags this command has and the user gave), merged
    with `extra` sections (fixed overrides a command makes itself)."""
    out: dict[str, dict[str, Any]] = {section: dict(values) for section, values in extra.items()}
    for name, flag in FLAGS.items():
        value = getattr(args, name.lstrip("-").replace("-", "_"), None)
        if value is not None:
            section, key = flag.key
            out.setdefault(section, {})[key] = flag.convert(value)
    return out
