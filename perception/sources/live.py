"""Live sources that stay live: cameras and rtsp/http streams that stall, drop and come back.

A network camera fails in a few typical ways: the stream stalls (no packets, no error), the server
closes the connection, the camera reboots and answers again seconds later, possibly at another
resolution. OpenCV's FFmpeg backend on its own waits 30 s on a dead stream and then just reports the
end. Here every read has a short timeout (`read_timeout_s`), a failed read closes the capture and
reopens it with exponential backoff and jitter, and each change of state is reported through an
optional callback (`on_health(event)`, a `SourceEvent`), which the command line writes to events.jsonl.

Reading is done by the pipeline's grab thread, which calls `read()` back to back and hands frames on
through a one-slot queue where the newest wins: the stream is drained as fast as it arrives, so no
backlog builds up in the network or the decoder. `StreamClock` checks that from the stream's own
timestamps and stamps each frame with the delay it did pick up (`Frame.backlog_ms`).
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import os
import random
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2

from perception.core.config import SourceConfig
from perception.core.errors import PerceptionError, first_line
from perception.core.events import SourceEvent, SourceState
from perception.core.types import Frame

HealthCallback = Callable[[SourceEvent], None]  # a state change, called from the grab thread

_FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # "key;value|key;value", read by OpenCV at open


def backoff_delay_s(attempt: int, cfg: SourceConfig, rng: random.Random) -> float:
    """Wait before retry number `attempt` (1-based): initial * 2^(attempt-1), capped, then jittered
    by up to +-backoff_jitter so that many clients of one server do not retry in step."""
    base = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2.0 ** min(attempt - 1, 60))
    return base * (1.0 + cfg.backoff_jitter * rng.uniform(-1.0, 1.0))


class StreamClock:
    """How far behind the stream's own clock frames arrive, from their presentation timestamps.

    `arrival - pts` is constant while the reader keeps up; it grows when frames queue up in socket or
    decoder buffers. The least value seen since the last reset is the reference, so the result is the
    delay picked up since then (0 for the least-delayed frame). A timestamp that does not move forward
    (a new session, a stream that restarted, a device without timestamps) resets the reference.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._last_pts_ms: float | None = None
        self._min_offset_ms = float("inf")

    def backlog_ms(self, arrival_ns: int, pts_ms: float) -> float | None:
        """Delay of this frame in ms; None when the source gives no usable timestamps."""
        last, self._last_pts_ms = self._last_pts_ms, pts_ms
        offset_ms = arrival_ns / 1e6 - pts_ms
        if last is not None and pts_ms <= last:  # no clock, or a restart: this frame is the new reference
            self._min_offset_ms = offset_ms
            return None if pts_ms <= 0 else 0.0
        self._min_offset_ms = min(self._min_offset_ms, offset_ms)
        return offset_ms - self._min_offset_ms


@contextlib.contextmanager
def _ffmpeg_options(options: dict[str, str]) -> Iterator[None]:
    """OpenCV takes FFmpeg options only from the environment, at open; a user's own keys win."""
    previous = os.environ.get(_FFMPEG_OPTIONS_ENV)
    merged = dict(options)
    for item in (previous or "").split("|"):
        key, sep, value = item.partition(";")
        if sep:
            merged[key] = value
    os.environ[_FFMPEG_OPTIONS_ENV] = "|".join(f"{k};{v}" for k, v in merged.items())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_FFMPEG_OPTIONS_ENV, None)
        else:
            os.environ[_FFMPEG_OPTIONS_ENV] = previous


def open_capture(spec: str | int, cfg: SourceConfig) -> cv2.VideoCapture | None:
    """One attempt to open a camera (index) or a URL, with the open and read timeouts applied."""
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(cfg.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(cfg.read_timeout_s * 1000),
    ]
    if isinstance(spec, int):
        cap = cv2.VideoCapture(spec, cv2.CAP_ANY, params)
        if cap.isOpened():
            cap.set(cv2.CAP_PROP_BUFFERSIZE, cfg.camera_buffer_size)  # the driver keeps only the newest
    else:
        params += [cv2.CAP_PROP_N_THREADS, cfg.stream_decode_threads]
        ffmpeg = {"rtsp_transport": cfg.rtsp_transport, "analyzeduration": str(int(cfg.stream_probe_s * 1e6))}
        with _ffmpeg_options(ffmpeg):
            cap = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, params)
    if cap.isOpened():
        return cap
    cap.release()
    return None


def connect(spec: str | int, cfg: SourceConfig) -> tuple[cv2.VideoCapture, int]:
    """Open at start, trying `connect_attempts` times with backoff; returns the capture and the
    attempts it took. Failing that, a one-line error: a wrong URL should not keep a user waiting.
    An http(s) URL is asked first (`http_probe`): a 4xx answer fails at once, naming the status (asking
    again will not change it), a 5xx is tried again like no answer."""
    rng = random.Random()
    is_http = isinstance(spec, str) and spec.lower().startswith(("http://", "https://"))
    reason = "no answer"
    for attempt in range(1, cfg.connect_attempts + 1):
        if attempt > 1:
            time.sleep(backoff_delay_s(attempt - 1, cfg, rng))
        if is_http:
            probe = http_probe(spec, cfg.open_timeout_s)
            if probe.refused:
                raise PerceptionError(f"cannot open stream {_redact(spec)}: {probe.reason} (not retried)")
            if probe.reason:
                reason = probe.reason
            if probe.status is None or probe.status >= 500:
                continue  # OpenCV would find no stream there either
        cap = open_capture(spec, cfg)
        if cap is not None:
            return cap, attempt
        if is_http and probe.status is not None and probe.status < 300:
            reason = f"{probe.reason}, but OpenCV found no video in it"
    if isinstance(spec, int):
        raise PerceptionError(f"cannot open camera {spec}: no such device, or it is busy")
    tries = cfg.connect_attempts
    raise PerceptionError(
        f"cannot open stream {_redact(spec)}: {reason} after {tries} attempt{'s' * (tries > 1)} "
        f"(open timeout {cfg.open_timeout_s:g} s each)"
    )


@dataclass(frozen=True)
class HttpProbe:
    status: int | None  # None: no HTTP answer (refused, timed out, TLS failed)
    reason: str  # "HTTP 404 Not Found", "connection refused", ... ("" when nothing useful is known)
    refused: bool = False  # a 4xx: the request itself is wrong, so it is not tried again


def http_probe(url: str, timeout_s: float) -> HttpProbe:
    """Ask an http(s) URL for its headers (a GET: servers of live streams often refuse HEAD), close at
    once, and say what it answered. Credentials in the URL are sent as Basic auth; a 401 or 407 then is
    left to OpenCV (FFmpeg also does Digest). TLS is not verified here, as FFmpeg does not by default."""
    parts = urllib.parse.urlsplit(url)
    headers = {"User-Agent": "perception", "Icy-MetaData": "0"}
    if parts.username is not None:
        token = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(token.encode()).decode()
        host = parts.hostname or ""
        netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            kind = response.headers.get_content_type()
            return HttpProbe(response.status, f"HTTP {response.status} {response.reason} ({kind})")
    except urllib.error.HTTPError as exc:
        reason = f"HTTP {exc.code} {exc.reason}"
        auth = exc.code in (401, 407) and parts.username is not None
        return HttpProbe(exc.code, reason, refused=400 <= exc.code < 500 and not auth)
    except urllib.error.URLError as exc:
        cause = exc.reason  # an OSError ("Connection refused") or a text
        strerror = getattr(cause, "strerror", None)
        return HttpProbe(None, strerror[:1].lower() + strerror[1:] if strerror else str(cause))
    except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, bad status lines, ...
        return HttpProbe(None, first_line(exc, with_type=not str(exc)))


def _redact(url: str) -> str:
    """A URL fit for an error line: any password replaced."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class LiveCaptureSource:
    """A camera index or a network stream: frames come at the device's pace, stamped on arrival.

    `read()` returns None only when the source is interrupted or gives up reconnecting (after
    `reconnect_attempts`), which ends the run normally. Frame indices and timestamps keep counting
    across outages, so the tracker sees the gap as time and lets old tracks expire.
    """

    def __init__(
        self,
        spec: str | int,
        cap: cv2.VideoCapture,
        cfg: SourceConfig,
        on_health: HealthCallback | None = None,
        connect_attempts: int = 1,
    ) -> None:
        self.name = str(spec)
        self.cfg = cfg
        self.on_health = on_health
        self.is_live = True
        self.frame_count = None
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else 30.0
        self._spec = spec
        self._cap: cv2.VideoCapture | None = cap
        self._connect_attempts = connect_attempts  # reported with the first frame
        self._rng = random.Random()
        self._interrupted = threading.Event()
        self._gave_up = False
        self._clock = StreamClock()
        self._index = 0
        self._size: tuple[int, int] | None = None  # width, height of the frames read so far
        self._last_frame_ns: int | None = None
        self._outage_start_ns: int | None = None  # set while reconnecting
        self._attempts = 0  # open attempts in the current outage

    # -- reconnecting -------------------------------------------------------------------------------------
    def _reconnect(self) -> bool:
        """Reopen with backoff until a capture opens, the attempts run out, or the run stops."""
        limit = self.cfg.reconnect_attempts
        while not (self._interrupted.is_set() or self._gave_up):
            if limit != "forever" and self._attempts >= limit:
                self._gave_up = True
                self._health(SourceState.GAVE_UP, attempts=self._attempts, outage_s=self._outage_s())
                return False
            self._attempts += 1
            delay_s = backoff_delay_s(self._attempts, self.cfg, self._rng)
            self._health(
                SourceState.RECONNECTING,
                attempt=self._attempts,
                max_attempts=limit,
                delay_s=round(delay_s, 3),
            )
            if self._interrupted.wait(delay_s):
                return False
            cap = open_capture(self._spec, self.cfg)
            if cap is not None:
                self._cap = cap
                self._clock.reset()
                return True
        return False

    # -- reading ------------------------------------------------------------------------------------------
    def read(self) -> Frame | None:
        while not self._interrupted.is_set():
            if self._cap is None and not self._reconnect():
                return None
            t0 = time.monotonic_ns()
            ok, image = self._cap.read()
            capture_ns = time.monotonic_ns()
            if self._interrupted.is_set():
                return None
            if not ok:
                self._release()
                if self._outage_start_ns is None:
                    self._stalled(t0, capture_ns)
                continue
            pts_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
            frame = Frame(image, self._index, capture_ns, capture_ns / 1e9)
            frame.backlog_ms = self._clock.backlog_ms(capture_ns, pts_ms)
            self._index += 1
            self._arrived(frame)
            return frame
        return None

    def _arrived(self, frame: Frame) -> None:
        """Book-keeping for a frame that did arrive: first connection, or the end of an outage."""
        h, w = frame.image.shape[:2]
        if self._size is None:
            self._size = (w, h)
            self._health(
                SourceState.CONNECTED,
                at_ns=frame.capture_ns,
                width=w,
                height=h,
                fps=round(self.fps, 3),
                attempts=self._connect_attempts,
            )
        elif self._outage_start_ns is not None:
            resized = (w, h) != self._size
            self._health(
                SourceState.RECOVERED,
                at_ns=frame.capture_ns,
                attempts=self._attempts,
                outage_s=self._outage_s(frame.capture_ns),
                width=w,
                height=h,
                resized=resized,
            )
            self._size = (w, h)
        self._outage_start_ns = None
        self._attempts = 0
        self._last_frame_ns = frame.capture_ns

    def _stalled(self, read_start_ns: int, now_ns: int) -> None:
        waited_s = (now_ns - read_start_ns) / 1e9
        since = self._last_frame_ns if self._last_frame_ns is not None else read_start_ns
        self._outage_start_ns = since
        reason = (
            "no frame within read timeout" if waited_s >= 0.9 * self.cfg.read_timeout_s else "stream ended"
        )
        self._health(
            SourceState.STALLED,
            reason=reason,
            since_last_frame_s=round((now_ns - since) / 1e9, 3),
            frames=self._index,
        )

    def _outage_s(self, now_ns: int | None = None) -> float:
        start = self._outage_start_ns if self._outage_start_ns is not None else time.monotonic_ns()
        return round(((now_ns or time.monotonic_ns()) - start) / 1e9, 3)

    def _health(self, state: SourceState, at_ns: int | None = None, **fields: Any) -> None:
        """Report a state change; `at_ns` (monotonic) is when it happened: for `connected` and
        `recovered`, the capture of the first frame, so frames at or after it belong to the new state."""
        if self.on_health is not None:
            self.on_health(SourceEvent(state, self.name, at_ns or time.monotonic_ns(), **fields))

    # -- stopping -----------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Make a blocked read() return None soon (within one read timeout); safe from any thread."""
        self._interrupted.set()

    def _release(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def close(self) -> None:
        self._release()
