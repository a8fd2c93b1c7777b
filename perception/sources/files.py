"""Frame sources behind one interface: video file, image folder, ROS bag or MCAP, camera index, rtsp/http
stream.

A source only produces frames; pacing decides how: a live source (camera, stream, or a file replayed
in `realtime` mode) produces frames at its own rate whether or not anyone keeps up, and the pipeline
keeps only the newest. A file in `fast` mode produces each frame when asked, so none is lost.
"""

from __future__ import annotations

import configparser
import re
import time
from pathlib import Path
from typing import Protocol

import cv2

from perception.core.config import SourceConfig
from perception.core.errors import PerceptionError
from perception.core.types import Frame
from perception.sources.bags import BagSource, is_bag
from perception.sources.live import HealthCallback, LiveCaptureSource, connect
from perception.sources.pacing import Pacer
from perception.sources.video_probe import read_packets, shortfall, why_unreadable

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
_DIGITS = re.compile(r"(\d+)")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class Source(Protocol):
    """Live sources whose read() can block (streams, cameras) also offer `interrupt()`, which makes a
    blocked read() return None soon; the pipeline calls it, when present, on stop."""

    name: str
    is_live: bool  # frames arrive at the source's pace; the pipeline drops what it cannot keep up with
    fps: float  # nominal rate, used for output video and pacing
    frame_count: int | None  # known for files, None for live feeds

    def read(self) -> Frame | None:
        """The next frame, or None at the end of the stream."""
        ...

    def close(self) -> None: ...


class VideoFileSource:
    """A finite video: a file, or a file served over HTTP."""

    def __init__(self, cap: cv2.VideoCapture, name: str, realtime: bool) -> None:
        self.name = name  # the path or URL
        self._cap = cap
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else 25.0
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.is_live = realtime
        self._pacer = Pacer(realtime)
        self._index = 0
        self._last_s: float | None = None  # the last frame's timestamp
        # Some non-videos open fine and then yield nothing: decode one frame now to fail early.
        ok, self._first = self._cap.read()
        if not ok:
            self._cap.release()
            why = why_unreadable(name, opened=True)
            raise PerceptionError(f"cannot read any frame from video {name}: {why}")

    def read(self) -> Frame | None:
        t0 = time.monotonic_ns()
        if self._first is not None:
            ok, image, self._first = True, self._first, None
        else:
            ok, image = self._cap.read()
        if not ok:
            self._check_complete()
            return None
        decode_ms = (time.monotonic_ns() - t0) / 1e6
        pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        source_ts_s = pos_ms / 1000.0 if pos_ms > 0 or self._index == 0 else self._index / self.fps
        self._pacer.wait(source_ts_s)
        self._last_s = source_ts_s
        frame = Frame(image, self._index, time.monotonic_ns(), source_ts_s, decode_ms)
        self._index += 1
        return frame

    def _check_complete(self) -> None:
        """OpenCV just stops reading at a cut or a broken stretch, as it does at the end: the container's
        packets tell which (perception.sources.video_probe.py), not the count it announces."""
        packets = read_packets(self.name)
        short = shortfall(self._index, self._last_s, self.fps, packets) if packets is not None else ""
        if short:
            raise PerceptionError(
                f"video {self.name} ended after {self._index} {short}: truncated or corrupt"
            )

    def close(self) -> None:
        self._cap.release()


def natural_key(path: Path) -> tuple[list[str | int], str, str]:
    """Sort key for file names in the order people number them: frame2 before frame10, frame before
    frame2 (the name without its extension first). Text and numbers alternate in the split, so text is
    only ever compared with text."""
    parts = _DIGITS.split(path.stem)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], path.suffix.lower(), path.name


def image_files(folder: Path) -> list[Path]:
    """The images in a folder in natural order; entries that are not files (folders, broken links, sockets
    named like images) are skipped."""
    return sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=natural_key
    )


def _folder_fps(folder: Path, fallback: float) -> float:
    """MOTChallenge keeps the frame rate in seqinfo.ini beside img1/."""
    for ini in (folder / "seqinfo.ini", folder.parent / "seqinfo.ini"):
        if ini.is_file():
            parser = configparser.ConfigParser()
            parser.read(ini)
            rate = parser.getfloat("Sequence", "frameRate", fallback=0.0)
            if rate > 0:
                return rate
    return fallback


class ImageFolderSource:
    def __init__(self, folder: Path, fps: float | None, fallback_fps: float, realtime: bool) -> None:
        self.name = str(folder)
        self._files = image_files(folder)
        if not self._files:
            raise PerceptionError(
                f"no images in folder {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        self.fps = fps or _folder_fps(folder, fallback_fps)
        self.frame_count = len(self._files)
        self.is_live = realtime
        self._pacer = Pacer(realtime)
        self._index = 0

    def read(self) -> Frame | None:
        if self._index >= len(self._files):
            return None
        path = self._files[self._index]
        t0 = time.monotonic_ns()
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise PerceptionError(f"cannot read image {path}")
        decode_ms = (time.monotonic_ns() - t0) / 1e6
        source_ts_s = self._index / self.fps
        self._pacer.wait(source_ts_s)
        self._last_s = source_ts_s
        frame = Frame(image, self._index, time.monotonic_ns(), source_ts_s, decode_ms)
        self._index += 1
        return frame

    def close(self) -> None:
        self._files = []


def open_source(
    spec: str, cfg: SourceConfig, fps: float | None = None, on_health: HealthCallback | None = None
) -> Source:
    """Pick the source from the string: a digit is a camera, a URL a stream, a folder a sequence.
    `on_health` hears a live source's state changes (connected, stalled, reconnecting, ...)."""
    realtime = cfg.mode == "realtime"
    if spec.isdigit():
        cap, attempts = connect(int(spec), cfg)
        return LiveCaptureSource(int(spec), cap, cfg, on_health, attempts)
    if spec.lower().startswith(STREAM_SCHEMES):
        cap, attempts = connect(spec, cfg)
        if spec.lower().startswith(("http://", "https://")) and cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0:
            return VideoFileSource(cap, spec, realtime)  # a finite file served over HTTP: a replay
        return LiveCaptureSource(spec, cap, cfg, on_health, attempts)
    path = Path(spec)
    if is_bag(path):
        return BagSource(path, cfg.topic, realtime)
    if path.is_dir():
        return ImageFolderSource(path, fps, cfg.image_folder_fps, realtime)
    if path.is_file():
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise PerceptionError(f"cannot open video {path}: {why_unreadable(str(path))}")
        return VideoFileSource(cap, str(path), realtime)
    raise PerceptionError(f"source not found: {spec}")
