"""Pipeline: for every stream, grab -> (shared) detect -> process -> sinks, each a thread, joined by bounded
queues. This module holds only threads, queues and shutdown: the latency policy is the streams' inboxes and
the batcher (perception/runtime/batching.py), what happens to a frame after detection is each stream's frame
processor (perception/runtime/processor.py), known here only as `step(frame, detections)`.

    stream 0: grab ──> inbox ─┐                         ┌─> process ─> sinks
    stream 1: grab ──> inbox ─┼─> batcher ─> detect(s) ─┼─> process ─> sinks
    stream 2: grab ──> inbox ─┘   (one batch across     └─> process ─> sinks
                                   streams per call)

One detector serves every stream: each call takes a batch of frames across streams (`detector.batch`,
`detector.batch_timeout_ms`). Detection may also run several requests at once (`detector.requests`, two by
default when replaying fast): one thread per request, each on a fork of the detector; batches are taken in
order and their results handed on in that same order (a thread that finishes early waits its turn), so
every stream's processor sees its frames in sequence.

Stopping: every source ending, a detector failure, Ctrl-C/SIGTERM or a user closing the window stop the
run in order. A stream whose own source, processor or sinks fail ends alone (its error is kept in its
summary) while the others go on. The caller owns the sinks and closes them after `run` returns or raises.
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

from perception.core.config import Config
from perception.core.errors import DetectorUnavailable
from perception.core.events import Stage
from perception.core.types import Detections, FrameResult
from perception.detect import Detector
from perception.detect.extra import ExtraDetector, merge_detections
from perception.output.sinks import Sink, StopRequested
from perception.runtime.batching import END, FrameBatcher, Inbox, Item
from perception.sources.files import Source

if TYPE_CHECKING:
    from perception.runtime.processor import FrameProcessor

_POLL_S = 0.05
LATENCY_SAMPLES = 4096


@dataclass
class RunSummary:
    frames_grabbed: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0  # live: replaced by a newer frame before detection took it
    frames_stale: int = 0  # live: older than source.max_frame_age_s when detection could start
    frames_detector_unavailable: int = 0  # live: dropped while a remote detector was unreachable
    elapsed_s: float = 0.0
    interrupted: bool = False
    e2e_ms: list[float] = field(default_factory=list)  # recent samples only (bounded)
    error: StageError | None = None  # what ended this stream early, if anything

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


@dataclass
class Stream:
    """One source and what happens to its frames after detection: its processor, its sinks."""

    source: Source
    processor: FrameProcessor
    sinks: Sequence[Sink]
    annotate: Callable[[FrameResult], Any] | None = None  # draws on the frame before the sinks
    on_frame: Callable[[FrameResult], None] | None = None  # after the sinks (progress bars, counters)
    name: str = ""
    summary: RunSummary = field(default_factory=RunSummary)


class _Lane:
    """A stream's running state: its queues after the detector, its stop flag, its latency samples."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.detected: queue.Queue = queue.Queue(2)
        self.processed: queue.Queue = queue.Queue(2)
        self.stop = threading.Event()
        self.e2e_ms = np.zeros(LATENCY_SAMPLES)
        self.ended_s: float | None = None


class Pipeline:
    """Runs streams through one shared detector and each stream's processor into its sinks."""

    def __init__(
        self,
        detector: Detector,
        cfg: Config,
        streams: Sequence[Stream],
        extras: Sequence[ExtraDetector] = (),
    ) -> None:
        if not streams:
            raise ValueError("a pipeline needs at least one stream")
        self.detector = detector
        self.extras = list(extras)  # more models on the same frames (detect/extra.py), merged before tracking
        self.cfg = cfg
        self.streams = list(streams)
        self._lanes = [_Lane(s) for s in self.streams]
        size = cfg.pipeline.replay_queue_size
        inboxes = [Inbox(s.source.is_live, size, cfg.source.max_frame_age_s) for s in self.streams]
        batch = cfg.detector.batch or min(len(self.streams), 8)
        self._batcher = FrameBatcher(
            inboxes, min(batch, getattr(detector, "max_batch", 1)), cfg.detector.batch_timeout_ms / 1e3
        )
        self._take_lock = threading.Lock()  # a detect thread takes a batch and its turn together
        self._turn = threading.Condition()  # detect threads hand results on in the order batches were taken
        self._turns_taken = self._turns_done = 0
        self._stop = threading.Event()
        self._error: StageError | None = None  # a failure of the shared detector ends every stream
        self.summary = RunSummary()  # all streams together

    def stop(self) -> None:
        """Ask every stage to finish; safe from any thread or a signal handler."""
        self._stop.set()
        self._batcher.stop()
        # A remote detector may be waiting for its server.
        interrupt = getattr(self.detector, "interrupt", None)
        if interrupt is not None:
            interrupt()
        for lane in self._lanes:
            self._stop_lane(lane)

    def counts(self, index: int) -> RunSummary:
        """Stream `index`'s frame counts so far, from any thread while it runs: what monitoring reads."""
        s, inbox = self.streams[index].summary, self._batcher.inboxes[index]
        return RunSummary(
            s.frames_grabbed, s.frames_processed, inbox.dropped, inbox.stale, s.frames_detector_unavailable
        )

    @staticmethod
    def _stop_lane(lane: _Lane) -> None:
        lane.stop.set()
        interrupt = getattr(lane.stream.source, "interrupt", None)  # a live read() may be blocked waiting
        if interrupt is not None:
            interrupt()

    # -- queue helpers that give up when the stream stops ---------------------------------------------------
    @staticmethod
    def _put(lane: _Lane, q: queue.Queue, item: Any) -> bool:
        while not lane.stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    @staticmethod
    def _get(lane: _Lane, q: queue.Queue) -> Any:
        while not lane.stop.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return END

    # -- stages ----------------------------------------------------------------------------------------------
    def _grab(self, index: int) -> None:
        lane = self._lanes[index]
        source, summary = lane.stream.source, lane.stream.summary
        try:
            while not lane.stop.is_set():
                frame = source.read()
                if frame is None:
                    break
                summary.frames_grabbed += 1
                latency_ms = {} if frame.decode_ms is None else {Stage.GRAB: frame.decode_ms}
                if frame.backlog_ms is not None:
                    latency_ms[Stage.BACKLOG] = frame.backlog_ms
                if not self._batcher.put(index, frame, latency_ms):
                    break
        finally:
            self._batcher.end(index)
            source.close()

    def _detect(self, detector: Detector, extras: list[ExtraDetector]) -> None:
        while True:
            with self._take_lock:
                batch = self._batcher.take()
                if batch is None:
                    return
                turn, self._turns_taken = self._turns_taken, self._turns_taken + 1
            frames = [item for item in batch if item.frame is not END]
            if frames:
                try:
                    self._run_batch(detector, extras, frames)
                except (
                    DetectorUnavailable
                ):  # a server that is down: these frames are dropped, the run goes on
                    for item in frames:
                        self._lanes[item.stream].stream.summary.frames_detector_unavailable += 1
                    batch = [item for item in batch if item.frame is END]
            with self._turn:
                while self._turns_done != turn:
                    if self._stop.is_set():
                        return
                    self._turn.wait(_POLL_S)
                for item in batch:
                    lane = self._lanes[item.stream]
                    payload = item if item.frame is not END else END
                    self._put(lane, lane.detected, payload)
                self._turns_done += 1
                self._turn.notify_all()

    @staticmethod
    def _run_batch(detector: Detector, extras: list[ExtraDetector], items: list[Item]) -> None:
        """The batch through the main detector, then each extra detector on the frames it is due for; their
        detections merged per frame. Each detector's time is in the frame's `latency_ms`."""
        t0 = time.monotonic_ns()
        results = detector.detect_batch([item.frame.image for item in items])
        detect_ms = (time.monotonic_ns() - t0) / 1e6
        steps = getattr(detector, "timings_ms", {})  # preprocess, inference, postprocess
        for item, detections in zip(items, results, strict=True):
            item.detections = detections
            item.latency_ms[Stage.DETECT] = detect_ms
            item.latency_ms.update(steps)
        if not extras:
            return
        parts: list[list[Detections]] = [[item.detections] for item in items]
        skipped: list[list[np.ndarray]] = [[] for _ in items]
        for extra in extras:
            for k, item in enumerate(items):
                if not extra.due(item.frame.index):
                    skipped[k].append(extra.class_ids)
                    continue
                t1 = time.monotonic_ns()
                parts[k].append(extra.detect(item.frame.image))
                item.latency_ms[extra.latency_key] = (time.monotonic_ns() - t1) / 1e6
        for k, item in enumerate(items):
            item.detections = merge_detections(parts[k])
            item.latency_ms[Stage.DETECT] = detect_ms + sum(
                item.latency_ms.get(extra.latency_key, 0.0) for extra in extras
            )
            item.unobserved = np.concatenate(skipped[k]) if skipped[k] else None

    def _process(self, index: int) -> None:
        lane = self._lanes[index]
        while (item := self._get(lane, lane.detected)) is not END:
            result = lane.stream.processor.step(item.frame, item.detections, item.latency_ms, item.unobserved)
            if not self._put(lane, lane.processed, result):
                return

    def _sink(self, index: int) -> None:
        lane = self._lanes[index]
        stream = lane.stream
        summary = stream.summary
        try:
            while (result := self._get(lane, lane.processed)) is not END:
                t0 = time.monotonic_ns()
                result.latency_ms[Stage.E2E] = (t0 - result.frame.capture_ns) / 1e6
                if stream.annotate is not None:
                    stream.annotate(result)
                for sink in stream.sinks:
                    result.latency_ms[Stage.SINK] = (time.monotonic_ns() - t0) / 1e6  # so far
                    sink.write(result)
                n = summary.frames_processed
                lane.e2e_ms[n % LATENCY_SAMPLES] = result.latency_ms[Stage.E2E]
                summary.frames_processed = n + 1
                if stream.on_frame is not None:
                    stream.on_frame(result)
        except StopRequested:
            summary.interrupted = True
            self.stop()
        finally:
            lane.ended_s = time.monotonic()

    # -- threads ---------------------------------------------------------------------------------------------
    def _thread(
        self,
        stage: str,
        body: Callable[[], None],
        lane: _Lane | None,
        after: Callable[[], None] | None = None,
    ) -> threading.Thread:
        """A stage thread. A failure ends its stream (the shared detector's: every stream); `after` runs
        however the body ends (e.g. telling the next stage that the stream ended)."""

        def run() -> None:
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - any stage failure must end its stream
                error = StageError(stage, exc)
                if lane is None:
                    self._error = self._error or error
                    self.stop()
                else:
                    summary = lane.stream.summary
                    summary.error = summary.error or error
                    if stage != "grab":  # a failed source still lets the frames already grabbed drain
                        self._stop_lane(lane)
            finally:
                if after is not None:
                    after()

        suffix = f"-{lane.stream.name}" if lane is not None and lane.stream.name else ""
        return threading.Thread(target=run, name=f"perception-{stage}{suffix}", daemon=True)

    def run(self) -> RunSummary:
        """Run to the end of every source (or until stopped) and return the counts of all streams together
        (each stream's are in its `summary`). Raises a failure of the shared detector, and, with one stream,
        that stream's failure."""
        detectors = [self.detector] + [self.detector.fork() for _ in range(self.detector.requests - 1)]
        extras = [self.extras] + [[e.fork() for e in self.extras] for _ in detectors[1:]]  # a thread's own
        left = [len(detectors)]
        lock = threading.Lock()

        def detect_done() -> None:  # the last detect thread to end tells every stream that nothing follows
            with lock:
                left[0] -= 1
                if left[0]:
                    return
            for lane in self._lanes:
                self._put(lane, lane.detected, END)

        threads, sink_threads = [], []
        for i, lane in enumerate(self._lanes):
            threads.append(self._thread("grab", functools.partial(self._grab, i), lane))
            threads.append(
                self._thread(
                    "process",
                    functools.partial(self._process, i),
                    lane,
                    functools.partial(self._put, lane, lane.processed, END),
                )
            )
            sink_threads.append(self._thread("sink", functools.partial(self._sink, i), lane))
        for detector, own_extras in zip(detectors, extras, strict=True):
            body = functools.partial(self._detect, detector, own_extras)
            threads.append(self._thread("detect", body, None, detect_done))
        start = time.monotonic()
        for thread in threads + sink_threads:
            thread.start()
        try:
            for thread in sink_threads:
                while thread.is_alive():
                    thread.join(timeout=0.1)
        except KeyboardInterrupt:
            self.summary.interrupted = True
            self.stop()
            for thread in sink_threads:
                thread.join()  # the sink stages close the outputs; let them finish
        finally:
            self.stop()
            for thread in threads:
                thread.join(timeout=2.0)
        return self._summarise(start)

    def _summarise(self, start: float) -> RunSummary:
        total = self.summary
        end = time.monotonic()
        total.elapsed_s = end - start
        samples = []
        for lane, inbox in zip(self._lanes, self._batcher.inboxes, strict=True):
            s = lane.stream.summary
            s.elapsed_s = (lane.ended_s or end) - start
            s.frames_dropped, s.frames_stale = inbox.dropped, inbox.stale
            s.interrupted = s.interrupted or total.interrupted
            s.e2e_ms = lane.e2e_ms[: min(s.frames_processed, LATENCY_SAMPLES)].tolist()
            samples += s.e2e_ms
            total.frames_grabbed += s.frames_grabbed
            total.frames_processed += s.frames_processed
            total.frames_dropped += s.frames_dropped
            total.frames_stale += s.frames_stale
            total.frames_detector_unavailable += s.frames_detector_unavailable
            total.interrupted = total.interrupted or s.interrupted
        total.e2e_ms = samples[-LATENCY_SAMPLES:]
        if self._error is not None:
            raise self._error
        if len(self._lanes) == 1 and self.streams[0].summary.error is not None:
            raise self.streams[0].summary.error
        return total
