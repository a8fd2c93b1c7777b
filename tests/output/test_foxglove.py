"""`--foxglove`: a real run serving its channels over Foxglove's WebSocket protocol, watched by a real
WebSocket client that subscribes and receives the frames' images and annotations (checked against the run's
events.jsonl); a port in use is one line."""

from __future__ import annotations

import base64
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import websocket

from tests.conftest import HIGHWAY_CLIP, YOLOX_ONNX
from tests.helpers import assert_one_line_error, free_port, read_events, run_cli, wait_for_port

KIND = "integration"
SMALL = "detector:\n  backend: onnxruntime\n  input_size: [256, 448]\noutput:\n  video: false\n"
KINDS = {"image": "foxglove.CompressedImage", "annotations": "foxglove.ImageAnnotations"}
KINDS |= {"fcw": "perception.Warning", "latency": "perception.Latency", "ego": "perception.Ego"}


def test_a_client_subscribes_and_receives_annotated_frames(tmp_path: Path) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(SMALL)
    port, out = free_port(), tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "run", str(HIGHWAY_CLIP), "--model", str(YOLOX_ONNX)]
        + [
            "--config",
            str(config),
            "--out",
            str(out),
            "--mode",
            "realtime",
            "--foxglove",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    received: dict[str, list[tuple[int, dict]]] = {kind: [] for kind in KINDS}
    try:
        wait_for_port(port, proc, timeout_s=60)
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{port}", subprotocols=["foxglove.sdk.v1"], timeout=10
        )
        try:
            channels: dict[int, dict] = {}
            while len(channels) < len(KINDS):
                message = ws.recv()
                if isinstance(message, str) and json.loads(message)["op"] == "advertise":
                    channels |= {c["id"]: c for c in json.loads(message)["channels"]}
            stream = HIGHWAY_CLIP.stem
            by_kind = {c["topic"].rsplit("/", 1)[1]: c for c in channels.values()}
            assert {c["topic"] for c in channels.values()} == {f"/{stream}/{kind}" for kind in KINDS}
            for kind, schema in KINDS.items():
                assert (by_kind[kind]["schemaName"], by_kind[kind]["encoding"]) == (schema, "json")
            subscriptions = {i: kind for i, kind in enumerate(KINDS)}
            ws.send(
                json.dumps(
                    {
                        "op": "subscribe",
                        "subscriptions": [
                            {"id": i, "channelId": by_kind[k]["id"]} for i, k in subscriptions.items()
                        ],
                    }
                )
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                len(received["image"]) < 3 or len(received["annotations"]) < 20
            ):
                try:
                    message = ws.recv()
                except websocket.WebSocketException:  # the run ended: check what arrived
                    break
                if isinstance(message, bytes):
                    opcode, subscription, log_time = struct.unpack_from("<BIQ", message)
                    assert opcode == 1
                    received[subscriptions[subscription]].append((log_time, json.loads(message[13:])))
        finally:
            ws.close()
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert f"foxglove live on ws://127.0.0.1:{port}" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert len(received["image"]) >= 3 and len(received["annotations"]) >= 20
    frames = {
        round(e["source_ts_s"] * 1e9): e for e in read_events(out / "events.jsonl") if e["type"] == "frame"
    }
    for log_time, record in received["annotations"]:
        tracks = frames[log_time]["tracks"]
        assert len(record["points"]) == len(tracks)
        assert [t["text"].split("#")[1].split()[0] for t in record["texts"]] == [str(t["id"]) for t in tracks]
    assert any(record["points"] for _, record in received["annotations"])
    for log_time, record in received["fcw"]:
        assert record["label"] == frames[log_time]["fcw"]
    log_time, image = received["image"][-1]
    assert log_time in frames and image["format"] == "jpeg"
    jpeg = np.frombuffer(base64.b64decode(image["data"]), np.uint8)
    assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape == (360, 640, 3)  # 960x540 scaled to 640 wide


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli(
            "run",
            HIGHWAY_CLIP,
            "--model",
            YOLOX_ONNX,
            "--foxglove",
            f"127.0.0.1:{port}",
            "--out",
            tmp_path / "o",
        )
    assert_one_line_error(proc, f"--foxglove 127.0.0.1:{port}: ")
