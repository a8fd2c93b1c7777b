"""Sinks: where per-frame results go. Every sink flushes as it goes and closes cleanly, so a run that
stops early (error, Ctrl-C) still leaves a playable video and a complete event log up to that frame."""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from perception.core.config import OutputConfig
from perception.core.errors import PerceptionError
from perception.core.events import Event, FrameEvent, Stage, TrackRecord, WarningLevel
from perception.core.types import CollisionWarning, EgoMotion, FrameResult
from perception.output.video import Mp4Writer, describe_os_error

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


LABEL_FONT, LABEL_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.45
_LABEL_PAD_PX = 4
_GREYED_CHIP, _GREYED_INK = (70, 70, 70), (165, 165, 165)  # an untrusted TTC: grey on dark grey


def place_labels(
    boxes: np.ndarray, sizes_wh: np.ndarray, image_w: int, order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which boxes get their label, and where (x1, y1, x2, y2 each), so labels never pile up on far objects:
    a label sits above its box's top-left corner (inside the box's top when there is no room above), and
    is left out when its box is shorter than the label or when it would overlap a label already placed,
    going through the boxes in `order` (most important first). Overlaps are found for all pairs at once."""
    n = len(boxes)
    if n == 0:
        return np.zeros(0, bool), np.zeros((0, 4), np.int32)
    w, h = sizes_wh[:, 0], sizes_wh[:, 1]
    x1 = np.clip(boxes[:, 0], 0, np.maximum(image_w - w, 0))
    y1 = boxes[:, 1] - h
    y1 = np.where(y1 < 0, np.maximum(boxes[:, 1], 0), y1)
    rects = np.stack((x1, y1, x1 + w, y1 + h), axis=1).astype(np.int32)
    dx = np.minimum(rects[:, None, 2], rects[None, :, 2]) - np.maximum(rects[:, None, 0], rects[None, :, 0])
    dy = np.minimum(rects[:, None, 3], rects[None, :, 3]) - np.maximum(rects[:, None, 1], rects[None, :, 1])
    overlaps = (dx > 0) & (dy > 0)
    big_enough = boxes[:, 3] - boxes[:, 1] >= h
    keep = np.zeros(n, bool)
    for i in order:  # greedy, like NMS: each step is one row of the overlap matrix
        if big_enough[i] and not (overlaps[i] & keep).any():
            keep[i] = True
    return keep, rects


def draw_labels(
    image: np.ndarray,
    boxes: np.ndarray,
    texts: Sequence[str],
    colours: Sequence[tuple],
    order: np.ndarray,
    greyed: Sequence[str] | None = None,
) -> int:
    """Draw the labels `place_labels` keeps (black text on the box's colour, then any `greyed` part grey on
    dark grey: an estimate not to be trusted); how many were drawn."""
    greyed = greyed or [""] * len(texts)
    main = np.array([cv2.getTextSize(t, LABEL_FONT, LABEL_SCALE, 1)[0] for t in texts], np.int32).reshape(
        -1, 2
    )
    extra_w = np.array([cv2.getTextSize(g, LABEL_FONT, LABEL_SCALE, 1)[0][0] if g else 0 for g in greyed])
    sizes = main + _LABEL_PAD_PX
    sizes[:, 0] += extra_w.astype(np.int32)
    keep, rects = place_labels(boxes, sizes, image.shape[1], order)
    for i in np.flatnonzero(keep):
        x1, y1, x2, y2 = rects[i].tolist()
        split = x1 + int(main[i, 0]) + _LABEL_PAD_PX
        cv2.rectangle(image, (x1, y1), (split, y2), colours[i], -1)
        cv2.putText(image, texts[i], (x1 + 2, y2 - 3), LABEL_FONT, LABEL_SCALE, (0, 0, 0), 1, cv2.LINE_AA)
        if greyed[i]:
            cv2.rectangle(image, (split, y1), (x2, y2), _GREYED_CHIP, -1)
            cv2.putText(
                image, greyed[i], (split, y2 - 3), LABEL_FONT, LABEL_SCALE, _GREYED_INK, 1, cv2.LINE_AA
            )
    return int(keep.sum())


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
        """Boxes (thicker in the ego path, thickest for the lead), and a label each: role, class, ID,
        distance and TTC. A TTC that is not trusted (`ttc_plausible` false) is greyed, never a confident
        number. Labels never pile up: the most important are placed first (the threat, the lead, cut-ins,
        what is in the path, then the nearest), and one that would cover another is left out."""
        image = result.frame.image
        tracks = result.tracks
        boxes = np.round(tracks.boxes_xyxy).astype(np.int32)
        warning = result.warning
        threat_id = warning.track_id if warning.level > WarningLevel.NONE else None
        texts, greyed, colours = [], [], []
        rows = zip(
            boxes.tolist(),
            *(c.tolist() for c in (tracks.ids, tracks.label_ids, tracks.ttc_s, tracks.ttc_plausible)),
            *(c.tolist() for c in (tracks.dist_m, tracks.in_path, tracks.lead, tracks.cut_in)),
            strict=True,
        )
        for (x1, y1, x2, y2), track_id, label_id, ttc_s, trusted, dist, ahead, lead, cut_in in rows:
            colour = LEVEL_COLOURS[warning.level] if track_id == threat_id else self.colours[label_id]
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 4 if lead else 3 if ahead else 2, cv2.LINE_AA)
            role = "LEAD " if lead else "CUT-IN " if cut_in else ""
            text = f"{role}{self.labels[label_id]} #{track_id}"
            if not math.isnan(dist):
                text += f" {dist:.0f}m"
            untrusted = ""
            if not math.isnan(ttc_s):
                if trusted:
                    text += f" TTC {ttc_s:.1f}s"
                else:
                    untrusted = f" TTC {ttc_s:.1f}s?"
            texts.append(text)
            greyed.append(untrusted)
            colours.append(colour)
        rank = (
            (tracks.ids == threat_id) * 8.0
            + tracks.lead * 4.0
            + tracks.cut_in * 2.0
            + tracks.in_path
            + boxes[:, 3] / (image.shape[0] + 1.0)
        )
        draw_labels(image, boxes, texts, colours, np.argsort(-rank, kind="stable"), greyed)
        e2e_ms = result.latency_ms.get(Stage.E2E, 0.0)
        hud = f"frame {result.frame.index}  tracks {len(tracks)}  e2e {e2e_ms:.0f} ms{ego_hud(result.ego)}"
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


class VideoSink:
    """annotated.mp4: H.264 in a fragmented MP4 (perception/output/video.py), each frame at its `source_ts_s`;
    the size is fixed by the first frame."""

    def __init__(self, path: Path, fps: float, cfg: OutputConfig) -> None:
        self.path = path
        self._writer = Mp4Writer(path, fps, cfg.video_crf, cfg.video_preset, cfg.video_keyframe_s)

    @property
    def frames_written(self) -> int:
        return self._writer.frames_written

    def write(self, result: FrameResult) -> None:
        self._writer.write(result.frame.image, result.frame.source_ts_s)

    def close(self) -> None:
        self._writer.close()


class LineFile:
    """A text file written whole lines at a time, straight to the OS (one write per call, no buffer a
    crash could lose), fsynced every few seconds and at close. A write that fails (disk full) is cut back
    to the last whole line and raised as a PerceptionError naming the file and the cause: the file never
    ends in half a line. Later writes are still tried (a full disk may have room again)."""

    FSYNC_INTERVAL_S = 2.0

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise PerceptionError(f"cannot write {path}: {describe_os_error(exc)}") from None
        self._size = 0  # bytes of whole lines written
        self._synced_at = time.monotonic()
        self._lock = threading.Lock()  # several threads may write (frames, source events)

    def write(self, text: str) -> None:
        """Append `text` (whole lines) or nothing at all."""
        data = memoryview(text.encode())
        with self._lock:
            if self._fd is None:
                return
            try:
                while data:
                    data = data[os.write(self._fd, data) :]
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                    os.lseek(self._fd, self._size, os.SEEK_SET)
                raise PerceptionError(f"cannot write {self.path}: {describe_os_error(exc)}") from None
            self._size = os.lseek(self._fd, 0, os.SEEK_CUR)
            if time.monotonic() - self._synced_at > self.FSYNC_INTERVAL_S:
                self._fsync()

    def _fsync(self) -> None:
        self._synced_at = time.monotonic()
        with contextlib.suppress(OSError):  # what fsync reports, the writes already did
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                self._fsync()
                os.close(self._fd)
                self._fd = None


def ego_hud(ego: EgoMotion) -> str:
    """The ego motion for the video's head-up line: `  stopped`, `  ego 81 km/h +1.2 deg/s`, or nothing."""
    if ego.stopped:
        return "  stopped"
    parts = [f"{ego.speed_mps * 3.6:.0f} km/h"] if math.isfinite(ego.speed_mps) else []
    if math.isfinite(ego.yaw_rate_dps):
        parts.append(f"{ego.yaw_rate_dps:+.1f} deg/s")
    return f"  ego {' '.join(parts)}" if parts else ""


def frame_event(result: FrameResult, labels: Sequence[str], class_names: Sequence[str]) -> FrameEvent:
    """The events.jsonl line of one processed frame: its timing and its confirmed tracks."""
    t = result.tracks
    boxes = t.boxes_xyxy.astype(float).round(1).tolist()
    scores = t.scores.astype(float).round(3).tolist()
    rows = zip(
        t.ids.tolist(),
        t.label_ids.tolist(),
        t.class_ids.tolist(),
        boxes,
        scores,
        nullable_floats(t.ttc_s, 3),
        nullable_floats(t.dist_m, 2),
        t.in_path.tolist(),
        nullable_floats(t.lateral_m, 2),
        nullable_floats(t.lateral_speed_mps, 2),
        t.truncated.tolist(),
        t.ttc_plausible.tolist(),
        t.lead.tolist(),
        t.cut_in.tolist(),
        strict=True,
    )
    return FrameEvent(
        frame=result.frame.index,
        capture_ns=result.frame.capture_ns,
        source_ts_s=round(result.frame.source_ts_s, 6),
        latency_ms={str(getattr(k, "value", k)): round(v, 3) for k, v in result.latency_ms.items()},
        detections=len(result.detections),
        fcw=result.warning.level.label,
        tracks=[
            TrackRecord(i, labels[lab], class_names[cls_id], *rest) for i, lab, cls_id, *rest in rows
        ],
        **ego_fields(result.ego),
    )


def ego_fields(ego: EgoMotion) -> dict[str, Any]:
    """The frame line's ego-motion fields (also run.mcap's ego channel), NaN as null."""
    speed, speed_std, yaw, yaw_std = nullable_floats(
        np.array([ego.speed_mps, ego.speed_std_mps, ego.yaw_rate_dps, ego.yaw_rate_std_dps]), 3
    )
    return {
        "ego_speed_mps": speed,
        "ego_speed_std_mps": speed_std,
        "ego_yaw_rate_dps": yaw,
        "ego_yaw_rate_std_dps": yaw_std,
        "ego_stopped": ego.stopped,
        "camera_motion_confidence": ego.camera_motion_confidence,
    }


def nullable_floats(values: Any, digits: int) -> list[float | None]:
    """Rounded floats for JSON, NaN as null."""
    return [None if v != v else v for v in values.astype(float).round(digits).tolist()]


class EventLog:
    """events.jsonl: one record of perception/core/events.py per line, each written whole (`LineFile`)."""

    def __init__(self, path: Path, labels: Sequence[str], class_names: Sequence[str]) -> None:
        self.path = path
        self.labels = list(labels)
        self.class_names = list(class_names)
        self._file = LineFile(path)

    def event(self, record: Event) -> None:
        self._file.write(json.dumps(record.to_dict(), allow_nan=False) + "\n")

    def write(self, result: FrameResult) -> None:
        lines = [json.dumps(r.to_dict(), allow_nan=False) for r in result.events]
        frame = frame_event(result, self.labels, self.class_names)
        lines.append(json.dumps(frame.to_dict(), allow_nan=False))
        self._file.write("\n".join(lines) + "\n")

    def close(self) -> None:
        self._file.close()


def mot_rows_text(rows: np.ndarray) -> str:
    """MOTChallenge lines (`frame,id,x,y,w,h,score,-1,-1,-1`) from rows (frame, id, x1, y1, x2, y2, score);
    the format `perception eval-mot` and the MOTChallenge devkit read."""
    if len(rows) == 0:
        return ""
    wh = rows[:, 4:6] - rows[:, 2:4]
    table = np.column_stack((rows[:, :4], wh, rows[:, 6])).tolist()
    line = "{:.0f},{:.0f},{:.2f},{:.2f},{:.2f},{:.2f},{:.4f},-1,-1,-1\n"
    return "".join(line.format(*row) for row in table)


class TracksFile:
    """tracks.txt: every frame's confirmed tracks as MOTChallenge rows (frames counted from 1)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = LineFile(path)

    def write(self, result: FrameResult) -> None:
        t = result.tracks
        if len(t) == 0:
            return
        rows = np.column_stack(
            (np.full(len(t), result.frame.index + 1), t.ids, t.boxes_xyxy, t.scores)
        ).astype(np.float64)
        self._file.write(mot_rows_text(rows))

    def close(self) -> None:
        self._file.close()


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
