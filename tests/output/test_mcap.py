"""run.mcap (`output.mcap`): real runs read back with mcap's own readers: channels, schemas, a message per
frame on each channel stamped with the frame's source time and matching events.jsonl, the raw (undrawn)
image, and a run killed mid-way leaving a file readable up to its last chunk."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap.records import Message
from mcap.stream_reader import StreamReader

from perception.eval.synthetic import SCENARIOS, render
from tests.conftest import ASSETS, HIGHWAY_CLIP, YOLOX_ONNX
from tests.helpers import read_events, run_cli

KIND = "integration"
CONFIG = (
    "detector:\n  backend: onnxruntime\n  input_size: [256, 448]\n"
    "output:\n  mcap: true\n  mcap_image_hz: {hz}\n  mcap_image_max_width: 480\n  mcap_chunk_kib: 16\n"
)


def config(folder: Path, hz: float) -> Path:
    path = folder / "mcap.yaml"
    path.write_text(CONFIG.format(hz=hz))
    return path


def test_a_run_records_every_frame_on_every_channel(tmp_path: Path) -> None:
    video, _ = render(SCENARIOS["car_braking"], tmp_path, ASSETS)  # a caution and a warning
    out = tmp_path / "run"
    proc = run_cli("run", video, "--model", YOLOX_ONNX, "--config", config(tmp_path, 1000), "--out", out)
    assert proc.returncode == 0, proc.stderr
    frames = [e for e in read_events(out / "events.jsonl") if e["type"] == "frame"]
    with (out / "run.mcap").open("rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None
        channels = {c.topic: c for c in summary.channels.values()}
        stream = video.stem
        kinds = {"image": "CompressedImage", "annotations": "ImageAnnotations", "fcw": "Warning"}
        kinds |= {"latency": "Latency", "ego": "Ego"}
        assert sorted(channels) == sorted(f"/{stream}/{k}" for k in kinds)
        for kind, schema in kinds.items():
            channel = channels[f"/{stream}/{kind}"]
            assert channel.message_encoding == "json"
            assert summary.schemas[channel.schema_id].encoding == "jsonschema"
            assert summary.schemas[channel.schema_id].name.endswith(f".{schema}")
            assert summary.statistics.channel_message_counts[channel.id] == len(frames) == 126
        by_topic: dict[str, list] = {}
        for _schema, channel, message in reader.iter_messages(log_time_order=False):
            by_topic.setdefault(channel.topic.rsplit("/", 1)[1], []).append(message)
    stamps = [round(e["source_ts_s"] * 1e9) for e in frames]
    for kind, messages in by_topic.items():
        assert sorted(m.log_time for m in messages) == sorted(stamps), kind
    by_time = {round(e["source_ts_s"] * 1e9): e for e in frames}
    levels = []
    for message in by_topic["fcw"]:
        record, frame = json.loads(message.data), by_time[message.log_time]
        assert record["label"] == frame["fcw"] and record["tracks"] == len(frame["tracks"])
        levels.append(record["label"])
    assert {"caution", "warning"} <= set(levels)
    for message in by_topic["ego"]:  # the ego motion as the frame lines say it
        record, frame = json.loads(message.data), by_time[message.log_time]
        ego = {k: v for k, v in frame.items() if k.startswith("ego_") or k == "camera_motion_confidence"}
        assert record == ego and len(ego) == 6
    for message in by_topic["annotations"]:
        record, frame = json.loads(message.data), by_time[message.log_time]
        assert len(record["points"]) == len(record["texts"]) == len(frame["tracks"])
        for box, text, track in zip(record["points"], record["texts"], frame["tracks"], strict=True):
            x1, y1 = box["points"][0]["x"], box["points"][0]["y"]
            assert x1 == pytest.approx(track["box"][0] * 0.5, abs=0.2)  # 960 -> 480 wide
            assert y1 == pytest.approx(track["box"][1] * 0.5, abs=0.2)
            assert f"#{track['id']}" in text["text"]
    for message in by_topic["latency"]:
        assert set(json.loads(message.data)) >= {"detect", "track", "e2e"}
    first = min(by_topic["image"], key=lambda m: m.log_time)
    image = json.loads(first.data)
    assert image["format"] == "jpeg"
    recorded = cv2.imdecode(np.frombuffer(base64.b64decode(image["data"]), np.uint8), cv2.IMREAD_COLOR)
    raw = cv2.resize(cv2.VideoCapture(str(video)).read()[1], (480, 270), interpolation=cv2.INTER_AREA)
    assert recorded.shape == raw.shape
    assert np.abs(recorded.astype(int) - raw).mean() < 3  # the raw frame: no boxes or banner drawn on it


def test_images_follow_their_rate_in_scene_time(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--config", config(tmp_path, 5), "--out", out)
    assert proc.returncode == 0, proc.stderr
    with (out / "run.mcap").open("rb") as f:
        stamps = [
            m.log_time for _s, _c, m in make_reader(f).iter_messages(topics=[f"/{HIGHWAY_CLIP.stem}/image"])
        ]
    assert len(stamps) == 45  # 221 frames at 25 fps = 8.84 s, an image every 0.2 s
    assert all(b - a == pytest.approx(2e8, abs=1e6) for a, b in zip(stamps, stamps[1:], strict=False))


def test_a_killed_run_leaves_a_file_readable_up_to_its_last_chunk(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "run", str(HIGHWAY_CLIP), "--model", str(YOLOX_ONNX)]
        + ["--config", str(config(tmp_path, 25)), "--out", str(out), "--mode", "realtime"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        path = out / "run.mcap"
        while time.monotonic() < deadline and (not path.is_file() or path.stat().st_size < 300_000):
            assert proc.poll() is None
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    messages = []
    with path.open("rb") as f:
        try:
            for record in StreamReader(f).records:
                if isinstance(record, Message):
                    messages.append(record)
        except McapError:  # the cut: a chunk half written, or the summary never written
            pass
    assert len(messages) >= 20
    for message in messages:
        json.loads(message.data)  # every message read is whole
    with path.open("rb") as f, pytest.raises(McapError):
        make_reader(f).get_summary()  # no summary: the run never finished it
