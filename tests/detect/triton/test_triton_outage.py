"""A Triton server that goes away under `--backend triton`: killed mid-run and restarted on the same ports,
hung (SIGSTOP), or gone for good. The backend reconnects with the stream sources' backoff policy, reports
each state change through `on_health`, and per `outage_policy` waits (every frame detected) or drops frames
(DetectorUnavailable) meanwhile. Every wait here has a deadline."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from perception.core.config import Config, load_config
from perception.core.errors import DetectorUnavailable, PerceptionError
from perception.detect import create_detector
from perception.detect.triton.backend import TritonDetector
from tests.conftest import YOLOX_ONNX
from tests.helpers import Run, assert_same_detections, clip_frames, read_events, short_clip
from tests.triton_harness import WAIT_S, TritonServer, require_triton, write_repo

KIND = "integration"

# Short backoff, so outages in tests last seconds: 0.2 s doubling to at most 0.5 s, +-25 %.
FAST_BACKOFF = {"backoff_initial_s": 0.2, "backoff_max_s": 0.5}


@pytest.fixture(scope="module")
def server_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    require_triton()
    tmp = tmp_path_factory.mktemp("triton-outage")
    write_repo(tmp / "repo", YOLOX_ONNX, "--imgsz", "384", "640")
    triton = TritonServer(tmp / "repo", tmp / "server.log")
    try:
        yield triton
    finally:
        triton.kill()


@pytest.fixture()
def server(server_once: TritonServer) -> TritonServer:
    """Running at the start of each test (a test before may have left it dead)."""
    if server_once.proc is None or server_once.proc.poll() is not None:
        server_once.start()
    return server_once


def triton_cfg(url: str, timeout_s: float = 5.0, **source: object) -> Config:
    return load_config(
        overrides={
            "detector": {"backend": "triton", "triton_url": url, "triton_timeout_s": timeout_s},
            "source": {**FAST_BACKOFF, **source},
        }
    )


class Health:
    """on_health events, and a wait for one with a deadline."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self._changed = threading.Condition()

    def __call__(self, state: str, fields: dict) -> None:
        with self._changed:
            self.events.append((state, fields))
            self._changed.notify_all()

    def states(self) -> list[str]:
        return [state for state, _ in self.events]

    def wait_for(self, state: str) -> dict:
        with self._changed:
            found = self._changed.wait_for(lambda: state in self.states(), timeout=WAIT_S)
        assert found, f"no {state!r} health event within {WAIT_S} s: {self.states()}"
        return next(fields for s, fields in self.events if s == state)


def in_thread(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_server_killed_mid_run_and_restarted_every_frame_is_detected(server: TritonServer) -> None:
    """Policy `wait` (replays): detect() blocks through the outage and detects the frame after."""
    frames = clip_frames(step=10)
    detector = create_detector(YOLOX_ONNX, triton_cfg(server.grpc_url))
    direct = create_detector(YOLOX_ONNX, load_config(overrides={"detector": {"input_size": [384, 640]}}))
    health = Health()
    detector.on_health = health
    assert detector.outage_policy == "wait"
    results: list = []
    five_done = threading.Event()

    def detect_all() -> None:
        for image in frames:
            results.append(detector.detect(image))
            if len(results) == 5:
                five_done.set()

    worker = in_thread(detect_all)
    assert five_done.wait(WAIT_S)
    server.kill()
    health.wait_for("reconnecting")
    server.start()
    worker.join(WAIT_S)
    assert not worker.is_alive()
    assert len(results) == len(frames)
    for got, image in zip(results, frames, strict=True):
        assert_same_detections(got, direct.detect(image))
    states = health.states()
    assert states[0] == "unavailable" and states[-1] == "recovered"
    assert set(states[1:-1]) == {"reconnecting"}
    recovered = health.events[-1][1]
    assert recovered["outage_s"] > 0 and recovered["attempts"] == len(states) - 2
    assert recovered["detector"] == f"{server.grpc_url} yolox_nano"
    delays = [f["delay_s"] for s, f in health.events if s == "reconnecting"]
    assert all(0.15 <= d <= 0.625 for d in delays)  # the backoff policy: 0.2 s doubling to 0.5 s, +-25 %


def test_drop_policy_raises_per_frame_while_down_then_recovers(server: TritonServer, highway_frame) -> None:
    """Policy `drop` (live sources): each frame during the outage fails at once with DetectorUnavailable,
    the pipeline's cue to count it and go on; once an attempt finds the server, frames are detected."""
    detector = create_detector(YOLOX_ONNX, triton_cfg(server.http_url))
    health = Health()
    detector.on_health = health
    detector.outage_policy = "drop"
    want = len(detector.detect(highway_frame))
    server.kill()
    dropped = 0
    with pytest.raises(DetectorUnavailable, match="frame dropped"):
        detector.detect(highway_frame)
    dropped += 1
    restarter = in_thread(server.start)
    deadline = time.monotonic() + WAIT_S
    detected = None
    while detected is None and time.monotonic() < deadline:
        try:
            detected = detector.detect(highway_frame)
        except DetectorUnavailable:
            dropped += 1
            time.sleep(0.02)
    restarter.join(WAIT_S)
    assert detected is not None and len(detected) == want
    assert dropped >= 2
    assert health.states()[0] == "unavailable" and health.states()[-1] == "recovered"


def test_hung_server_times_out_and_recovers_when_it_answers_again(
    server: TritonServer, highway_frame
) -> None:
    detector = create_detector(YOLOX_ONNX, triton_cfg(server.grpc_url, timeout_s=1.0))
    health = Health()
    detector.on_health = health
    want = len(detector.detect(highway_frame))
    server.pause()
    result: list = []
    worker = in_thread(lambda: result.append(detector.detect(highway_frame)))
    try:
        unavailable = health.wait_for("unavailable")
        health.wait_for("reconnecting")
    finally:
        server.resume()
    worker.join(WAIT_S)
    assert "DEADLINE_EXCEEDED" in unavailable["reason"]
    assert len(result) == 1 and len(result[0]) == want
    assert health.states()[-1] == "recovered"


def test_gives_up_after_the_configured_attempts(server: TritonServer, highway_frame) -> None:
    detector = create_detector(YOLOX_ONNX, triton_cfg(server.grpc_url, reconnect_attempts=2))
    health = Health()
    detector.on_health = health
    detector.detect(highway_frame)
    server.kill()
    with pytest.raises(PerceptionError, match=r"gave up after 2 reconnect attempts") as failure:
        detector.detect(highway_frame)
    assert not isinstance(failure.value, DetectorUnavailable)  # the end, not one dropped frame
    assert health.states() == ["unavailable", "reconnecting", "reconnecting", "gave_up"]
    with pytest.raises(PerceptionError, match="gave up"):  # and it stays given up
        detector.detect(highway_frame)


def test_interrupt_ends_a_wait_for_the_server(server: TritonServer, highway_frame) -> None:
    detector: TritonDetector = create_detector(YOLOX_ONNX, triton_cfg(server.grpc_url))
    health = Health()
    detector.on_health = health
    server.kill()
    errors: list[BaseException] = []

    def detect() -> None:
        try:
            detector.detect(highway_frame)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    worker = in_thread(detect)
    health.wait_for("reconnecting")
    detector.interrupt()
    worker.join(WAIT_S)
    assert not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], DetectorUnavailable)


def test_replay_run_survives_a_server_restart_with_every_frame(server: TritonServer, tmp_path: Path) -> None:
    """`perception run` on a file (policy wait, the default): the server dies mid-run and comes back; the
    run ends normally with every frame processed."""
    clip = short_clip(tmp_path / "clip.mp4", 80)
    config = tmp_path / "triton.yaml"
    config.write_text(
        f"detector:\n  backend: triton\n  triton_url: {server.grpc_url}\n"
        "source:\n  backoff_initial_s: 0.2\n  backoff_max_s: 0.5\n"
    )
    run = Run(clip, tmp_path / "out", "--config", config)
    try:
        run.wait_for("20 frames", lambda events: sum(e["type"] == "frame" for e in events) >= 20)
        server.kill()
        time.sleep(1.0)  # an outage of at least a second, with reconnect attempts in it
        server.start()
        code, stderr = run.finish()
    finally:
        run.kill()
    assert code == 0, stderr
    events = read_events(tmp_path / "out" / "events.jsonl")
    frames = [e for e in events if e["type"] == "frame"]
    assert [f["frame"] for f in frames] == list(range(80))
    assert max(f["latency_ms"]["detect"] for f in frames) >= 1000  # one frame waited out the outage
    assert events[-1]["type"] == "end" and events[-1]["frames_processed"] == 80
    assert events[-1]["frames_detector_unavailable"] == 0  # a replay waits: nothing dropped
    assert np.mean([len(f["tracks"]) for f in frames]) >= 2
    # The outage is in the log, in order, and on stderr.
    states = [e["state"] for e in events if e["type"] == "detector"]
    assert states[0] == "unavailable" and states[-1] == "recovered" and "reconnecting" in states
    assert "detector grpc://" in stderr and "recovered" in stderr
