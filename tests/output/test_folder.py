"""The outputs of `perception run` survive anything: a browser-ready H.264 video that a `kill -9` leaves
playable, real timestamps, a full disk or a read-only folder named in one line, one run per folder, a log
that always ends. Real runs of the real command on the real clip; real filesystems (tmpfs) for the disk."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from perception.eval.mot import read_results
from tests.cli.test_cli import assert_one_line_error
from tests.conftest import HIGHWAY_CLIP, MOT17_13, YOLOX_ONNX
from tests.helpers import HIGHWAY_FRAMES, read_events, run_cli, video_frames, video_timestamps_s

KIND = "integration"

WAIT_S = 120  # deadline for anything waited on; generous, as CI machines are shared
HELD_FRAMES = 1  # the muxer writes a frame's fragment when the next frame arrives: what a kill may lose


def start_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "perception.cli", *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def frame_lines(events_path: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        return events_path.read_text().count('"type": "frame"')
    return 0


def wait_for_frames(proc: subprocess.Popen, events_path: Path, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while frame_lines(events_path) < count:
        assert proc.poll() is None, f"the run ended early: {proc.stderr.read() if proc.stderr else ''}"
        assert time.monotonic() < deadline, f"fewer than {count} frames after {WAIT_S} s"
        time.sleep(0.05)


def top_level_boxes(path: Path) -> list[bytes]:
    """The MP4 boxes at the top of a file, in order (ftyp, moov, moof, mdat, ...)."""
    data, kinds, pos = path.read_bytes(), [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        kinds.append(data[pos + 4 : pos + 8])
        if size < 8:
            break
        pos += size
    return kinds


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """A real small filesystem, mounted for the test (root or CAP_SYS_ADMIN needed; else skipped)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    try:
        cmd = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except OSError as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def cut_of_clip(path: Path, frames: int, timestamps_ms: list[int] | None = None) -> Path:
    """The first `frames` frames of the highway clip as H.264, at the given presentation times."""
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 960, 540, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.codec_context.options = {"preset": "ultrafast", "tune": "zerolatency"}
        for i in range(frames):
            ok, image = cap.read()
            assert ok
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = timestamps_ms[i] if timestamps_ms else i * 40
            frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cap.release()
    return path


# -- the video ------------------------------------------------------------------------------------------


def test_video_is_h264_in_a_fragmented_mp4_browsers_play(highway_run) -> None:
    proc, out = highway_run
    assert proc.returncode == 0, proc.stderr
    video = out / "annotated.mp4"
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.format.name == "yuv420p"
        assert (stream.width, stream.height) == (960, 540)
    boxes = top_level_boxes(video)
    assert boxes[:2] == [b"ftyp", b"moov"] and b"moof" in boxes  # header first, then fragments
    assert boxes.count(b"moof") == HIGHWAY_FRAMES  # one per frame
    # every frame at its own time: 25 fps, 40 ms apart, lasting as long as the clip
    assert video_timestamps_s(video) == pytest.approx([i * 0.04 for i in range(HIGHWAY_FRAMES)], abs=1e-4)


def test_tracks_file_is_motchallenge_and_matches_the_frame_lines(highway_run) -> None:
    _, out = highway_run
    rows = read_results(out / "tracks.txt")  # the reader `perception eval-mot` uses
    frames = [e for e in read_events(out / "events.jsonl") if e["type"] == "frame"]
    expected = [
        (f["frame"] + 1, t["id"], *t["box"], t["score"]) for f in frames for t in f["tracks"]
    ]  # frames counted from 1, as MOTChallenge does
    assert len(rows) == len(expected) > 0
    np.testing.assert_allclose(rows, np.array(expected, np.float64), atol=0.06)
    assert all(line.endswith(",-1,-1,-1") for line in (out / "tracks.txt").read_text().splitlines())


def test_killed_run_leaves_a_playable_video_and_frees_its_folder(tmp_path: Path) -> None:
    """`kill -9` mid-run: every logged line is whole, the video plays up to its last whole fragment (at
    most the frame held by the muxer short of the frames logged), and the folder's lock died with the
    process."""
    out = tmp_path / "out"
    proc = start_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", out)
    try:
        wait_for_frames(proc, out / "events.jsonl", 30)
    finally:
        proc.kill()
        proc.communicate(timeout=WAIT_S)
    events = read_events(out / "events.jsonl")  # every line parses: nothing half-written
    logged = len([e for e in events if e["type"] == "frame"])
    assert events[-1]["type"] == "frame"  # killed: no end line, and that is all that is missing
    decoded, size = video_frames(out / "annotated.mp4")
    assert size == (540, 960)
    assert logged - HELD_FRAMES - 1 <= decoded <= logged, (decoded, logged)  # -1: killed between sinks
    assert video_timestamps_s(out / "annotated.mp4") == pytest.approx([i * 0.04 for i in range(decoded)])
    again = run_cli("run", MOT17_13 / "img1", "--model", YOLOX_ONNX, "--out", out)
    assert again.returncode == 0, again.stderr


def test_variable_frame_rate_keeps_its_timing(tmp_path: Path) -> None:
    """Frames 40 ms and 120 ms apart in turn: the output shows each at its own time and lasts as long."""
    times_ms = [sum(40 if i % 2 == 0 else 120 for i in range(k)) for k in range(30)]
    clip = cut_of_clip(tmp_path / "vfr.mp4", 30, times_ms)
    out = tmp_path / "out"
    proc = run_cli("run", clip, "--model", YOLOX_ONNX, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert video_timestamps_s(out / "annotated.mp4") == pytest.approx([t / 1000 for t in times_ms], abs=1e-3)
    with av.open(str(clip)) as source, av.open(str(out / "annotated.mp4")) as result:
        assert result.duration == pytest.approx(source.duration, abs=1000)  # microseconds


# -- output failures: one line naming the file and the cause, everything written kept --------------------


@pytest.mark.parametrize("events_on", [True, False], ids=["with-events", "video-only"])
def test_full_disk_mid_run(tmp_path: Path, events_on: bool) -> None:
    with tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "out"
        config = tmp_path / "outputs.yaml"
        config.write_text(f"output:\n  events: {str(events_on).lower()}\n")
        proc = run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", out, "--config", config)
        assert_one_line_error(proc, f"cannot write {out}/", ": No space left on device", mid_run=True)
        decoded, _ = video_frames(out / "annotated.mp4")
        assert decoded > 0  # the frames written before the disk filled play
        assert decoded < HIGHWAY_FRAMES
        if events_on:
            events = read_events(out / "events.jsonl")  # line-complete
            logged = len([e for e in events if e["type"] == "frame"])
            assert 0 < logged < HIGHWAY_FRAMES and decoded <= logged + 1
            error, end = events[-2:]
            assert error["type"] == "error" and "No space left on device" in error["message"]
            assert end["type"] == "end" and end["status"] == "error"
        tracks = (out / "tracks.txt").read_text()
        assert tracks == "" or tracks.endswith("\n")  # whole lines only


@pytest.mark.unit
def test_read_only_output_fails_before_the_model_loads(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as ro:
        # the model does not exist: failing on the output first shows the output is checked before it
        proc = run_cli("run", HIGHWAY_CLIP, "--model", tmp_path / "absent.onnx", "--out", ro / "out")
        assert_one_line_error(proc, f"cannot create output folder {ro}/out: Read-only file system")
        proc = run_cli("run", HIGHWAY_CLIP, "--model", tmp_path / "absent.onnx", "--out", ro)
        assert_one_line_error(proc, f"cannot write {ro}: Read-only file system")


@pytest.mark.unit
def test_out_that_is_not_a_folder(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep me\n")
    absent = tmp_path / "absent.onnx"
    proc = run_cli("run", HIGHWAY_CLIP, "--model", absent, "--out", afile)
    assert_one_line_error(proc, f"cannot write {afile}: it is a file, not a folder")
    proc = run_cli("run", HIGHWAY_CLIP, "--model", absent, "--out", afile / "sub")
    assert_one_line_error(proc, f"cannot create output folder {afile}/sub: Not a directory")
    (tmp_path / "out" / "events.jsonl").mkdir(parents=True)
    proc = run_cli("run", HIGHWAY_CLIP, "--model", absent, "--out", tmp_path / "out")
    assert_one_line_error(proc, f"cannot write {tmp_path}/out/events.jsonl: it is a folder")
    assert afile.read_text() == "keep me\n"


@pytest.mark.unit
def test_a_failed_start_leaves_no_folder_behind(tmp_path: Path) -> None:
    proc = run_cli("run", tmp_path / "none.mp4", "--model", YOLOX_ONNX, "--out", tmp_path / "out")
    assert_one_line_error(proc, "source not found")
    assert not (tmp_path / "out").exists()


# -- one run per folder; a default folder per run ---------------------------------------------------------


def test_second_run_into_a_busy_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = start_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", out, "--mode", "realtime")
    try:
        wait_for_frames(first, out / "events.jsonl", 1)
        second = run_cli("run", MOT17_13 / "img1", "--model", YOLOX_ONNX, "--out", out)
        assert_one_line_error(second, f"output folder {out} is in use by another run (pid {first.pid})")
    finally:
        first.send_signal(signal.SIGINT)
        _, stderr = first.communicate(timeout=WAIT_S)
    assert first.returncode == 130, stderr
    events = read_events(out / "events.jsonl")
    assert {e["source"] for e in events if e["type"] == "start"} == {str(HIGHWAY_CLIP)}
    assert events[-1]["type"] == "end" and events[-1]["status"] == "interrupted"


def test_default_output_folder_is_numbered_like_ultralytics(tmp_path: Path) -> None:
    clip = tmp_path / "clip"
    clip.mkdir()
    for src in sorted((MOT17_13 / "img1").glob("*.jpg"))[:2]:
        shutil.copy(src, clip / src.name)
    runs = []
    for _ in range(2):
        proc = start_cli("run", clip, "--model", YOLOX_ONNX, "--fps", "25", cwd=tmp_path)
        _, stderr = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == 0, stderr
        runs.append(stderr)
    assert "-> runs/clip\n" in runs[0] and "-> runs/clip2\n" in runs[1]
    for name in ("clip", "clip2"):
        assert len(read_events(tmp_path / "runs" / name / "events.jsonl")) == 2 + 2  # start, 2 frames, end


def test_every_exit_path_ends_the_log(tmp_path: Path) -> None:
    """Ctrl-C as soon as the log is open (the start line is there): an end line, `interrupted`."""
    out = tmp_path / "out"
    proc = start_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", out)
    deadline = time.monotonic() + WAIT_S
    while not (out / "events.jsonl").exists() or not (out / "events.jsonl").read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    events = read_events(out / "events.jsonl")
    assert events[0]["type"] == "start" and events[-1]["type"] == "end"
    assert events[-1]["status"] == "interrupted"
    frames = len([e for e in events if e["type"] == "frame"])
    # the video holds every frame processed; a run stopped before the first leaves no empty file behind
    assert (
        video_frames(out / "annotated.mp4")[0] == frames if frames else not (out / "annotated.mp4").exists()
    )
