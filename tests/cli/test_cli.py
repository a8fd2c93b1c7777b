"""End to end through the real command line: real clip, real model, real files written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import HIGHWAY_CLIP, MOT17_13, YOLOX_ONNX
from tests.helpers import (
    HIGHWAY_FRAMES,
    assert_one_line_error,
    box_iou,
    free_port,
    read_events,
    run_cli,
    video_frames,
    video_timestamps_s,
    wait_for_port,
)

KIND = "integration"


def test_highway_run_writes_every_frame(highway_run) -> None:
    proc, out = highway_run
    assert proc.returncode == 0, proc.stderr
    count, size = video_frames(out / "annotated.mp4")
    assert count == HIGHWAY_FRAMES
    assert size == (540, 960)
    events = read_events(out / "events.jsonl")
    frames = [e for e in events if e["type"] == "frame"]
    assert [f["frame"] for f in frames] == list(range(HIGHWAY_FRAMES))
    assert events[0]["type"] == "start" and events[-1]["type"] == "end"
    assert events[-1]["frames_processed"] == HIGHWAY_FRAMES and events[-1]["frames_dropped"] == 0


def test_highway_frame_lines_have_the_documented_fields(highway_run) -> None:
    _, out = highway_run
    frames = [e for e in read_events(out / "events.jsonl") if e["type"] == "frame"]
    capture = [f["capture_ns"] for f in frames]
    assert capture == sorted(capture) and len(set(capture)) == len(capture)
    assert [f["source_ts_s"] for f in frames[:3]] == pytest.approx([0.0, 0.04, 0.08])
    for f in frames:
        assert set(f["latency_ms"]) >= {"grab", "detect", "track", "ttc", "e2e"}
        assert all(v >= 0 for v in f["latency_ms"].values())
        for t in f["tracks"]:
            assert set(t) == {"id", "label", "class", "box", "score", "ttc_s", "dist_m", "in_path"} | {
                "lateral_m",
                "lateral_speed_mps",
                "truncated",
                "ttc_plausible",
                "lead",
                "cut_in",
            }
            assert not (t["lead"] or t["cut_in"]) or t["label"] in ("vehicle", "pedestrian", "cyclist")
            x1, y1, x2, y2 = t["box"]
            assert 0 <= x1 < x2 <= 960 and 0 <= y1 < y2 <= 540
            assert t["ttc_s"] is None or t["ttc_s"] > 0


def test_highway_vehicles_tracked_in_nearly_every_frame(highway_run) -> None:
    _, out = highway_run
    frames = [e for e in read_events(out / "events.jsonl") if e["type"] == "frame"]
    with_vehicle = sum(any(t["label"] == "vehicle" for t in f["tracks"]) for f in frames)
    assert with_vehicle >= 0.9 * len(frames)
    classes = Counter(t["class"] for f in frames for t in f["tracks"])
    assert classes.most_common(1)[0][0] == "car"
    assert "person" not in classes  # the clip has no pedestrians


def test_highway_no_collision_warning(highway_run) -> None:
    """Nobody closes in dangerously on this clip: any warning is a false alarm."""
    _, out = highway_run
    events = read_events(out / "events.jsonl")
    assert [e for e in events if e["type"] == "fcw"] == []
    frames = [e for e in events if e["type"] == "frame"]
    assert {f["fcw"] for f in frames} == {"none"}
    # the car ahead in the ego lane is in the path; distances are given for the tracked cars
    assert any(t["in_path"] for f in frames for t in f["tracks"])
    assert all(t["dist_m"] is None or 3 < t["dist_m"] < 300 for f in frames for t in f["tracks"])


def test_highway_cars_ahead_keep_their_ids(highway_run) -> None:
    """Follow each car ahead from frame 10 by box overlap alone (bridging short gaps) and require
    one ID for it throughout: any ID switch or lost-and-restarted track shows up as a second ID."""
    _, out = highway_run
    frames = [e for e in read_events(out / "events.jsonl") if e["type"] == "frame"]
    ahead = [
        t
        for t in frames[10]["tracks"]
        if t["label"] == "vehicle" and 240 < (t["box"][0] + t["box"][2]) / 2 < 720
    ]
    assert len(ahead) >= 3
    nearest = max(ahead, key=lambda t: t["box"][3])  # lowest bottom edge: closest on a flat road
    for car in ahead:
        last_box, last_frame, ids, seen = car["box"], 10, Counter(), 0
        for f in frames[11:]:
            if f["frame"] - last_frame > 12:  # gone for half a second: left the view
                break
            best = max(f["tracks"], key=lambda t: box_iou(t["box"], last_box), default=None)
            if best is not None and box_iou(best["box"], last_box) > 0.3:
                ids[best["id"]] += 1
                last_box, last_frame, seen = best["box"], f["frame"], seen + 1
        assert list(ids) == [car["id"]], f"car {car['id']} at {car['box']} continued as {dict(ids)}"
        if car is nearest:
            assert seen >= 150  # visible for most of the clip, so this is a real check


def test_mot17_image_folder(tmp_path: Path) -> None:
    img1 = MOT17_13 / "img1"
    n_images = len(list(img1.glob("*.jpg")))
    proc = run_cli("run", img1, "--model", YOLOX_ONNX, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = read_events(tmp_path / "events.jsonl")
    assert events[0]["fps"] == 25.0  # from seqinfo.ini beside img1/
    frames = [e for e in events if e["type"] == "frame"]
    assert len(frames) == n_images
    assert [f["source_ts_s"] for f in frames[:2]] == pytest.approx([0.0, 0.04])
    count, size = video_frames(tmp_path / "annotated.mp4")
    assert count == n_images and size == (1080, 1920)
    # A street seen from a car: confirmed pedestrians and vehicles once tracks are confirmed.
    labels = Counter(t["label"] for f in frames[2:] for t in f["tracks"])
    assert labels["pedestrian"] > 0 and labels["vehicle"] > 0
    ids_last = {t["id"] for t in frames[-1]["tracks"]}
    ids_third = {t["id"] for t in frames[2]["tracks"]}
    assert len(ids_last & ids_third) >= 3  # the same objects keep their IDs across the sequence


def test_realtime_replay_drops_frames_it_cannot_keep_up_with(tmp_path: Path) -> None:
    """A 2 s cut of the real clip, replayed at its own pace through a detector made too slow for
    25 fps by a large input: the newest frame wins, older ones are dropped and counted."""
    clip = tmp_path / "cut.mp4"
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (960, 540))
    for _ in range(50):
        ok, image = cap.read()
        assert ok
        writer.write(image)
    writer.release()
    config = tmp_path / "slow.yaml"
    config.write_text("detector:\n  input_size: [1280, 1280]\n")
    out = tmp_path / "out"
    proc = run_cli("run", clip, "--model", YOLOX_ONNX, "--out", out, "--config", config, "--mode", "realtime")
    assert proc.returncode == 0, proc.stderr
    events = read_events(out / "events.jsonl")
    end = events[-1]
    assert end["type"] == "end" and end["frames_grabbed"] == 50
    assert end["frames_dropped"] > 0
    assert end["frames_processed"] + end["frames_dropped"] == 50
    frames = [e for e in events if e["type"] == "frame"]
    indices = [f["frame"] for f in frames]
    assert indices == sorted(indices) and np.diff(indices).max() > 1
    # The video keeps the frames that were processed at their own times: with drops it still plays at the
    # speed it was filmed (each frame shows until the next one processed).
    shown = [f["source_ts_s"] - frames[0]["source_ts_s"] for f in frames]
    assert video_timestamps_s(out / "annotated.mp4") == pytest.approx(shown, abs=1e-3)


# -- bad input: one line on stderr, non-zero exit ------------------------------------------------------


def test_every_frame_stale_says_so(tmp_path: Path) -> None:
    """A live-paced run where every frame is too old by the time detection could start (an absurdly strict
    max_frame_age_s) ends with an error that says so, not that no frame could be read; outputs closed."""
    config = tmp_path / "strict.yaml"
    config.write_text("source:\n  max_frame_age_s: 0.000001\n")
    out = tmp_path / "out"
    proc = run_cli(
        "run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", out, "--config", config, "--mode", "realtime"
    )
    assert_one_line_error(
        proc, "none of the 221 frames", "were older than source.max_frame_age_s", mid_run=True
    )
    events = read_events(out / "events.jsonl")
    error, end = events[-2:]
    assert error["type"] == "error" and "none of the 221 frames" in error["message"]
    assert end["type"] == "end" and end["status"] == "error" and end["frames_processed"] == 0
    assert end["frames_stale"] > 0 and end["frames_stale"] + end["frames_dropped"] == 221


@pytest.mark.unit
def test_missing_source(tmp_path: Path) -> None:
    proc = run_cli("run", tmp_path / "nope.mp4", "--model", YOLOX_ONNX, "--out", tmp_path / "out")
    assert_one_line_error(proc, "source not found", "nope.mp4")


@pytest.mark.unit
def test_non_video_file(tmp_path: Path) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 100)
    proc = run_cli("run", fake, "--model", YOLOX_ONNX, "--out", tmp_path / "out")
    assert_one_line_error(proc, "cannot open video", "notes.mp4")


def test_wrong_model_path(tmp_path: Path) -> None:
    proc = run_cli("run", HIGHWAY_CLIP, "--model", tmp_path / "missing.onnx", "--out", tmp_path / "out")
    assert_one_line_error(proc, "model not found", "missing.onnx")


def test_model_that_is_not_onnx(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x00garbage" * 64)
    proc = run_cli("run", HIGHWAY_CLIP, "--model", bogus, "--out", tmp_path / "out")
    assert_one_line_error(proc, "cannot load model", "model.onnx")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("yaml_text", "needles"),
    [
        ("detector:\n  conf_treshold: 0.5\n", ["unknown config key", "detector.conf_treshold"]),
        ("tracker:\n  max_lost_s: long\n", ["tracker.max_lost_s", "number"]),
        ("detector:\n  conf_threshold: 1.5\n", ["detector.conf_threshold", "1.5"]),
        ("detector:\n  input_size: [400, 640]\n", ["detector.input_size", "multiples of 32"]),
        ("detector: [oops\n", ["invalid YAML", "line"]),
        ("source:\n  mode: turbo\n", ["source.mode", "turbo"]),
    ],
)
def test_malformed_config(tmp_path: Path, yaml_text: str, needles: list[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml_text)
    proc = run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", tmp_path / "out", "--config", config)
    assert_one_line_error(proc, "bad.yaml", *needles)


def test_unknown_class_in_taxonomy(tmp_path: Path) -> None:
    config = tmp_path / "classes.yaml"
    config.write_text("classes:\n  vehicle: [car, spaceship]\n")
    proc = run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", tmp_path / "out", "--config", config)
    assert_one_line_error(proc, "classes.vehicle", "spaceship")


# -- stopping early keeps everything produced so far -----------------------------------------------------


def test_sigint_stops_cleanly_with_outputs_finalised(tmp_path: Path) -> None:
    out = tmp_path / "out"
    events_path = out / "events.jsonl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perception.cli",
            "run",
            str(HIGHWAY_CLIP),
            "--model",
            str(YOLOX_ONNX),
            "--out",
            str(out),
            "--mode",
            "realtime",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if events_path.exists() and events_path.read_text().count('"type": "frame"') >= 20:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    events = read_events(events_path)  # every line parses: nothing half-written
    frames = [e for e in events if e["type"] == "frame"]
    assert 20 <= len(frames) < HIGHWAY_FRAMES
    assert events[-1]["type"] == "end" and events[-1]["interrupted"] is True
    count, _ = video_frames(out / "annotated.mp4")
    assert count == len(frames)  # the video was finalised and holds every frame logged


def test_unreadable_image_mid_sequence_keeps_frames_before_it(tmp_path: Path) -> None:
    folder = tmp_path / "img1"
    folder.mkdir()
    sources = sorted((MOT17_13 / "img1").glob("*.jpg"))[:4]
    for i, src in enumerate(sources):
        (folder / f"{i:06d}.jpg").write_bytes(src.read_bytes())
    (folder / f"{len(sources):06d}.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    proc = run_cli("run", folder, "--model", YOLOX_ONNX, "--out", out, "--fps", "25")
    assert_one_line_error(proc, "cannot read image", f"{len(sources):06d}.jpg", mid_run=True)
    events = read_events(out / "events.jsonl")
    assert [e["frame"] for e in events if e["type"] == "frame"] == list(range(len(sources)))
    assert events[-2]["type"] == "error" and "cannot read image" in events[-2]["message"]
    assert events[-1]["type"] == "end" and events[-1]["status"] == "error"  # every run ends with `end`
    assert video_frames(out / "annotated.mp4")[0] == len(sources)


# -- URL and camera sources ------------------------------------------------------------------------------


@pytest.fixture()
def http_server(tmp_path: Path):
    """A real HTTP server on loopback serving the real clip (its index is at the front, so it streams
    without range requests, which http.server does not answer). Ready once its port accepts a
    connection; nothing is read from its pipes, so a shell without PYTHONUNBUFFERED cannot hang it."""
    (tmp_path / "highway.mp4").symlink_to(HIGHWAY_CLIP)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, server, timeout_s=30)
        yield f"http://127.0.0.1:{port}/highway.mp4"
    finally:
        server.kill()
        server.wait(timeout=30)


def test_http_url_of_a_video_file_replays_every_frame(http_server: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli("run", http_server, "--model", YOLOX_ONNX, "--out", out)
    assert proc.returncode == 0, proc.stderr
    events = read_events(out / "events.jsonl")
    assert events[0]["source"] == http_server and events[0]["live"] is False
    assert len([e for e in events if e["type"] == "frame"]) == HIGHWAY_FRAMES
    assert video_frames(out / "annotated.mp4")[0] == HIGHWAY_FRAMES


@pytest.mark.unit
def test_unreachable_stream(tmp_path: Path) -> None:
    proc = run_cli("run", "rtsp://127.0.0.1:9/live", "--model", YOLOX_ONNX, "--out", tmp_path / "out")
    assert_one_line_error(proc, "cannot open stream", "rtsp://127.0.0.1:9/live")


@pytest.mark.unit
def test_missing_camera(tmp_path: Path) -> None:
    proc = run_cli("run", "7", "--model", YOLOX_ONNX, "--out", tmp_path / "out")
    assert_one_line_error(proc, "cannot open camera 7")
