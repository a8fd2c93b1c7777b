"""The monitor: an HTTP server in daemon threads, and a sink per stream that feeds it.

    monitor = Monitor("127.0.0.1", 8080)            # serving from here on
    sink = monitor.stream("front", source="rtsp://...", counts=pipeline.counts)  # a Sink, for the pipeline
    monitor.on_source("front", event)                # a live source's health events
    monitor.on_detector(event)                       # a remote detector's server health (Triton)
    monitor.stream_ended("front", end_event)         # the stream's run is over
    monitor.close()                                  # stops the server, releases the port

Endpoints: `/metrics` (Prometheus text format, or OpenMetrics when the scraper asks for it), `/health`
(JSON; 200 when every stream is up, else 503), `/` (the live page) and `/stream/<name>.mjpg` (MJPEG).
The server's threads never touch the pipeline's: the sink updates metrics and counters and, only while
someone watches and at most `max_fps` times a second, keeps a reference to a frame (LiveView: no copy);
requests read those.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from prometheus_client.exposition import choose_encoder

from perception.core.config import MonitorConfig
from perception.core.errors import PerceptionError
from perception.core.events import DetectorEvent, DetectorState, EndEvent, SourceEvent
from perception.core.types import FrameResult
from perception.output.monitor.metrics import ENDED, Counts, Metrics, StreamMetrics
from perception.output.monitor.page import PAGE_HTML
from perception.output.monitor.stream import LiveView, StreamHealth

_BOUNDARY = b"frame"
_CLIENT_TIMEOUT_S = 10.0  # a client that takes no data for this long is dropped (its thread ends)
_WAIT_S = 0.5  # how often a waiting MJPEG response checks that the monitor is still open


class MonitorSink:
    """A stream's sink: metrics, health and the live view from each result. Put it before the event log,
    so the `sink` latency in events.jsonl includes it."""

    def __init__(self, health: StreamHealth, metrics: StreamMetrics, view: LiveView) -> None:
        self._health = health
        self._metrics = metrics
        self._view = view

    def write(self, result: FrameResult) -> None:
        now_ns = time.monotonic_ns()
        self._metrics.frame(result)
        state = self._health.frame(result, now_ns)
        if state is not None:
            self._metrics.set_state(state)
        if self._view.viewers and self._view.offer(result.frame.image, now_ns):
            self._metrics.live_frames.inc()

    def close(self) -> None:
        """No more frames: live view clients get the last one and their responses end."""
        self._view.end()


class _Stream:
    def __init__(self, health: StreamHealth, metrics: StreamMetrics, view: LiveView) -> None:
        self.health, self.metrics, self.view = health, metrics, view


class Monitor:
    """Serves the monitoring endpoints for any number of streams, from construction until `close()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, cfg: MonitorConfig | None = None) -> None:
        self.cfg = cfg or MonitorConfig()
        self.metrics = Metrics()
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._started_ns = time.monotonic_ns()
        self._detector: DetectorEvent | None = None  # the shared detector's last server state change
        server_class = _IPv6Server if ":" in host else _Server
        try:
            self._server = server_class((host, port), _handler(self))
        except OSError as exc:
            raise PerceptionError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        self.host = host
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="monitor", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    def stream(self, name: str, source: str = "", counts: Callable[[], Counts] | None = None) -> MonitorSink:
        """Register a stream; its sink goes among the stream's sinks. `counts` (e.g. `pipeline.counts`)
        gives the frames grabbed, dropped and stale, read when /metrics or /health is asked for."""
        cfg = self.cfg
        with self._lock:
            if name in self._streams:
                raise ValueError(f"stream {name!r} is already monitored")
            stream = _Stream(
                StreamHealth(name, source, cfg.fps_window_s),
                self.metrics.stream(name),
                LiveView(cfg.max_fps, cfg.max_width, cfg.jpeg_quality),
            )
            self._streams[name] = stream
        self.count_with(name, counts)
        return MonitorSink(stream.health, stream.metrics, stream.view)

    def count_with(self, name: str, counts: Callable[[], Counts] | None) -> None:
        """Set (or replace) where a stream's grabbed, dropped and stale counts come from."""
        stream = self._streams[name]
        stream.health.counts = counts
        self.metrics.count_with(name, counts)

    def on_source(self, name: str, event: SourceEvent) -> None:
        """A live source's state change (any thread)."""
        stream = self._streams[name]
        stream.metrics.source_event(event.state)
        stream.metrics.set_state(stream.health.source_event(event))

    def on_detector(self, event: DetectorEvent) -> None:
        """The shared detector's server changed state (a detect thread): while it is not `recovered`, no
        stream is processed and /health says `down`."""
        self._detector = event
        self.metrics.detector_event(event.state)

    def stream_ended(self, name: str, end: EndEvent) -> None:
        """The stream's run is over, however it ended (`end.status`)."""
        stream = self._streams[name]
        stream.health.ended(end)
        stream.metrics.set_state(ENDED)
        stream.view.end()

    def health(self) -> tuple[int, dict[str, Any]]:
        """/health: the HTTP status and the report. `ok` (200) when every stream is up; `degraded` when
        some are, `down` when none is (or none is registered yet, or the shared detector's server is away):
        both 503, so a probe that only reads the status code notices one dead camera among many; the body
        says which."""
        now_ns = time.monotonic_ns()
        with self._lock:
            streams = list(self._streams.values())
        reports = [s.health.report(now_ns) for s in streams]
        detector = self._detector
        detector_up = detector is None or detector.state is DetectorState.RECOVERED
        up = sum(r["up"] for r in reports) if detector_up else 0
        status = "ok" if reports and up == len(reports) else "degraded" if up else "down"
        body = {
            "status": status,
            "uptime_s": round((now_ns - self._started_ns) / 1e9, 3),
            "detector": {"up": detector_up, "last_event": None if detector is None else detector.to_dict()},
            "streams": reports,
        }
        return (HTTPStatus.OK if status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE), body

    def view(self, name: str) -> LiveView | None:
        stream = self._streams.get(name)
        return None if stream is None else stream.view

    def watchers(self, name: str, delta: int) -> None:
        self._streams[name].metrics.viewers.inc(delta)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Stop serving and release the port; open MJPEG responses end within `_WAIT_S`."""
        if self._closed.is_set():
            return
        self._closed.set()
        for stream in list(self._streams.values()):
            stream.view.end()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a client still connected never keeps the process alive
    block_on_close = False


class _IPv6Server(_Server):
    address_family = socket.AF_INET6


def _handler(monitor: Monitor) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.monitor = monitor
    return Handler


class _Handler(BaseHTTPRequestHandler):
    monitor: Monitor
    timeout = _CLIENT_TIMEOUT_S
    server_version = "perception-monitor"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # no line on stderr per request

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = urlsplit(self.path).path
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", PAGE_HTML.encode())
            elif path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._send(HTTPStatus.OK, content_type, encoder(self.monitor.metrics.registry))
            elif path == "/health":
                status, body = self.monitor.health()
                self._send(status, "application/json", json.dumps(body, allow_nan=False).encode())
            elif path.startswith("/stream/") and path.endswith(".mjpg"):
                self._mjpeg(unquote(path[len("/stream/") : -len(".mjpg")]))
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _mjpeg(self, name: str) -> None:
        view = self.monitor.view(name)
        if view is None:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", f"no stream {name!r}\n".encode())
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY.decode()}")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        seq = 0
        self.monitor.watchers(name, 1)
        try:
            with view.watching():
                while not self.monitor.closed:
                    got = view.next_jpeg(seq, _WAIT_S)
                    if got is None:
                        if view.ended:
                            break
                        continue
                    seq, jpeg = got
                    head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % (
                        _BOUNDARY,
                        len(jpeg),
                    )
                    self.wfile.write(head + jpeg + b"\r\n")  # one send per part
                self.wfile.write(b"--%s--\r\n" % _BOUNDARY)
        finally:
            self.monitor.watchers(name, -1)
