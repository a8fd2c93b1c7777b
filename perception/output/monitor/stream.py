"""One stream as the monitor sees it: its health (what /health reports) and its live view (the JPEG that
MJPEG clients get). Written by the stream's sink thread and its source's thread, read by HTTP threads."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

from perception.core.events import EndEvent, SourceEvent
from perception.core.types import CollisionWarning, FrameResult
from perception.output.monitor.metrics import ENDED, RUNNING, STARTING, UP_STATES, Counts

_FPS_SAMPLES = 1024  # sink times kept for the fps figure: 40 s at 25 fps, 1 s at 1000 fps


class StreamHealth:
    """State, frame count, recent fps, last frame age and current warning of one stream."""

    def __init__(self, name: str, source: str, fps_window_s: float) -> None:
        self.name = name
        self.source = source
        self.counts: Callable[[], Counts] | None = None
        self._window_ns = int(fps_window_s * 1e9)
        self._lock = threading.Lock()
        self._state = STARTING
        self._frames = 0
        self._tracks = 0
        self._warning = CollisionWarning()
        self._sink_ns: deque[int] = deque(maxlen=_FPS_SAMPLES)
        self._last_event: SourceEvent | None = None
        self._end: EndEvent | None = None

    @property
    def state(self) -> str:
        return self._state

    def frame(self, result: FrameResult, now_ns: int) -> str | None:
        """Record a frame; returns the new state if this frame changed it."""
        with self._lock:
            self._frames += 1
            self._tracks = len(result.tracks)
            self._warning = result.warning
            self._sink_ns.append(now_ns)
            if self._state == STARTING:
                self._state = RUNNING
                return RUNNING
        return None

    def source_event(self, event: SourceEvent) -> str:
        with self._lock:
            self._last_event = event
            if self._state != ENDED:
                self._state = event.state.value
            return self._state

    def ended(self, end: EndEvent) -> None:
        with self._lock:
            self._end = end
            self._state = ENDED

    def report(self, now_ns: int) -> dict[str, Any]:
        """This stream's part of /health."""
        with self._lock:
            times = list(self._sink_ns)
            state, frames, tracks, warning = self._state, self._frames, self._tracks, self._warning
            event, end = self._last_event, self._end
        recent = [t for t in times if now_ns - t <= self._window_ns]
        fps = (len(recent) - 1) / ((recent[-1] - recent[0]) / 1e9) if len(recent) > 2 else 0.0
        out: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "state": state,
            "up": state in UP_STATES,
            "frames": frames,
            "fps": round(fps, 2),
            "last_frame_age_s": round((now_ns - times[-1]) / 1e9, 3) if times else None,
            "tracks": tracks,
            "warning": {
                "level": warning.level.label,
                "track_id": warning.track_id,
                "ttc_s": _finite(warning.ttc_s),
                "dist_m": _finite(warning.dist_m),
            },
        }
        if self.counts is not None:
            counts = self.counts()
            out.update(
                grabbed=counts.frames_grabbed,
                dropped=counts.frames_dropped,
                stale=counts.frames_stale,
                detector_unavailable=counts.frames_detector_unavailable,
            )
        out["last_source_event"] = None if event is None else event.to_dict()
        out["end"] = None if end is None else end.to_dict()
        return out


class LiveView:
    """The latest annotated frame of one stream as JPEG, for any number of MJPEG clients.

    The sink thread only keeps a reference to a frame, and only while a client watches and at most
    `max_fps` times a second (the frames in between are skipped): one attribute assignment, no lock, so a
    client's thread can never hold the sink up. Clients look for a newer frame a few times per period;
    scaling and encoding happen in a client's thread, once per frame kept, by whichever client asks first
    (OpenCV releases the GIL). Each client gets the newest JPEG when it is ready for one, so a slow client
    misses frames and holds nobody up.

    No copy: a frame's image is annotated before the sinks and never written after them (each frame is
    read into a new array), so reading it here while the pipeline moves on is safe.
    """

    def __init__(self, max_fps: float, max_width: int, jpeg_quality: int) -> None:
        self.period_ns = int(1e9 / max_fps)
        self.max_width = max_width
        self._params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        self._poll_s = min(0.02, self.period_ns / 4e9)
        self._due_ns = 0
        self._latest: tuple[int, np.ndarray | None] = (0, None)  # (number, image), replaced whole
        self._ended = False
        self._encode_lock = threading.Lock()
        self._jpeg = b""
        self._jpeg_seq = 0
        self._viewers_lock = threading.Lock()
        self.viewers = 0

    def offer(self, image: np.ndarray, now_ns: int) -> bool:
        """From the sink thread: keep this frame if a client watches and one is due."""
        if self.viewers == 0 or now_ns < self._due_ns:
            return False
        # On schedule while frames keep coming, a new schedule after a gap; never two within half a period.
        start_ns = self._due_ns if now_ns - self._due_ns < self.period_ns else now_ns
        self._due_ns = max(start_ns + self.period_ns, now_ns + self.period_ns // 2)
        self._latest = (self._latest[0] + 1, image)  # the sink thread is the only writer
        return True

    def next_jpeg(self, after: int, timeout_s: float) -> tuple[int, bytes] | None:
        """The newest frame after `after` as (its number, JPEG bytes); None when none came within
        `timeout_s` or the stream has ended and every frame was handed out."""
        deadline = time.monotonic() + timeout_s
        while (latest := self._latest)[0] <= after:
            if self._ended or time.monotonic() >= deadline:
                return None
            time.sleep(self._poll_s)
        seq, image = latest
        with self._encode_lock:
            if self._jpeg_seq < seq:
                ok, buffer = cv2.imencode(".jpg", self._fit(image), self._params)
                if ok:
                    self._jpeg, self._jpeg_seq = buffer.tobytes(), seq
            return self._jpeg_seq, self._jpeg

    def _fit(self, image: np.ndarray) -> np.ndarray:
        """Scaled down to `max_width`: bilinear down to half size, area averaging below (no aliasing)."""
        height, width = image.shape[:2]
        if width <= self.max_width:
            return image
        size = (self.max_width, max(1, round(height * self.max_width / width)))
        interpolation = cv2.INTER_LINEAR if 2 * self.max_width >= width else cv2.INTER_AREA
        return cv2.resize(image, size, interpolation=interpolation)

    @property
    def ended(self) -> bool:
        return self._ended

    def end(self) -> None:
        """No more frames will come: clients get the last one and their response ends."""
        self._ended = True

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        with self._viewers_lock:
            self.viewers += 1
            self._due_ns = 0  # the next frame, whatever the schedule was
        try:
            yield
        finally:
            with self._viewers_lock:
                self.viewers -= 1


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 3)
