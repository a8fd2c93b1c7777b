"""Sinks: where per-frame results go. Every sink flushes as it goes and closes cleanly, so a run that
stops early (error, Ctrl-C) still leaves a playable video and a complete event log up to that frame."""

from __future__ import annotations

import contextlib
import json
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Protocol

import cv2
import numpy as np

from perception.errors import PerceptionError
from perception.events import Event, FrameEvent, Stage, WarningLevel
from perception.types import CollisionWarning, FrameResult

# BGR colours by driving label; labels not listed get a colour from their index.
LABEL_COLOURS = {
    "pedestrian": (60, 60, 255),
    "cyclist": (0, 165, 255),
    "vehicle": (80, 200, 60),
    "traffic_light": (0, 230, 255),
    "traffic_sign": (255, 80, 200),
    "obstacle": (255, 200, 0),
}
LEVEL_COLOURS = {
    WarningLevel.NONE: (200, 200, 200),
    WarningLevel.CAUTION: (0, 200, 255),
    WarningLevel.WARNING: (0, 0, 255),
}
_FALLBACK_COLOURS = [(200, 200, 200), (255, 255, 0), (128, 0, 255), (0, 128, 255)]


class Sink(Protocol):
    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


class StopRequested(Exception):
    """Raised by an interactive sink when the user asks to stop (e.g. presses q)."""


class Annotator:
    """Draws tracks onto the frame image in place: the frame is not used after the sinks."""

    def __init__(self, labels: Sequence[str], class_names: Sequence[str]) -> None:
        self.labels = list(labels)
        self.class_names = list(class_names)
        self.colours = [
            LABEL_COLOURS.get(label, _FALLBACK_COLOURS[i % len(_FALLBACK_COLOURS)])
            for i, label in enumerate(self.labels)
        ]

    def __call__(self, result: FrameResult) -> np.ndarray:
        """Boxes (thicker in the ego path, thickest for the lead), label, ID, distance and TTC; a TTC that is
        not trusted (`ttc_plausible` false) is drawn greyed, never as a confident number."""
        image = result.frame.image
        tracks = result.tracks
        boxes = np.round(tracks.boxes_xyxy).astype(np.int32)
        warning = result.warning
        threat_id = warning.track_id if warning.level > WarningLevel.NONE else None
        # The lead, cut-ins and in-path objects last, so their labels stay readable on top of the others'.
        order = np.argsort(3 * tracks.lead + 2 * tracks.cut_in + tracks.in_path, kind="stable")
        rows = zip(
            boxes[order].tolist(),
            *(column[order].tolist() for column in (tracks.ids, tracks.label_ids, tracks.ttc_s)),
            *(column[order].tolist() for column in (tracks.ttc_plausible, tracks.dist_m, tracks.in_path)),
            tracks.lead[order].tolist(),
            tracks.cut_in[order].tolist(),
            strict=True,
        )
        for (x1, y1, x2, y2), track_id, label_id, ttc_s, trusted, dist, ahead, lead, cut_in in rows:
            colour = LEVEL_COLOURS[warning.level] if track_id == threat_id else self.colours[label_id]
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 4 if lead else 3 if ahead else 2, cv2.LINE_AA)
            role = "LEAD " if lead else "CUT-IN " if cut_in else ""
            text = f"{role}{self.labels[label_id]} #{track_id}"
            if not math.isnan(dist):
                text += f" {dist:.0f}m"
            ty = max(y1, 16)
            x = _chip(image, text, x1, ty, colour, (0, 0, 0))
            if not math.isnan(ttc_s):
                chip, ink = (colour, (0, 0, 0)) if trusted else (_GREYED_CHIP, _GREYED_INK)
                _chip(image, f"TTC {ttc_s:.1f}s" if trusted else f"TTC {ttc_s:.1f}s?", x, ty, chip, ink)
        e2e_ms = result.latency_ms.get(Stage.E2E, 0.0)
        hud = f"frame {result.frame.index}  tracks {len(tracks)}  e2e {e2e_ms:.0f} ms"
        (tw, th), _ = cv2.getTextSize(hud, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(image, (0, 0), (tw + 12, th + 12), (0, 0, 0), -1)
        cv2.putText(image, hud, (6, th + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        if warning.level > WarningLevel.NONE:
            self._banner(image, warning)
        return image

    @staticmethod
    def _banner(image: np.ndarray, warning: CollisionWarning) -> None:
        text = f"{warning.level.name}  TTC {warning.ttc_s:.1f} s" if warning.ttc_s else warning.level.name
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 1.0, 2)
        x = (image.shape[1] - tw) // 2
        cv2.rectangle(image, (x - 12, 8), (x + tw + 12, th + 28), LEVEL_COLOURS[warning.level], -1)
        cv2.putText(image, text, (x, th + 18), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2, cv2.LINE_AA)


_GREYED_CHIP, _GREYED_INK = (70, 70, 70), (165, 165, 165)  # an untrusted TTC: grey on dark grey


def _chip(image: np.ndarray, text: str, x: int, bottom: int, fill: tuple, ink: tuple) -> int:
    """A filled label ending at row `bottom`, starting at column x; returns the column after it."""
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
    cv2.rectangle(image, (x, bottom - th - 4), (x + tw + 4, bottom), fill, -1)
    cv2.putText(image, text, (x + 2, bottom - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, ink, 1, cv2.LINE_AA)
    return x + tw + 4


class VideoSink:
    """annotated.mp4 at the source's frame rate; the size is fixed by the first frame."""

    def __init__(self, path: Path, fps: float, fourcc: str) -> None:
        self.path = path
        self.fps = fps
        self.fourcc = fourcc
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def write(self, result: FrameResult) -> None:
        image = result.frame.image
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, size
            )
            if not self._writer.isOpened():
                self._writer = None
                raise PerceptionError(f"cannot write video {self.path} with codec {self.fourcc!r}")
            self._size = size
        if size != self._size:  # a stream that changed resolution mid-run: keep one playable file
            image = cv2.resize(image, self._size)
        self._writer.write(image)
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


class EventLog:
    """events.jsonl: one record of perception/events.py per line. Flushed per line."""

    def __init__(self, path: Path, labels: Sequence[str], class_names: Sequence[str]) -> None:
        self.path = path
        self.labels = list(labels)
        self.class_names = list(class_names)
        self._file: IO[str] | None = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()  # the sink stage writes frames, the grab stage source events

    def event(self, record: Event) -> None:
        line = json.dumps(record.to_dict(), allow_nan=False) + "\n"
        with self._lock:
            if self._file is None:
                return
            self._file.write(line)
            self._file.flush()

    def write(self, result: FrameResult) -> None:
        for record in result.events:
            self.event(record)
        self.event(FrameEvent.from_result(result, self.labels, self.class_names))

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class DisplaySink:
    """An OpenCV window per stream; q or Esc stops the run. HighGUI is not thread-safe, and each stream's
    sink runs on its own thread: every window call holds one lock."""

    _GUI = threading.Lock()

    def __init__(self, name: str = "") -> None:
        self.window = f"perception {name}".strip()

    def write(self, result: FrameResult) -> None:
        with self._GUI:
            cv2.imshow(self.window, result.frame.image)
            key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            raise StopRequested

    def close(self) -> None:
        with self._GUI, contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.window)
