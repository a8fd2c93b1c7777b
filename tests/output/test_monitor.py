"""Monitoring (`--serve`): a real HTTP server on loopback fed by real pipeline runs on the real clip; the
metrics parsed with prometheus-client's own parser; the live page loaded in headless Chromium (Debian's
`chromium` and `chromium-driver`, which `.ci/run` installs). Every wait has a deadline."""

from __future__ import annotations

import functools
import json
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from perception.core.config import load_config
from perception.core.errors import PerceptionError
from perception.core.events import (
    DetectorEvent,
    DetectorState,
    EndEvent,
    FcwEvent,
    RunStatus,
    SourceEvent,
    SourceState,
    Stage,
    WarningLevel,
)
from perception.core.types import CollisionWarning, Detections, Frame, FrameResult, Tracks
from perception.detect import create_detector
from perception.output.monitor import Monitor
from perception.output.monitor.stream import LiveView
from perception.output.sinks import Annotator
from perception.runtime.pipeline import Pipeline, RunSummary, Stream
from perception.runtime.processor import build_processor
from perception.sources.files import open_source
from tests.cli.test_cli import assert_one_line_error, read_events, run_cli
from tests.conftest import HIGHWAY_CLIP, YOLOX_ONNX

KIND = "integration"  # real servers on loopback, the real clip and model, a browser
WAIT_S = 60  # deadline for anything a test waits on
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def get(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, 503 included."""
    try:
        with urllib.request.urlopen(url, timeout=WAIT_S) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def scrape(url: str) -> dict[str, float]:
    """/metrics parsed by prometheus-client's parser: {'name{label=value,...}': value}."""
    status, content_type, body = get(url + "metrics")
    assert status == 200 and content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def health(url: str) -> tuple[int, dict[str, Any]]:
    status, content_type, body = get(url + "health")
    assert content_type == "application/json"
    return status, json.loads(body)


def mjpeg_frames(url: str, count: int) -> list[np.ndarray]:
    """The first `count` parts of an MJPEG response, decoded."""
    images = []
    with urllib.request.urlopen(url, timeout=WAIT_S) as response:
        assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        while len(images) < count:
            line = response.readline()
            assert line, f"the stream ended after {len(images)} frames"
            if line.strip() != b"--frame":
                continue
            headers = {}
            while header := response.readline().strip():
                key, value = header.split(b":", 1)
                headers[key.strip().lower()] = value.strip()
            assert headers[b"content-type"] == b"image/jpeg"
            data = response.read(int(headers[b"content-length"]))
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None, "a part is not a JPEG"
            images.append(image)
    return images


def wait_until(what: str, check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


def port_is_free(port: int) -> bool:
    """Whether a server could listen on the port again (SO_REUSEADDR, as http.server sets it: closed
    connections may linger in TIME_WAIT)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def result(index: int, level: WarningLevel = WarningLevel.NONE, events: list | None = None) -> FrameResult:
    image = np.full((540, 960, 3), index % 256, np.uint8)
    latency = {Stage.DETECT: 20.0, Stage.E2E: 30.0 + index}
    warning = CollisionWarning(level, 3 if level else None, 2.5 if level else None, 18.0 if level else None)
    frame = Frame(image, index, time.monotonic_ns(), index / 25)
    return FrameResult(frame, Detections.empty(), Tracks.empty(), latency, warning, events or [])


def fcw(level: WarningLevel, previous: WarningLevel) -> FcwEvent:
    return FcwEvent(
        level.label, previous.label, 3, 2.5, 18.0, "lead", 0.2, 0.0, False, 4.5, frame=0, source_ts_s=0.0
    )


def end_event(frames: int) -> EndEvent:
    return EndEvent(RunStatus.OK, frames, frames, 0, 0, 0, 1.0, float(frames), interrupted=False)


# -- the server alone, several streams ------------------------------------------------------------------


def test_health_and_metrics_follow_each_stream() -> None:
    """Three streams: 503 until all are up, 200 while they are, 503 (`degraded`) when one stalls or ends;
    counters and states per stream label."""
    with Monitor("127.0.0.1", 0) as monitor:
        sinks = {name: monitor.stream(name, f"rtsp://cam/{name}") for name in ("front", "left", "right")}
        status, body = health(monitor.url)
        assert status == 503 and body["status"] == "down"
        assert [s["state"] for s in body["streams"]] == ["starting"] * 3
        for i, sink in enumerate(sinks.values()):
            sink.write(result(i))
        status, body = health(monitor.url)
        assert status == 200 and body["status"] == "ok"
        assert {s["name"]: s["frames"] for s in body["streams"]} == {"front": 1, "left": 1, "right": 1}

        sinks["front"].write(result(1, WarningLevel.CAUTION, [fcw(WarningLevel.CAUTION, WarningLevel.NONE)]))
        sinks["front"].write(
            result(2, WarningLevel.WARNING, [fcw(WarningLevel.WARNING, WarningLevel.CAUTION)])
        )
        sinks["front"].write(
            result(3, WarningLevel.CAUTION, [fcw(WarningLevel.CAUTION, WarningLevel.WARNING)])
        )
        monitor.on_source("left", SourceEvent(SourceState.STALLED, "rtsp://cam/left", 1, reason="timeout"))
        monitor.on_source("left", SourceEvent(SourceState.RECONNECTING, "rtsp://cam/left", 2, attempt=1))
        status, body = health(monitor.url)
        streams = {s["name"]: s for s in body["streams"]}
        assert status == 503 and body["status"] == "degraded"
        assert streams["left"]["state"] == "reconnecting" and not streams["left"]["up"]
        assert streams["left"]["last_source_event"]["state"] == "reconnecting"
        assert streams["front"]["warning"] == {
            "level": "caution",
            "track_id": 3,
            "ttc_s": 2.5,
            "dist_m": 18.0,
        }
        assert streams["front"]["frames"] == 4

        metrics = scrape(monitor.url)
        assert metrics["perception_frames_processed_total{stream=front}"] == 4
        # raised: none -> caution and caution -> warning; warning -> caution is a release, not counted
        assert metrics["perception_warnings_total{level=caution,stream=front}"] == 1
        assert metrics["perception_warnings_total{level=warning,stream=front}"] == 1
        assert metrics["perception_warning_level{stream=front}"] == 1
        assert metrics["perception_reconnects_total{stream=left}"] == 1
        assert metrics["perception_source_events_total{state=stalled,stream=left}"] == 1
        assert metrics["perception_stream_up{stream=left}"] == 0
        assert metrics["perception_stream_state{perception_stream_state=reconnecting,stream=left}"] == 1
        assert metrics["perception_stage_latency_seconds_count{stage=e2e,stream=front}"] == 4
        assert metrics["perception_stage_latency_seconds_bucket{le=0.04,stage=e2e,stream=front}"] == 4
        assert metrics["perception_stage_latency_seconds_bucket{le=0.03,stage=e2e,stream=front}"] == 1

        monitor.on_source("left", SourceEvent(SourceState.RECOVERED, "rtsp://cam/left", 3, outage_s=1.0))
        assert health(monitor.url)[0] == 200
        monitor.stream_ended("right", end_event(1))
        status, body = health(monitor.url)
        assert status == 503 and body["streams"][2]["state"] == "ended"
        assert body["streams"][2]["end"]["status"] == "ok"
        monitor.on_detector(
            DetectorEvent(DetectorState.UNAVAILABLE, "grpc://gpu:8001 yolox", 4, reason="gone")
        )
        status, body = health(monitor.url)
        assert status == 503 and body["status"] == "down" and not body["detector"]["up"]
        assert scrape(monitor.url)["perception_detector_up{}"] == 0
        monitor.on_detector(DetectorEvent(DetectorState.RECOVERED, "grpc://gpu:8001 yolox", 5, outage_s=1.0))
        status, body = health(monitor.url)
        assert body["status"] == "degraded" and body["detector"]["last_event"]["state"] == "recovered"
        assert get(monitor.url + "stream/nope.mjpg")[0] == 404
        with pytest.raises(ValueError, match="already monitored"):
            monitor.stream("front")


@pytest.mark.unit
def test_live_view_skips_frames_above_max_fps_and_scales_down() -> None:
    """4 s of a 25 fps stream watched at max_fps 10: 40 frames taken, none while nobody watches."""
    view = LiveView(max_fps=10, max_width=480, jpeg_quality=75)
    image = np.zeros((540, 960, 3), np.uint8)
    t0 = 10**12
    assert not any(view.offer(image, t0 + i * 40_000_000) for i in range(100))
    with view.watching():
        taken = sum(view.offer(image, t0 + i * 40_000_000) for i in range(100))
        seq, jpeg = view.next_jpeg(0, 1.0)
    assert taken == 40 and seq == 40
    assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (270, 480, 3)
    view.end()
    assert view.next_jpeg(seq, 1.0) is None  # ended: nothing newer will come


def test_close_releases_the_port_and_a_busy_port_is_one_error() -> None:
    monitor = Monitor("127.0.0.1", 0)
    port = monitor.port
    with pytest.raises(PerceptionError, match=f"cannot serve on 127.0.0.1:{port}"):
        Monitor("127.0.0.1", port)
    monitor.close()
    assert port_is_free(port)


@pytest.mark.unit
def test_serve_address_is_validated() -> None:
    assert load_config(overrides={"monitor": {"serve": "[::1]:0"}}).monitor.address == ("::1", 0)
    for bad in ("8080", "localhost:http", "host:70000", "::1:8080"):
        with pytest.raises(PerceptionError, match="monitor.serve: .*HOST:PORT|IPv6"):
            load_config(overrides={"monitor": {"serve": bad}})


# -- a real pipeline run: in process (metrics exact at the end), through the CLI, in Chromium ------------


class PipelineRun:
    """The real clip, replayed at its own pace, through a real pipeline into a monitor, in a thread."""

    def __init__(self, monitor: Monitor, name: str = "highway") -> None:
        cfg = load_config(overrides={"source": {"mode": "realtime"}})
        source = open_source(str(HIGHWAY_CLIP), cfg.source)
        detector = create_detector(YOLOX_ONNX, cfg)
        self.sink = monitor.stream(name, source.name)
        annotate = Annotator(cfg.labels, detector.class_names)
        stream = Stream(source, build_processor(cfg), [self.sink], annotate, name=name)
        self.pipeline = Pipeline(detector, cfg, [stream])
        monitor.count_with(name, functools.partial(self.pipeline.counts, 0))
        self.done: queue.Queue[RunSummary] = queue.Queue()
        self._thread = threading.Thread(target=lambda: self.done.put(self.pipeline.run()), daemon=True)

    def start(self) -> PipelineRun:
        self._thread.start()
        return self

    def finish(self) -> RunSummary:
        self.done.get(timeout=WAIT_S)
        self.sink.close()
        return self.pipeline.streams[0].summary


def test_metrics_count_every_frame_of_a_real_run() -> None:
    with Monitor("127.0.0.1", 0) as monitor:
        run = PipelineRun(monitor).start()
        wait_until("frames", lambda: health(monitor.url)[1]["streams"][0]["frames"] > 0)
        status, body = health(monitor.url)
        assert status == 200 and body["streams"][0]["state"] == "running"
        assert mjpeg_frames(monitor.url + "stream/highway.mjpg", 3)[0].shape == (540, 960, 3)
        summary = run.finish()
        metrics = scrape(monitor.url)
    processed = summary.frames_processed
    assert processed > 0 and metrics["perception_frames_processed_total{stream=highway}"] == processed
    assert metrics["perception_frames_dropped_total{stream=highway}"] == summary.frames_dropped
    assert metrics["perception_frames_grabbed_total{stream=highway}"] == summary.frames_grabbed == 221
    for stage in ("wait", "detect", "track", "ttc", "sink", "e2e"):
        assert metrics[f"perception_stage_latency_seconds_count{{stage={stage},stream=highway}}"] == processed
    assert metrics["perception_live_view_frames_total{stream=highway}"] >= 3


NAMES = ["highway_960x540_25fps", "highway_960x540_25fps-2"]  # two copies of the clip: two streams


@pytest.fixture()
def serving_run(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str, Path]]:
    """`perception run CLIP CLIP --serve 127.0.0.1:0` at the clip's own pace; yields (process, url, out)."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "perception.cli", "run", str(HIGHWAY_CLIP), str(HIGHWAY_CLIP)]
    cmd += ["--model", str(YOLOX_ONNX), "--out", str(out), "--mode", "realtime", "--serve", "127.0.0.1:0"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    try:
        seen: list[str] = []
        while not seen or "monitoring on" not in seen[-1]:
            try:
                seen.append(lines.get(timeout=WAIT_S))
            except queue.Empty:
                raise AssertionError(f"no monitoring address printed: {''.join(seen)}") from None
        yield proc, seen[-1].split("monitoring on ")[1].split()[0], out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=WAIT_S)


def test_run_with_serve_is_scraped_while_it_runs(serving_run) -> None:
    """Two streams in one run: both listed from the start, counted apart, each with its own live view."""
    proc, url, out = serving_run
    port = int(url.rsplit(":", 1)[1].strip("/"))
    assert [s["name"] for s in health(url)[1]["streams"]] == NAMES
    key = "perception_frames_processed_total{{stream={}}}".format
    wait_until("frames in both streams", lambda: all(scrape(url).get(key(name)) for name in NAMES))
    first = scrape(url)
    status, body = health(url)
    assert status == 200 and body["status"] == "ok" and body["detector"]["up"]
    for stream, name in zip(body["streams"], NAMES, strict=True):
        assert stream["name"] == name and stream["state"] == "running" and stream["up"]
        assert stream["source"] == str(HIGHWAY_CLIP) and stream["last_frame_age_s"] < WAIT_S
    for name in NAMES:
        images = mjpeg_frames(url + f"stream/{name}.mjpg", 3)
        assert [image.shape for image in images] == [(540, 960, 3)] * 3
        assert not np.array_equal(images[0], images[-1])
    later = scrape(url)
    assert all(later[key(name)] > first[key(name)] for name in NAMES)
    assert later["perception_frames_grabbed_total{stream=highway_960x540_25fps-2}"] > 0
    assert proc.wait(timeout=WAIT_S) == 0
    for name in NAMES:
        assert read_events(out / name / "events.jsonl")[-1]["frames_processed"] >= later[key(name)]
    assert port_is_free(port)


def test_serve_errors_are_one_line(tmp_path: Path) -> None:
    proc = run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", tmp_path, "--serve", "8080")
    assert_one_line_error(proc, "monitor.serve: expected HOST:PORT")
    with Monitor("127.0.0.1", 0) as busy:
        proc = run_cli(
            "run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", tmp_path, "--serve", f"127.0.0.1:{busy.port}"
        )
    assert_one_line_error(proc, f"cannot serve on 127.0.0.1:{busy.port}")


def chromium(tmp_path: Path):
    """Headless Chromium driven by chromedriver (both from Debian), offline: nothing is downloaded."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing or shutil.which(CHROMEDRIVER) is None:
        pytest.skip(f"no headless Chromium: {', '.join(missing)} missing; .ci/run installs it (apt chromium)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1100,900", f"--user-data-dir={tmp_path / 'chromium'}",
    ):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def test_live_page_shows_frames_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium(tmp_path)
    try:
        with Monitor("127.0.0.1", 0) as monitor:
            run = PipelineRun(monitor)
            browser.get(monitor.url)  # before the run starts: the view waits for its first frame
            run.start()
            img = wait_until("the stream's card", lambda: browser.find_elements("css selector", ".card img"))[
                0
            ]
            wait_until(
                "a frame in the page", lambda: browser.execute_script("return arguments[0].naturalWidth", img)
            )
            assert browser.execute_script("return arguments[0].naturalHeight", img) == 540
            first = img.screenshot_as_png
            wait_until("the next frames", lambda: img.screenshot_as_png != first)
            assert browser.find_element("css selector", ".card .name").text == "highway"
            wait_until(
                "state running",
                lambda: browser.find_element("css selector", ".card .state").text == "running",
            )
            assert browser.find_element("css selector", "#status").text == "ok"
            assert browser.find_element("css selector", ".card .warn").text  # a warning line is shown
            run.finish()
            monitor.stream_ended("highway", end_event(221))
            wait_until(
                "state ended", lambda: browser.find_element("css selector", ".card .state").text == "ended"
            )
    finally:
        browser.quit()
