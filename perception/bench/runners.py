"""The modes `perception bench` runs: the real pipeline, the same stages in one loop, the detector alone, and
Ultralytics' own `track`. Each returns a RunResult of per-frame latencies and counts."""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.core.events import Stage
from perception.core.types import FrameResult
from perception.detect import Detector
from perception.runtime.pipeline import Pipeline, Stream
from perception.runtime.processor import build_processor
from perception.sources.files import Source, open_source

MODES = ("pipeline", "sequential", "detector", "ultralytics")


@dataclass
class RunResult:
    """One run of one mode: per-frame latencies (ms, by stage) and counts."""

    mode: str
    frames: list[dict[str, float]] = field(default_factory=list)  # per processed frame, in order
    done_ns: list[int] = field(default_factory=list)  # when each frame left the last stage
    frames_grabbed: int = 0
    frames_dropped: int = 0  # replaced in the latest-frame queue by a newer one (realtime)
    frames_stale: int = 0  # too old when detection could start (realtime)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mib: float = 0.0
    source_fps: float = 0.0

    @property
    def frames_processed(self) -> int:
        return len(self.frames)


class _Limited:
    """A source that ends after `limit` frames (None: never early)."""

    def __init__(self, source: Source, limit: int | None) -> None:
        self._source, self._limit, self._count = source, limit, 0
        self.name, self.is_live, self.fps = source.name, source.is_live, source.fps
        self.frame_count = source.frame_count

    def read(self):
        if self._limit is not None and self._count >= self._limit:
            return None
        self._count += 1
        return self._source.read()

    def close(self) -> None:
        self._source.close()


class _Collector:
    """In-memory sink: keeps each frame's latencies, adding `e2e_due` (from the moment the frame was due
    by its timestamp, measured from the first frame: in realtime this includes a late decode) and
    `queues` (time waiting between detect, track and sink)."""

    def __init__(self, result: RunResult, paced: bool) -> None:
        self.result = result
        self.paced = paced
        self._origin_ns: int | None = None  # when source time 0 was due

    def write(self, res: FrameResult) -> None:
        now = time.monotonic_ns()
        frame, lat = res.frame, dict(res.latency_ms)
        if self._origin_ns is None:
            self._origin_ns = frame.capture_ns - int(frame.source_ts_s * 1e9)
        due_ns = self._origin_ns + int(frame.source_ts_s * 1e9)
        if "e2e" not in lat:  # the sequential loop ends here
            lat["e2e"] = (now - frame.capture_ns) / 1e6
        if self.paced:
            lat["e2e_due"] = max((now - due_ns) / 1e6, lat["e2e"])
        inner = sum(lat.get(k, 0.0) for k in ("wait", "detect", "track", "ttc"))
        lat["queues"] = max(lat["e2e"] - inner - lat.get("sink", 0.0), 0.0)
        lat["source_ts_s"] = frame.source_ts_s
        self.result.frames.append(lat)
        self.result.done_ns.append(now)

    def close(self) -> None:
        pass


def _measure(mode: str, body: Callable[[RunResult], None]) -> RunResult:
    result = RunResult(mode)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    body(result)
    result.elapsed_s = time.monotonic() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_s = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    result.peak_rss_mib = usage1.ru_maxrss / 1024  # KiB on Linux
    return result


def run_pipeline(spec: str, detector: Detector, cfg: Config, limit: int | None) -> RunResult:
    def body(result: RunResult) -> None:
        source = _Limited(open_source(spec, cfg.source), limit)
        result.source_fps = source.fps
        stream = Stream(source, build_processor(cfg), [_Collector(result, source.is_live)])
        summary = Pipeline(detector, cfg, [stream]).run()
        result.frames_grabbed = summary.frames_grabbed
        result.frames_dropped, result.frames_stale = summary.frames_dropped, summary.frames_stale

    return _measure("pipeline", body)


def run_sequential(spec: str, detector: Detector, cfg: Config, limit: int | None) -> RunResult:
    """The pipeline's own stage code, one frame after another in this thread."""

    def body(result: RunResult) -> None:
        source = _Limited(open_source(spec, cfg.source), limit)
        processor = build_processor(cfg)
        collector = _Collector(result, source.is_live)
        try:
            while (frame := source.read()) is not None:
                result.frames_grabbed += 1
                lat = {
                    Stage.GRAB: frame.decode_ms or 0.0,
                    Stage.WAIT: (time.monotonic_ns() - frame.capture_ns) / 1e6,
                }
                t0 = time.monotonic_ns()
                detections = detector.detect(frame.image)
                lat[Stage.DETECT] = (time.monotonic_ns() - t0) / 1e6
                lat.update(getattr(detector, "timings_ms", ()))
                result_frame = processor.step(frame, detections, lat)
                lat[Stage.SINK] = 0.0
                collector.write(result_frame)
        finally:
            source.close()

    return _measure("sequential", body)


def decode_frames(spec: str, cfg: Config, limit: int | None) -> list[np.ndarray]:
    """Every frame decoded up front, for the detector-alone baseline."""
    source = _Limited(open_source(spec, cfg.source.model_copy(update={"mode": "fast"})), limit)
    images = []
    try:
        while (frame := source.read()) is not None:
            images.append(frame.image)
    finally:
        source.close()
    return images


def run_detector(images: list[np.ndarray], detector: Detector) -> RunResult:
    """The detector's requests each on a thread taking the next image, as the pipeline runs them, with
    nothing else to do: the most frames per second this detector makes here."""
    lanes = [detector] + [detector.fork() for _ in range(detector.requests - 1)]

    def body(result: RunResult) -> None:
        lock = threading.Lock()
        order = iter(range(len(images)))

        def work(lane: Detector) -> None:
            while (index := _next(order, lock)) is not None:
                t0 = time.monotonic_ns()
                lane.detect(images[index])
                detect_ms = (time.monotonic_ns() - t0) / 1e6
                steps = getattr(lane, "timings_ms", {})
                with lock:
                    result.frames.append({"detect": detect_ms, "e2e": detect_ms, **steps})
                    result.done_ns.append(time.monotonic_ns())

        with ThreadPoolExecutor(len(lanes)) as pool:
            list(pool.map(work, lanes))  # re-raises a lane's error
        result.frames_grabbed = len(images)

    return _measure("detector", body)


def _next(order: Iterator[int], lock: threading.Lock) -> int | None:
    with lock:
        return next(order, None)


def check_ultralytics_decodes(model: str) -> None:
    """Ultralytics decodes any ONNX, OpenVINO or TensorRT file as one of its own heads; a model without its
    metadata (a YOLOX head, say) comes out as confident nonsense (class ids in the thousands), and so would
    the baseline's figures. Such a model is refused (a PerceptionError) before anything is measured."""
    if Path(model).suffix.lower() == ".pt":
        return
    from perception.detect.runtimes.ultralytics import load_ultralytics

    yolo = load_ultralytics().YOLO(model, task="detect")
    yolo.predict(np.zeros((64, 64, 3), np.uint8), verbose=False)  # loads the model and reads its metadata
    if not getattr(yolo.predictor.model, "metadata", None):
        raise PerceptionError(
            f"refused: {model} has no Ultralytics metadata (not an Ultralytics export, e.g. YOLOX), so "
            "Ultralytics would decode its output as a head it is not"
        )


def run_ultralytics(spec: str, model: str, cfg: Config, limit: int | None) -> RunResult:
    """`YOLO(model).track(source, stream=True)` at our thresholds; its per-frame time is the time between
    results (it decodes, detects and tracks in one loop), and its own pre/infer/post split is kept."""
    from perception.detect.runtimes.ultralytics import device_and_half, load_ultralytics, precision_options

    yolo_cls = load_ultralytics().YOLO
    options = precision_options(*device_and_half(cfg.detector, model))

    def body(result: RunResult) -> None:
        yolo = yolo_cls(model, task="detect")
        stream = yolo.track(
            source=spec,
            stream=True,
            verbose=False,
            conf=cfg.detector.conf_threshold,
            persist=False,
            **options,
        )
        last = time.monotonic_ns()
        for res in stream:
            now = time.monotonic_ns()
            speed = res.speed or {}
            result.frames.append(
                {
                    "e2e": (now - last) / 1e6,
                    "preprocess": float(speed.get("preprocess") or 0.0),
                    "inference": float(speed.get("inference") or 0.0),
                    "postprocess": float(speed.get("postprocess") or 0.0),
                }
            )
            result.done_ns.append(now)
            result.frames_grabbed += 1
            last = now
            if limit is not None and result.frames_grabbed >= limit:
                break
        stream.close()

    return _measure("ultralytics", body)
