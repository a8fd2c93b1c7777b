"""Pipeline: grab -> detect -> process (track, TTC, threats) -> sinks, each stage a thread, joined by bounded
queues. This module holds only threads, queues and shutdown; what happens to a frame after detection is the
frame processor's (perception/processor.py), and the pipeline knows it only as `step(frame, detections)`.

Latency policy lives in one place, the queue between grab and detect: for a live source it holds only
the newest frame (older ones are dropped and counted), so the detector never works on a backlog; for
a file in fast mode it is a small blocking queue, so every frame is processed. Later queues are small
and blocking: tracking and sinks are cheaper than detection and never build a backlog of their own.

Detection may run several requests at once (`detector.requests`, two by default when replaying fast):
one thread per request, each on a fork of the detector. Frames are taken in order and their results
handed on in that same order (a thread that finishes early waits its turn), so tracking sees frames in
sequence and nothing is buffered beyond one frame per request.

Stopping: a source that ends, a stage that fails, Ctrl-C/SIGTERM or a user closing the window all
lead to the same orderly shutdown. The caller owns the sinks and closes them after `run` returns or
raises, which happens only once the sink stage has finished writing.
"""

from __future__ import annotations

import functools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from perception.config import Config
from perception.detect import Detector
from perception.events import Stage
from perception.sinks import Sink, StopRequested
from perception.sources import Source
from perception.types import FrameResult

if TYPE_CHECKING:
    from perception.processor import FrameProcessor

_END = object()  # end-of-stream marker, passed down through every queue
_POLL_S = 0.05


class LatestQueue:
    """A one-slot queue where put never blocks: a new item replaces an unread one (counted as dropped).

    The end marker is never replaced, so the consumer always learns that the stream ended.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self.dropped = 0

    def put(self, item: Any, timeout: float | None = None) -> None:
        with self._cond:
            if self._full:
                if self._item is _END:
                    return
                self.dropped += 1
            self._item, self._full = item, True
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Any:
        with self._cond:
            if not self._cond.wait_for(lambda: self._full, timeout):
                raise queue.Empty
            item, self._item, self._full = self._item, None, False
            return item


@dataclass
class RunSummary:
    frames_grabbed: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0  # live: replaced in the queue by a newer frame before detection took it
    frames_stale: int = 0  # live: older than source.max_frame_age_s when detection could start
    elapsed_s: float = 0.0
    interrupted: bool = False
    e2e_ms: list[float] = field(default_factory=list)  # recent samples only (bounded)

    @property
    def fps(self) -> float:
        return self.frames_processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def e2e_percentile(self, q: float) -> float:
        return float(np.percentile(self.e2e_ms, q)) if self.e2e_ms else float("nan")


class StageError(Exception):
    """Wraps the first error raised in a stage thread, naming the stage."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


class Pipeline:
    """Runs one source through the detector and a frame processor into the given sinks."""

    LATENCY_SAMPLES = 4096

    def __init__(
        self,
        source: Source,
        detector: Detector,
        processor: FrameProcessor,
        cfg: Config,
        sinks: Sequence[Sink],
        annotate: Callable[[FrameResult], Any] | None = None,
        on_frame: Callable[[FrameResult], None] | None = None,
    ) -> None:
        self.source = source
        self.detector = detector
        self.processor = processor
        self.cfg = cfg
        self.sinks = list(sinks)
        self.annotate = annotate
        self.on_frame = on_frame
        size = cfg.pipeline.replay_queue_size
        self._grabbed: LatestQueue | queue.Queue = LatestQueue() if source.is_live else queue.Queue(size)
        self._take_lock = threading.Lock()  # a detect thread takes a frame and its turn together
        self._turn = threading.Condition()  # detect threads hand results on in the order frames were taken
        self._turns_taken = self._turns_done = 0
        self._detected: queue.Queue = queue.Queue(2)
        self._processed: queue.Queue = queue.Queue(2)
        self._stop = threading.Event()
        self._errors: list[StageError] = []
        self.summary = RunSummary()
        self._e2e = np.zeros(self.LATENCY_SAMPLES)

    def stop(self) -> None:
        """Ask every stage to finish; safe from any thread or a signal handler."""
        self._stop.set()
        interrupt = getattr(self.source, "interrupt", None)  # a live read() may be blocked waiting
        if interrupt is not None:
            interrupt()

    # -- queue helpers that give up when the run is stopping ------------------------------------------
    def _put(self, q: LatestQueue | queue.Queue, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: LatestQueue | queue.Queue) -> Any:
        while not self._stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    # -- stages -----------------------------------------------------------------------------------------
    def _grab(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                self.summary.frames_grabbed += 1
                latency_ms = {} if frame.decode_ms is None else {Stage.GRAB: frame.decode_ms}
                if frame.backlog_ms is not None:
                    latency_ms[Stage.BACKLOG] = frame.backlog_ms
                self._put(self._grabbed, (frame, latency_ms))
        finally:
            self.source.close()

    def _detect(self, detector: Detector) -> None:
        max_age_ms = self.cfg.source.max_frame_age_s * 1e3 if self.source.is_live else float("inf")
        while True:
            with self._take_lock:
                item = self._get(self._grabbed)
                if item is _END:
                    self._put(self._grabbed, _END)  # for the other detect threads
                    return
                frame, latency_ms = item
                t0 = time.monotonic_ns()
                latency_ms[Stage.WAIT] = (t0 - frame.capture_ns) / 1e6
                if latency_ms[Stage.WAIT] + latency_ms.get(Stage.BACKLOG, 0.0) > max_age_ms:
                    self.summary.frames_stale += 1  # results this late are of no use to a live feed
                    continue
                turn, self._turns_taken = self._turns_taken, self._turns_taken + 1
            detections = detector.detect(frame.image)
            latency_ms[Stage.DETECT] = (time.monotonic_ns() - t0) / 1e6
            latency_ms.update(getattr(detector, "timings_ms", ()))  # preprocess, inference, ...
            with self._turn:
                while self._turns_done != turn:
                    if self._stop.is_set():
                        return
                    self._turn.wait(_POLL_S)
                delivered = self._put(self._detected, (frame, detections, latency_ms))
                self._turns_done += 1
                self._turn.notify_all()
            if not delivered:
                return

    def _process(self) -> None:
        while (item := self._get(self._detected)) is not _END:
            frame, detections, latency_ms = item
            result = self.processor.step(frame, detections, latency_ms)
            if not self._put(self._processed, result):
                return

    def _sink(self) -> None:
        try:
            while (result := self._get(self._processed)) is not _END:
                t0 = time.monotonic_ns()
                result.latency_ms[Stage.E2E] = (t0 - result.frame.capture_ns) / 1e6
                if self.annotate is not None:
                    self.annotate(result)
                for sink in self.sinks:
                    result.latency_ms[Stage.SINK] = (
                        time.monotonic_ns() - t0
                    ) / 1e6  # so far: later sinks see it
                    sink.write(result)
                n = self.summary.frames_processed
                self._e2e[n % self.LATENCY_SAMPLES] = result.latency_ms[Stage.E2E]
                self.summary.frames_processed = n + 1
                if self.on_frame is not None:
                    self.on_frame(result)
        except StopRequested:
            self.summary.interrupted = True
            self._stop.set()

    def _stage(
        self, name: str, bodies: Sequence[Callable[[], None]], downstream: queue.Queue | None
    ) -> list[threading.Thread]:
        """A thread per body; the last one to finish tells the next stage that the stream ended."""
        left = [len(bodies)]
        lock = threading.Lock()

        def run(body: Callable[[], None]) -> None:
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - any stage failure must end the whole run
                self._errors.append(StageError(name, exc))
                if name != "grab":  # a failed source still lets the frames already grabbed drain
                    self._stop.set()
            finally:
                with lock:
                    left[0] -= 1
                    last = left[0] == 0
                if downstream is not None and last:
                    self._put(downstream, _END)

        names = [name] if len(bodies) == 1 else [f"{name}-{i}" for i in range(len(bodies))]
        return [
            threading.Thread(target=run, args=(body,), name=f"perception-{n}", daemon=True)
            for n, body in zip(names, bodies, strict=True)
        ]

    def run(self) -> RunSummary:
        """Run to the end of the source (or until stopped). Raises the first stage error, if any;
        `self.summary` holds the counts either way."""
        detectors = [self.detector] + [self.detector.fork() for _ in range(self.detector.requests - 1)]
        threads = [
            *self._stage("grab", [self._grab], self._grabbed),
            *self._stage("detect", [functools.partial(self._detect, d) for d in detectors], self._detected),
            *self._stage("process", [self._process], self._processed),
            *self._stage("sink", [self._sink], None),
        ]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            while threads[-1].is_alive():
                threads[-1].join(timeout=0.1)
        except KeyboardInterrupt:
            self.summary.interrupted = True
            self._stop.set()
            threads[-1].join()  # the sink stage closes the outputs; let it finish
        finally:
            self._stop.set()
            for thread in threads[:-1]:
                thread.join(timeout=2.0)
        summary = self.summary
        summary.elapsed_s = time.monotonic() - start
        if isinstance(self._grabbed, LatestQueue):
            summary.frames_dropped = self._grabbed.dropped
        summary.e2e_ms = self._e2e[: min(summary.frames_processed, self.LATENCY_SAMPLES)].tolist()
        if self._errors:
            raise self._errors[0]
        return summary
