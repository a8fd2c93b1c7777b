"""run.mcap (`output.mcap`): a recording Foxglove opens, so a run can be replayed frame by frame with its
boxes, warning and latency beside the camera image, scrubbed and plotted.

Per stream: `/STREAM/image` (foxglove.CompressedImage: the raw frame as JPEG, at most `mcap_image_hz` in scene
time and `mcap_image_max_width` wide), `/STREAM/annotations` (foxglove.ImageAnnotations: a box and a label
with id, distance and TTC per track, in the image's pixels), `/STREAM/fcw` (the warning level),
`/STREAM/latency` (per-stage milliseconds) and `/STREAM/ego` (the ego's speed and turn rate, as events.jsonl
gives them): each message stamped with the frame's `source_ts_s`. Messages are JSON with JSON-schema
schemas, so nothing needs protobuf. Chunks are small and each goes to the OS whole, so a killed run leaves a
file readable up to its last chunk.
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2

from perception.core.config import OutputConfig
from perception.core.errors import PerceptionError
from perception.core.types import FrameResult
from perception.output.sinks import ego_fields
from perception.output.video import describe_os_error

_TIME = {
    "type": "object",
    "title": "time",
    "properties": {"sec": {"type": "integer", "minimum": 0}, "nsec": {"type": "integer", "minimum": 0}},
}
_POINT = {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}}}
_COLOR = {"type": "object", "properties": {c: {"type": "number"} for c in "rgba"}}
SCHEMAS: dict[str, dict[str, Any]] = {
    "foxglove.CompressedImage": {
        "title": "foxglove.CompressedImage",
        "type": "object",
        "properties": {
            "timestamp": _TIME,
            "frame_id": {"type": "string"},
            "data": {"type": "string", "contentEncoding": "base64"},
            "format": {"type": "string"},
        },
    },
    "foxglove.ImageAnnotations": {
        "title": "foxglove.ImageAnnotations",
        "type": "object",
        "properties": {
            "circles": {"type": "array", "items": {"type": "object"}},
            "points": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "timestamp": _TIME,
                        "type": {"type": "integer"},  # 2: LINE_LOOP
                        "points": {"type": "array", "items": _POINT},
                        "outline_color": _COLOR,
                        "outline_colors": {"type": "array", "items": _COLOR},
                        "fill_color": _COLOR,
                        "thickness": {"type": "number"},
                    },
                },
            },
            "texts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "timestamp": _TIME,
                        "position": _POINT,
                        "text": {"type": "string"},
                        "font_size": {"type": "number"},
                        "text_color": _COLOR,
                        "background_color": _COLOR,
                    },
                },
            },
        },
    },
    "perception.Warning": {
        "title": "perception.Warning",
        "type": "object",
        "properties": {
            "level": {"type": "integer", "description": "0 none, 1 caution, 2 warning"},
            "label": {"type": "string"},
            "track_id": {"type": ["integer", "null"]},
            "ttc_s": {"type": ["number", "null"]},
            "dist_m": {"type": ["number", "null"]},
            "tracks": {"type": "integer"},
        },
    },
    "perception.Ego": {
        "title": "perception.Ego",
        "type": "object",
        "description": "the ego car's motion, as the frame lines of events.jsonl give it (null: unknown)",
        "properties": {
            "ego_speed_mps": {"type": ["number", "null"]},
            "ego_speed_std_mps": {"type": ["number", "null"]},
            "ego_yaw_rate_dps": {"type": ["number", "null"], "description": "turning right positive"},
            "ego_yaw_rate_std_dps": {"type": ["number", "null"]},
            "ego_stopped": {"type": ["boolean", "null"]},
            "camera_motion_confidence": {"type": ["number", "null"]},
        },
    },
    "perception.Latency": {
        "title": "perception.Latency",
        "type": "object",
        "description": "milliseconds per pipeline stage (perception/core/events.py Stage)",
        "additionalProperties": {"type": "number"},
    },
}
TOPICS = {"image": "foxglove.CompressedImage", "annotations": "foxglove.ImageAnnotations"}
TOPICS |= {"fcw": "perception.Warning", "latency": "perception.Latency", "ego": "perception.Ego"}
_LEVEL_RGBA = {0: (0.2, 0.8, 0.3, 1.0), 1: (1.0, 0.75, 0.0, 1.0), 2: (1.0, 0.1, 0.1, 1.0)}
_WHITE, _BLACK_BG = {"r": 1, "g": 1, "b": 1, "a": 1}, {"r": 0, "g": 0, "b": 0, "a": 0.6}


class _WholeWrites:
    """The file under the MCAP writer: each write straight to the OS (no buffer a SIGKILL could lose), and
    the position the writer asks for its indexes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PerceptionError(f"cannot write {path}: {describe_os_error(exc)}") from None
        self._pos = 0

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            raise PerceptionError(f"cannot write {self.path}: {describe_os_error(exc)}") from None
        self._pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _stamp(source_ts_s: float) -> tuple[int, dict[str, int]]:
    ns = max(round(source_ts_s * 1e9), 0)
    return ns, {"sec": ns // 1_000_000_000, "nsec": ns % 1_000_000_000}


def _rgba(rgba: tuple[float, float, float, float]) -> dict[str, float]:
    return dict(zip("rgba", rgba, strict=True))


class ChannelWriter(Protocol):
    """Where a stream's Foxglove messages go: run.mcap (`McapRecorder`), the live server (`FoxgloveLive`)."""

    cfg: OutputConfig
    label: str  # names it in errors

    def add(self, channel: Any, log_time_ns: int, record: dict[str, Any]) -> None: ...

    def wants(self, channel: Any) -> bool:
        """Whether anyone takes this channel's messages now (so an unwatched image is never encoded)."""
        ...


class McapRecorder:
    """One run.mcap for a run; `stream(name, labels)` gives each stream its sink. Sinks write from their own
    threads: one lock keeps the writer's records whole."""

    def __init__(self, path: Path, cfg: OutputConfig) -> None:
        try:
            from mcap.writer import CompressionType, Writer
        except ImportError:
            raise PerceptionError(
                'output.mcap needs the mcap package: pip install -e ".[foxglove]"'
            ) from None
        self.path, self.cfg, self.label = path, cfg, str(path)
        self._file = _WholeWrites(path)
        self._writer = Writer(
            self._file, chunk_size=cfg.mcap_chunk_kib * 1024, compression=CompressionType.ZSTD
        )
        self._writer.start(profile="", library="perception")
        self._schemas = {
            name: self._writer.register_schema(name, "jsonschema", json.dumps(schema).encode())
            for name, schema in SCHEMAS.items()
        }
        self._lock = threading.Lock()
        self._closed = False

    def stream(self, name: str, labels: Sequence[str]) -> FoxgloveStreamSink:
        with self._lock:
            channels = {
                kind: self._writer.register_channel(f"/{name}/{kind}", "json", self._schemas[schema])
                for kind, schema in TOPICS.items()
            }
        return FoxgloveStreamSink(self, name, channels, labels)

    def wants(self, channel: Any) -> bool:
        return True

    def add(self, channel: int, log_time_ns: int, record: dict[str, Any]) -> None:
        data = json.dumps(record, allow_nan=False, separators=(",", ":")).encode()
        with self._lock:
            if not self._closed:
                self._writer.add_message(channel, log_time_ns, data, log_time_ns)

    def close(self) -> None:
        """The last chunk, the indexes and the summary: a complete file Foxglove seeks in."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._writer.finish()
            finally:
                self._file.close()


class FoxgloveStreamSink:
    """A stream's Foxglove messages (run.mcap, or the live server). `before_drawing` wraps the stream's
    annotator so the image is taken before boxes are drawn on it (Foxglove draws the annotations itself)."""

    def __init__(
        self, writer: ChannelWriter, name: str, channels: dict[str, Any], labels: Sequence[str]
    ) -> None:
        self.writer, self.name, self.channels, self.labels = writer, name, channels, list(labels)
        cfg = writer.cfg
        self._image_every_s = 1.0 / cfg.mcap_image_hz if cfg.mcap_image_hz > 0 else math.inf
        self._image_at_s = -math.inf

    def before_drawing(self, annotate: Callable[[FrameResult], Any] | None) -> Callable[[FrameResult], Any]:
        def capture_then_draw(result: FrameResult) -> Any:
            self._image(result)
            return annotate(result) if annotate is not None else None

        return capture_then_draw

    def _image(self, result: FrameResult) -> None:
        ts_s = result.frame.source_ts_s
        if self._image_every_s == math.inf or ts_s - self._image_at_s < self._image_every_s * 0.999:
            return
        if not self.writer.wants(self.channels["image"]):
            return
        self._image_at_s = ts_s
        image = result.frame.image
        cfg = self.writer.cfg
        scale = self._scale(image.shape[1])
        if scale < 1.0:
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, cfg.mcap_jpeg_quality])
        if not ok:
            raise PerceptionError(f"{self.writer.label}: cannot encode frame {result.frame.index} as JPEG")
        ns, stamp = _stamp(ts_s)
        record = {
            "timestamp": stamp,
            "frame_id": self.name,
            "data": base64.b64encode(jpeg).decode(),
            "format": "jpeg",
        }
        self.writer.add(self.channels["image"], ns, record)

    def _scale(self, width_px: int) -> float:
        """Image pixels per frame pixel: frames wider than `mcap_image_max_width` are recorded scaled down."""
        return min(1.0, self.writer.cfg.mcap_image_max_width / width_px)

    def write(self, result: FrameResult) -> None:
        ns, stamp = _stamp(result.frame.source_ts_s)
        add, wants, channels = self.writer.add, self.writer.wants, self.channels
        if wants(channels["annotations"]):
            add(channels["annotations"], ns, self._annotations(result, stamp))
        if wants(channels["fcw"]):
            w = result.warning
            warning = {"level": int(w.level), "label": w.level.label, "track_id": w.track_id}
            warning |= {"ttc_s": w.ttc_s, "dist_m": w.dist_m, "tracks": len(result.tracks)}
            add(channels["fcw"], ns, warning)
        if wants(channels["ego"]):
            add(channels["ego"], ns, ego_fields(result.ego))
        if wants(channels["latency"]):
            latency = {str(getattr(k, "value", k)): round(v, 3) for k, v in result.latency_ms.items()}
            add(channels["latency"], ns, latency)

    def _annotations(self, result: FrameResult, stamp: dict[str, int]) -> dict[str, Any]:
        """A box (a closed line, the warning's colour for the threat) and a label per track, in the pixels of
        the recorded image (scaled like it)."""
        t, s = result.tracks, self._scale(result.frame.image.shape[1])
        threat = result.warning.track_id if result.warning.level else None
        points, texts = [], []
        rows = zip(
            (t.boxes_xyxy * s).round(1).tolist(),
            *(c.tolist() for c in (t.ids, t.label_ids, t.dist_m, t.ttc_s, t.ttc_plausible)),
            strict=True,
        )
        for (x1, y1, x2, y2), track_id, label_id, dist, ttc, trusted in rows:
            level = int(result.warning.level) if track_id == threat else 0
            corners = [{"x": x1, "y": y1}, {"x": x2, "y": y1}, {"x": x2, "y": y2}, {"x": x1, "y": y2}]
            colour = _rgba(_LEVEL_RGBA[level])
            points.append(
                {"timestamp": stamp, "type": 2, "points": corners, "outline_color": colour}
                | {"outline_colors": [], "fill_color": {"r": 0, "g": 0, "b": 0, "a": 0}, "thickness": 2}
            )
            text = f"{self.labels[label_id]} #{track_id}"
            if not math.isnan(dist):
                text += f" {dist:.0f}m"
            if not math.isnan(ttc):
                text += f" TTC {ttc:.1f}s" + ("" if trusted else "?")
            texts.append(
                {"timestamp": stamp, "position": {"x": x1, "y": max(y1 - 2, 0)}, "text": text}
                | {"font_size": 12, "text_color": _WHITE, "background_color": _BLACK_BG}
            )
        return {"circles": [], "points": points, "texts": texts}

    def close(self) -> None:
        """Nothing of its own: the writer finishes (the file, the server) once every stream has ended."""
