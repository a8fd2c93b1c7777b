"""`--mqtt`: real runs publishing to a real mosquitto on loopback, collected by a real paho subscriber: the
topics and their payloads against events.jsonl, retained state for a late subscriber, the last will when
the run is killed, a broker restarted mid-run losing no warning, an unreachable broker that is no error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perception.core.config import load_config
from perception.core.mqtt_config import parse_mqtt_url
from perception.eval.synthetic import SCENARIOS, render
from perception.output.mqtt import Message, Outbox, topic_level
from tests.conftest import ASSETS, HIGHWAY_CLIP, YOLOX_ONNX
from tests.helpers import assert_one_line_error, free_port, read_events, run_cli
from tests.output.mqtt_broker import Broker, Subscriber

KIND = "integration"
SMALL = "detector:\n  backend: onnxruntime\n  input_size: [256, 448]\noutput:\n  video: false\n"


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def braking_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A car ahead braking hard: a caution and a warning within 5 s (126 frames)."""
    video, _ = render(SCENARIOS["car_braking"], tmp_path_factory.mktemp("synthetic"), ASSETS)
    return video


def small_config(folder: Path, mqtt: str = "") -> Path:
    path = folder / "small.yaml"
    path.write_text(SMALL + (f"  mqtt:\n{mqtt}" if mqtt else ""))
    return path


def start_run(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "run", *map(str, args), "--model", str(YOLOX_ONNX)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def fcw_records(out: Path) -> list[dict]:
    return [e for e in read_events(out / "events.jsonl") if e["type"] == "fcw"]


def states(sub: Subscriber, stream: str) -> list[dict]:
    return [json.loads(p) for p in sub.on(f"perception/{stream}/state")]


def test_a_run_publishes_its_topics_and_a_late_subscriber_gets_the_retained_state(
    broker: Broker, tmp_path: Path
) -> None:
    sub = Subscriber(broker.port, "perception/#")
    try:
        sub.wait_for(lambda: sub.client.is_connected(), 10, "the subscriber to connect")
        config = small_config(tmp_path, "    tracks_hz: 5.0\n")
        out = tmp_path / "run"
        proc = run_cli(
            "run",
            HIGHWAY_CLIP,
            "--model",
            YOLOX_ONNX,
            "--config",
            config,
            "--out",
            out,
            "--mqtt",
            broker.url,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr
        assert "0 dropped (outbox full), 0 undelivered" in proc.stderr
        stream = topic_level(HIGHWAY_CLIP.stem)
        sub.wait_for(lambda: sub.on("perception/available")[-1:] == [b"offline"], 10, "offline")
        assert sub.on("perception/available") == [b"online", b"offline"]
        seen = [s["state"] for s in states(sub, stream)]
        # in order; "starting" may be superseded by "running" if both waited for the connection together
        assert seen in (["starting", "running", "ended"], ["running", "ended"])
        end = states(sub, stream)[-1]
        assert end["status"] == "ok" and end["frames_processed"] == 221 and end["source"] == str(HIGHWAY_CLIP)
        fcw = [json.loads(p) for p in sub.on(f"perception/{stream}/fcw")]
        assert [{k: v for k, v in m.items() if k != "stream"} for m in fcw] == fcw_records(out)
        tracks = [json.loads(p) for p in sub.on(f"perception/{stream}/tracks")]
        elapsed_s = next(e for e in read_events(out / "events.jsonl") if e["type"] == "end")["elapsed_s"]
        assert 2 <= len(tracks) <= 5 * elapsed_s + 3  # rate-limited to tracks_hz
        frames = {e["frame"]: e for e in read_events(out / "events.jsonl") if e["type"] == "frame"}
        for summary in tracks:
            logged = frames[summary["frame"]]
            assert [t["id"] for t in summary["tracks"]] == [t["id"] for t in logged["tracks"]]
            assert [t["dist_m"] for t in summary["tracks"]] == [t["dist_m"] for t in logged["tracks"]]
            assert summary["fcw"] == logged["fcw"]
    finally:
        sub.close()
    late = Subscriber(broker.port, "perception/#")
    try:
        late.wait_for(lambda: len(late.messages) >= 2, 10, "the retained messages")
        assert sorted((t, r) for t, _, r in late.messages) == [
            ("perception/available", True),
            (f"perception/{stream}/state", True),
        ]
        assert late.on("perception/available") == [b"offline"]
        assert states(late, stream)[0]["state"] == "ended"
    finally:
        late.close()


def test_the_last_will_says_offline_when_the_run_is_killed(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port, "site/#")
    proc = start_run(
        HIGHWAY_CLIP,
        "--config",
        small_config(tmp_path),
        "--out",
        tmp_path / "run",
        "--mode",
        "realtime",
        "--mqtt",
        f"{broker.url}/site",
    )
    try:
        stream = topic_level(HIGHWAY_CLIP.stem)
        running = lambda: any(b'"running"' in p for p in sub.on(f"site/{stream}/state"))  # noqa: E731
        sub.wait_for(running, 60, "the run to start")
        assert sub.on("site/available") == [b"online"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        sub.wait_for(lambda: sub.on("site/available")[-1:] == [b"offline"], 20, "the last will")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        sub.close()


def test_a_broker_restarted_mid_run_gets_every_warning(
    broker: Broker, tmp_path: Path, braking_clip: Path
) -> None:
    """The broker goes away before the warnings and comes back after them: they wait in the outbox and are
    delivered (QoS 1) to a subscriber whose persistent session the broker kept."""
    sub = Subscriber(broker.port, "perception/#", client_id="fcw-listener")
    sub.wait_for(lambda: sub.client.is_connected(), 10, "the subscriber to connect")
    out = tmp_path / "run"
    proc = start_run(
        braking_clip,
        "--config",
        small_config(tmp_path),
        "--out",
        out,
        "--mode",
        "realtime",
        "--mqtt",
        broker.url,
    )
    try:
        sub.wait_for(lambda: b"online" in sub.on("perception/available"), 60, "the run to connect")
        deadline = time.monotonic() + 60
        while not (out / "events.jsonl").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.stop()  # before the first frame's results, long before the warnings (3.4 s into the clip)
        while time.monotonic() < deadline and '"level": "warning"' not in (out / "events.jsonl").read_text():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        assert any(r["level"] == "warning" for r in fcw_records(out))
        broker.start()
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert "0 dropped (outbox full), 0 undelivered" in stderr
        assert "connection lost" in stderr
        logged = fcw_records(out)
        stream = topic_level(braking_clip.stem)
        topic = f"perception/{stream}/fcw"
        sub.wait_for(lambda: len(sub.on(topic)) >= len(logged), 20, "every warning")
        received = [json.loads(p) for p in sub.on(topic)]
        assert [{k: v for k, v in m.items() if k != "stream"} for m in received] == logged
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        sub.close()


def test_an_unreachable_broker_is_no_error(tmp_path: Path, braking_clip: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli(
        "run",
        braking_clip,
        "--model",
        YOLOX_ONNX,
        "--config",
        small_config(tmp_path),
        "--out",
        out,
        "--mqtt",
        f"mqtt://127.0.0.1:{free_port()}",
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    records = fcw_records(out)
    assert records  # the warnings happened; they were queued, then lost with the run
    assert "0 messages delivered, 0 dropped (outbox full)" in proc.stderr


@pytest.mark.unit
@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("tcp://127.0.0.1:1883", "expected mqtt://HOST:PORT"),
        ("mqtt://127.0.0.1:99999", "port must be from 1 to 65535"),
        ("mqtt://user:secret@127.0.0.1:1883", "PERCEPTION_MQTT_USERNAME"),
        ("mqtt://127.0.0.1:1883/a/+/b", "no '+', '#'"),
        ("mqtt://", "expected mqtt://HOST:PORT"),
    ],
)
def test_a_malformed_url_is_one_line(tmp_path: Path, url: str, needle: str) -> None:
    proc = run_cli("run", tmp_path / "missing.mp4", "--mqtt", url, "--out", tmp_path / "out", timeout=60)
    assert_one_line_error(proc, "--mqtt: ", needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.unit
def test_urls_and_config() -> None:
    assert parse_mqtt_url("mqtt://broker.local") == ("broker.local", 1883, False, "")
    assert parse_mqtt_url("mqtts://[::1]:8884/cars/7/") == ("::1", 8884, True, "cars/7")
    cfg = load_config(overrides={"output": {"mqtt": {"url": "mqtts://h/fleet", "prefix": "x"}}}).output.mqtt
    assert cfg.target == ("h", 8883, True, "fleet")
    assert load_config(overrides={"output": {"mqtt": {"url": "mqtt://h"}}}).output.mqtt.target.prefix == (
        "perception"
    )
    assert topic_level("a/b+c#") == "a_b_c_"


@pytest.mark.unit
def test_a_full_outbox_drops_the_oldest_non_warning_first() -> None:
    box = Outbox(3)
    box.put(Message("p/s/fcw", b"w1", 1, warning=True))
    box.put(Message("p/s/tracks", b"t1", 0, key="p/s/tracks"))
    box.put(Message("p/s/state", b"s1", 1, retain=True, key="p/s/state"))
    box.put(Message("p/s/tracks", b"t2", 0, key="p/s/tracks"))  # replaces t1: no loss
    assert [m.payload for m in box.items] == [b"w1", b"s1", b"t2"] and box.dropped == 0
    box.put(Message("p/s/fcw", b"w2", 1, warning=True))  # full: s1 goes, the warning stays
    assert [m.payload for m in box.items] == [b"w1", b"t2", b"w2"] and box.dropped == 1
    box.put(Message("p/s/fcw", b"w3", 1, warning=True))
    box.put(Message("p/s/fcw", b"w4", 1, warning=True))  # only warnings left: the oldest goes
    assert [m.payload for m in box.items] == [b"w2", b"w3", b"w4"] and box.dropped == 3
