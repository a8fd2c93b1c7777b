"""Live sources and bad input, end to end: a real RTSP server on loopback that is killed, paused and
restarted under a running `perception run`; truncated and corrupt copies of the real clip; signals.

The RTSP server is GStreamer's (tests/rtsp_server.py, run by Debian's python3 for its `gi` bindings);
`.ci/run` installs it. Every wait has a deadline, and every process started here is killed on teardown.
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perception.core.config import load_config
from perception.core.errors import PerceptionError
from perception.core.events import ErrorEvent, SourceEvent, SourceState
from perception.detect import create_detector
from perception.eval.media import decodable_frames
from perception.output.sinks import EventLog
from perception.runtime.pipeline import Pipeline, Stream
from perception.runtime.processor import build_processor
from perception.sources.files import open_source
from perception.sources.live import StreamClock, backoff_delay_s
from tests.conftest import HIGHWAY_CLIP, REPO, YOLOX_ONNX
from tests.helpers import (
    HIGHWAY_FRAMES,
    WAIT_S,
    Run,
    assert_one_line_error,
    frames_of,
    health,
    read_events,
    run_cli,
    video_frames,
    wait_ready,
    write_config,
)

KIND = "unit"


SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, the one python3-gi is built for
RTSP_SERVER = REPO / "tests" / "rtsp_server.py"


def _gstreamer_rtsp_missing() -> str | None:
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
        "missing = [e for e in ('qtdemux', 'h264parse', 'rtph264pay', 'openh264dec', 'openh264enc') "
        "if Gst.ElementFactory.find(e) is None]; print(' '.join(missing))"
    )
    try:
        proc = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{SYSTEM_PYTHON} cannot run: {exc}"
    if proc.returncode != 0:
        return "GStreamer RTSP server bindings missing (python3-gi, gir1.2-gst-rtsp-server-1.0)"
    if proc.stdout.strip():
        return f"GStreamer elements missing: {proc.stdout.strip()} (gstreamer1.0-plugins-base/-good/-bad)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RtspServer:
    """The real clip served at rtsp://127.0.0.1:PORT/live, in a process that can be killed,
    paused and started again on the same port (optionally at another resolution)."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}/live"
        self.log = log
        self.proc: subprocess.Popen[str] | None = None

    def start(self, size: str | None = None) -> None:
        cmd = [SYSTEM_PYTHON, str(RTSP_SERVER), str(HIGHWAY_CLIP), "--port", str(self.port)]
        cmd += ["--size", size] if size else []
        with self.log.open("a") as log:
            self.proc = proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        ready = wait_ready(proc, WAIT_S)
        if not ready.startswith("ready"):
            self.kill()
            raise RuntimeError(f"RTSP server did not start: {ready} {self.log.read_text()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused process must run to die
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)
        self.proc = None

    def pause(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.proc.send_signal(signal.SIGCONT)


@contextlib.contextmanager
def rtsp_server(log: Path) -> Iterator[RtspServer]:
    missing = _gstreamer_rtsp_missing()
    if missing:
        pytest.skip(f"no RTSP test server: {missing}; .ci/run installs it")
    server = RtspServer(free_port(), log)
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture()
def rtsp(tmp_path: Path) -> Iterator[RtspServer]:
    with rtsp_server(tmp_path / "rtsp_server.log") as server:
        yield server


# -- a stream that drops, comes back (at another resolution), and finally never returns -----------------

# Every outage lasts at least the first backoff wait (0.5 s - 25 % jitter), longer than max_lost_s.
OUTAGE_CONFIG = """
source:
  reconnect_attempts: 6
  backoff_initial_s: 0.5
  backoff_max_s: 1.0
tracker:
  max_lost_s: 0.3
"""


@pytest.fixture(scope="module")
def outage_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, list[dict], Path]]:
    """Stream; kill the server; restart it alike; kill it; restart it at 640x360; kill it for good.
    Each restart waits until the pipeline is reconnecting, and each phase until frames come through."""
    tmp_path = tmp_path_factory.mktemp("outage")
    with rtsp_server(tmp_path / "rtsp_server.log") as rtsp:
        yield _outage_scenario(rtsp, tmp_path)


def _outage_scenario(rtsp: RtspServer, tmp_path: Path) -> tuple[int, str, list[dict], Path]:
    out = tmp_path / "out"
    rtsp.start()
    run = Run(rtsp.url, out, "--config", write_config(tmp_path / "live.yaml", OUTAGE_CONFIG))
    try:
        for size in (None, "640x360", "final"):
            n_frames = len(frames_of(run.events()))
            run.wait_for("frames", lambda ev, n=n_frames: len(frames_of(ev)) >= n + 10)
            n_recovered = len(health(run.events(), "recovered"))
            n_reconnecting = len(health(run.events(), "reconnecting"))
            rtsp.kill()
            if size == "final":
                break
            run.wait_for("reconnecting", lambda ev, n=n_reconnecting: len(health(ev, "reconnecting")) > n)
            rtsp.start(size=size)
            run.wait_for("recovery", lambda ev, n=n_recovered: len(health(ev, "recovered")) > n)
        code, stderr = run.finish()
    finally:
        run.kill()
    return code, stderr, read_events(out / "events.jsonl"), out


@pytest.mark.live
def test_stream_survives_server_restarts_and_gives_up_cleanly(outage_run) -> None:
    code, stderr, events, _ = outage_run
    assert code == 0, stderr  # giving up on a stream ends the run normally
    assert "error" not in stderr and "Traceback" not in stderr
    assert events[0]["type"] == "start" and events[0]["live"] is True
    assert events[-1]["type"] == "end" and events[-1]["interrupted"] is False
    states = [e["state"] for e in health(events)]
    assert states[0] == "connected" and states[-1] == "gave_up"
    assert states.count("recovered") >= 2
    # Every outage is reported in order: stalled, then one or more reconnecting, then recovered/gave_up.
    for i, state in enumerate(states):
        if state in ("recovered", "gave_up"):
            assert states[i - 1] == "reconnecting"
        if state == "reconnecting":
            assert states[i - 1] in ("stalled", "reconnecting")
    gave_up = health(events, "gave_up")[0]
    attempts = [e["attempt"] for e in health(events, "reconnecting")[-gave_up["attempts"] :]]
    assert attempts == list(range(1, 7)) and gave_up["attempts"] == 6  # reconnect_attempts
    assert all(e["max_attempts"] == 6 for e in health(events, "reconnecting"))
    # Health lines and frame lines share one file: every line parsed, nothing interleaved.
    assert "stalled" in stderr and "gave_up" in stderr


@pytest.mark.live
def test_stream_goes_on_after_each_recovery_at_the_new_resolution(outage_run) -> None:
    _, _, events, out = outage_run
    frames = frames_of(events)
    recovered = health(events, "recovered")
    resized = [e for e in recovered if e["resized"]]
    assert len(resized) == 1 and (resized[0]["width"], resized[0]["height"]) == (640, 360)
    assert health(events, "connected")[0]["width"] == 960
    changed_ns = resized[0]["at_ns"]
    before = [f for f in frames if f["capture_ns"] < changed_ns]
    after = [f for f in frames if f["capture_ns"] >= changed_ns]
    assert len(before) >= 20 and len(after) >= 10
    # Boxes after the change are in the new frame's pixels.
    for f in after:
        for t in f["tracks"]:
            assert 0 <= t["box"][0] < t["box"][2] <= 640 and 0 <= t["box"][1] < t["box"][3] <= 360
    assert any(f["tracks"] for f in after)  # the detector and tracker kept working on the smaller frames
    # The annotated video keeps its first size and holds every frame logged.
    assert video_frames(out / "annotated.mp4") == (len(frames), (540, 960))
    indices = [f["frame"] for f in frames]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)


@pytest.mark.live
def test_tracks_expire_across_an_outage(outage_run) -> None:
    """Each gap is longer than tracker.max_lost_s, so no track continues through it; after the
    resolution change tracking restarts, and IDs still never repeat across the run."""
    _, _, events, _ = outage_run
    frames = frames_of(events)
    stalls = [e["at_ns"] for e in health(events, "stalled")]
    segments: list[list[dict]] = [[]]
    for f in frames:
        while stalls and f["capture_ns"] > stalls[0]:
            stalls.pop(0)
            segments.append([])
        segments[-1].append(f)
    segments = [s for s in segments if s]
    assert len(segments) >= 3
    for earlier, later in zip(segments[:-1], segments[1:], strict=True):
        assert later[0]["source_ts_s"] - earlier[-1]["source_ts_s"] > 0.3  # the gap, in scene time
        ids_before = {t["id"] for f in earlier for t in f["tracks"]}
        ids_after = {t["id"] for f in later for t in f["tracks"]}
        if ids_before and ids_after:
            assert min(ids_after) > max(ids_before), (ids_before, ids_after)  # new tracks, new IDs


@pytest.mark.live
def test_stalled_stream_is_noticed_by_the_read_timeout_and_recovers(rtsp: RtspServer, tmp_path: Path) -> None:
    """A server that stops sending without closing the connection (paused with SIGSTOP): the read
    timeout notices it, reopening times out while it is paused, and the stream comes back after."""
    config = write_config(tmp_path / "stall.yaml", "source:\n  open_timeout_s: 1.0\n  backoff_max_s: 1.0\n")
    out = tmp_path / "out"
    rtsp.start()
    run = Run(rtsp.url, out, "--config", config)
    try:
        run.wait_for("frames", lambda ev: len(frames_of(ev)) >= 5)
        rtsp.pause()
        run.wait_for("a failed reopen", lambda ev: len(health(ev, "reconnecting")) >= 2)
        rtsp.resume()
        events = run.wait_for(
            "frames after recovery",
            lambda ev: (
                bool(health(ev, "recovered"))
                and len([f for f in frames_of(ev) if f["capture_ns"] >= health(ev, "recovered")[0]["at_ns"]])
                >= 5
            ),
        )
        code, stderr = run.finish(signal.SIGTERM)
    finally:
        run.kill()
    assert code == 143, stderr
    stalled = health(events, "stalled")[0]
    assert stalled["reason"] == "no frame within read timeout"
    assert stalled["since_last_frame_s"] >= 1.0  # read_timeout_s, the default
    recovered = health(events, "recovered")[0]
    assert recovered["attempts"] >= 2 and recovered["resized"] is False
    events = read_events(out / "events.jsonl")
    assert events[-1]["type"] == "end" and events[-1]["interrupted"] is True
    assert video_frames(out / "annotated.mp4")[0] == len(frames_of(events))
    for f in frames_of(events):
        assert f["latency_ms"]["backlog"] >= 0 and "grab" not in f["latency_ms"]


def test_unreachable_stream_after_the_configured_attempts(tmp_path: Path) -> None:
    config = write_config(tmp_path / "two.yaml", "source:\n  connect_attempts: 2\n  backoff_initial_s: 0.1\n")
    url = f"rtsp://127.0.0.1:{free_port()}/live"
    proc = run_cli("run", url, "--model", YOLOX_ONNX, "--out", tmp_path / "out", "--config", config)
    assert_one_line_error(proc, "cannot open stream", url, "after 2 attempts")
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(Path("/dev/video0").exists(), reason="this machine has a camera 0")
def test_no_camera_zero(tmp_path: Path) -> None:
    proc = run_cli("run", "0", "--model", YOLOX_ONNX, "--out", tmp_path / "out")
    assert_one_line_error(proc, "cannot open camera 0")


# -- truncated and corrupt files: frames before the damage are kept --------------------------------------


def assert_processed_up_to_damage(clip: Path, out: Path) -> None:
    readable = decodable_frames(clip)
    assert 0 < readable < HIGHWAY_FRAMES
    small = write_config(out.parent / "small.yaml", "detector:\n  input_size: [256, 448]\n")  # quicker
    proc = run_cli("run", clip, "--model", YOLOX_ONNX, "--out", out, "--config", small)
    assert_one_line_error(
        proc,
        f"video {clip} ended after {readable} of {HIGHWAY_FRAMES} frames: truncated or corrupt",
        mid_run=True,
    )
    events = read_events(out / "events.jsonl")
    assert [f["frame"] for f in frames_of(events)] == list(range(readable))
    assert events[-2]["type"] == "error" and "truncated or corrupt" in events[-2]["message"]
    assert events[-1]["type"] == "end" and events[-1]["status"] == "error"
    assert video_frames(out / "annotated.mp4") == (readable, (540, 960))


@pytest.mark.integration
def test_truncated_video_keeps_every_frame_before_the_cut(tmp_path: Path) -> None:
    data = HIGHWAY_CLIP.read_bytes()
    clip = tmp_path / "half.mp4"
    clip.write_bytes(data[: len(data) // 2])
    assert_processed_up_to_damage(clip, tmp_path / "out")


@pytest.mark.integration
def test_corrupt_video_keeps_every_frame_before_the_damage(tmp_path: Path) -> None:
    data = bytearray(HIGHWAY_CLIP.read_bytes())
    start = len(data) // 8
    data[start : start + 100_000] = random.Random(0).randbytes(100_000)  # noise over ~10 frames
    clip = tmp_path / "corrupt.mp4"
    clip.write_bytes(bytes(data))
    assert_processed_up_to_damage(clip, tmp_path / "out")


# -- wrong model, invalid settings -----------------------------------------------------------------------


@pytest.mark.integration
def test_model_with_an_unexpected_output_layout(tmp_path: Path) -> None:
    """A valid ONNX graph whose output is neither YOLOX's N x A x (5+nc) nor Ultralytics' 1 x (4+nc) x A."""
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["constant", "nothing"], ["output0"]),
        ],
        "odd_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 7, 3])],
        initializer=[
            numpy_helper.from_array(np.zeros((1, 7, 3), np.float32), "constant"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "odd.onnx"
    onnx.save(model, str(path))
    proc = run_cli("run", HIGHWAY_CLIP, "--model", path, "--out", tmp_path / "out")
    assert_one_line_error(proc, "unsupported model output shape [1, 7, 3]")


@pytest.mark.parametrize(
    ("yaml_text", "needles"),
    [
        ("source:\n  reconect_attempts: 3\n", ["unknown config key", "source.reconect_attempts"]),
        ("source:\n  reconnect_attempts: sometimes\n", ["source.reconnect_attempts", "'forever'"]),
        ("source:\n  reconnect_attempts: 0\n", ["source.reconnect_attempts", "got 0"]),
        ("source:\n  read_timeout_s: -1\n", ["source.read_timeout_s", "greater than 0"]),
        ("source:\n  rtsp_transport: http\n", ["source.rtsp_transport", "'http'"]),
        ("source:\n  backoff_jitter: 1.5\n", ["source.backoff_jitter", "1.5"]),
        ("source:\n  backoff_max_s: 0.1\n", ["backoff_max_s", "backoff_initial_s"]),
        ("source:\n  max_frame_age_s: soon\n", ["source.max_frame_age_s", "number"]),
    ],
)
def test_invalid_stream_settings_are_refused_naming_the_key(
    tmp_path: Path, yaml_text: str, needles: list[str]
) -> None:
    config = write_config(tmp_path / "bad.yaml", yaml_text)
    with pytest.raises(PerceptionError) as info:
        load_config(config)
    for needle in needles:
        assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_reconnect_attempts_forever_or_a_number(tmp_path: Path) -> None:
    assert load_config().source.reconnect_attempts == "forever"
    config = write_config(tmp_path / "five.yaml", "source:\n  reconnect_attempts: 5\n")
    assert load_config(config).source.reconnect_attempts == 5


# -- signals ----------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_sigterm_stops_cleanly_with_outputs_finalised(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run = Run(HIGHWAY_CLIP, out, "--mode", "realtime")
    try:
        run.wait_for("20 frames", lambda ev: len(frames_of(ev)) >= 20)
        code, stderr = run.finish(signal.SIGTERM)
    finally:
        run.kill()
    assert code == 143, stderr
    assert "Traceback" not in stderr and "error" not in stderr
    events = read_events(out / "events.jsonl")  # every line parses: nothing half-written
    frames = frames_of(events)
    assert 20 <= len(frames) < HIGHWAY_FRAMES
    assert events[-1]["type"] == "end" and events[-1]["interrupted"] is True
    assert video_frames(out / "annotated.mp4")[0] == len(frames)


# -- parts, on real data -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_stale_frames_are_dropped_and_counted_apart(tmp_path: Path) -> None:
    """A live (realtime) replay with a frame-age limit no frame can meet: every frame that reaches
    detection is dropped as stale, and the counts add up to the frames grabbed."""
    clip = tmp_path / "cut.mp4"
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (960, 540))
    for _ in range(25):
        writer.write(cap.read()[1])
    writer.release()
    config = write_config(tmp_path / "age.yaml", "source:\n  mode: realtime\n  max_frame_age_s: 0.000001\n")
    cfg = load_config(config)
    source = open_source(str(clip), cfg.source)
    summary = Pipeline(
        create_detector(YOLOX_ONNX, cfg), cfg, [Stream(source, build_processor(cfg), [])]
    ).run()
    assert summary.frames_grabbed == 25
    assert summary.frames_stale > 0 and summary.frames_processed == 0
    assert summary.frames_stale + summary.frames_dropped == summary.frames_grabbed


def test_stream_clock_measures_backlog_from_timestamps() -> None:
    clock = StreamClock()
    # Keeping up: frames arrive 40 ms apart with pts 40 ms apart, whatever the constant transit time.
    assert [clock.backlog_ms(int((100 + 40 * i) * 1e6), 40.0 * i) for i in range(5)] == [0.0] * 5
    # Falling behind: arrivals slip 10 ms per frame against the stream's clock.
    slipping = [clock.backlog_ms(int((300 + 50 * i) * 1e6), 200.0 + 40 * i) for i in range(4)]
    assert slipping == pytest.approx([0.0, 10.0, 20.0, 30.0])
    # A restart (pts back to 0) makes that frame the new reference.
    assert clock.backlog_ms(int(10_000 * 1e6), 0.0) is None
    assert clock.backlog_ms(int(10_040 * 1e6), 40.0) == pytest.approx(0.0)
    # A source without timestamps: unknown, never a growing number.
    blind = StreamClock()
    assert [blind.backlog_ms(int(i * 1e9), 0.0) for i in range(3)][1:] == [None, None]


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter() -> None:
    cfg = load_config().source.model_copy(
        update={"backoff_initial_s": 0.5, "backoff_max_s": 4.0, "backoff_jitter": 0.25}
    )
    rng = random.Random(1)
    for attempt, base in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (50, 4.0)]:
        delays = [backoff_delay_s(attempt, cfg, rng) for _ in range(200)]
        assert base * 0.75 <= min(delays) and max(delays) <= base * 1.25
        assert max(delays) - min(delays) > base * 0.3  # jittered, not in lockstep
    no_jitter = cfg.model_copy(update={"backoff_jitter": 0.0})
    assert [backoff_delay_s(a, no_jitter, rng) for a in (1, 2, 3)] == [0.5, 1.0, 2.0]


def test_event_log_lines_stay_whole_with_two_writers(tmp_path: Path) -> None:
    """The grab thread (source health) and the sink thread (errors, frames) write the same file."""
    log = EventLog(tmp_path / "events.jsonl", ["vehicle"], ["car"])
    payload = "x" * 5000  # long lines, so unsynchronised writes would interleave

    def write(kind: str) -> None:
        for i in range(300):
            if kind == "source":
                log.event(SourceEvent(SourceState.STALLED, "cam", i, reason=payload, frames=i))
            else:
                log.event(ErrorEvent(stage=payload, message=str(i)))

    threads = [threading.Thread(target=write, args=(k,)) for k in ("source", "error")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    log.event(ErrorEvent("late", "0"))  # after close: ignored, not an error
    events = read_events(tmp_path / "events.jsonl")
    assert len(events) == 600
    assert [e["frames"] for e in events if e["type"] == "source"] == list(range(300))
    assert [int(e["message"]) for e in events if e["type"] == "error"] == list(range(300))


# -- several streams in one process: one dead camera never holds the others back -------------------------

TWO_STREAMS_CONFIG = """
source:
  reconnect_attempts: 3
  backoff_initial_s: 0.5
  backoff_max_s: 1.0
"""


@pytest.mark.live
def test_a_dead_stream_never_holds_the_others_back(tmp_path: Path) -> None:
    """Two RTSP streams share one detector; one server dies and stays dead: the other keeps delivering
    processed frames all through the first one's outage, and each ends with its own `end` line."""
    with rtsp_server(tmp_path / "a.log") as a, rtsp_server(tmp_path / "b.log") as b:
        a.start()
        b.start()
        config = write_config(tmp_path / "two.yaml", TWO_STREAMS_CONFIG)
        out = tmp_path / "out"
        run = Run([a.url, b.url], out, "--config", config)
        name_a, name_b = "live", "live-2"  # both servers serve /live
        run.events_path, b_log = out / name_a / "events.jsonl", out / name_b / "events.jsonl"
        try:
            run.wait_for("frames on a", lambda ev: len(frames_of(ev)) >= 10)
            run.wait_for("frames on b", lambda ev: len(frames_of(ev)) >= 10, b_log)
            a.kill()
            stalled = run.wait_for("a stalled", lambda ev: len(health(ev, "stalled")) > 0)
            stalled_ns = health(stalled, "stalled")[0]["at_ns"]
            during = run.wait_for(
                "frames on b while a is down",
                lambda ev: len([f for f in frames_of(ev) if f["capture_ns"] > stalled_ns]) >= 50,
                b_log,
            )
            assert health(run.events(), "recovered") == []  # a was down all along
            assert health(during, "stalled") == []
            b.kill()
            code, stderr = run.finish()
        finally:
            run.kill()
    assert code == 0, stderr  # giving up on streams ends the run normally
    for name in (name_a, name_b):
        events = read_events(out / name / "events.jsonl")
        assert events[0]["type"] == "start" and events[0]["stream"] == name
        assert health(events, "gave_up") and events[-1]["type"] == "end" and events[-1]["status"] == "ok"
    assert f"{name_a}: source stalled" in stderr and "all 2 streams" in stderr
