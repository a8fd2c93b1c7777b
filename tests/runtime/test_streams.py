"""Several streams in one run: their names, the streams file, and real runs sharing one detector."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from perception.core.errors import PerceptionError
from perception.runtime.streams import read_streams_file, stream_name, stream_specs
from tests.conftest import MOT17_13, YOLOX_ONNX
from tests.helpers import assert_one_line_error, read_events, run_cli, video_frames

KIND = "unit"

MOT17_09 = MOT17_13.parent / "MOT17-09-FRCNN"


@pytest.mark.parametrize(
    "source, name",
    [
        ("videos/highway_960x540_25fps.mp4", "highway_960x540_25fps"),
        ("../mot/MOT17-13-FRCNN/img1", "MOT17-13-FRCNN"),
        ("clips/day one", "day_one"),
        ("0", "camera0"),
        ("rtsp://10.0.0.5:8554/front", "front"),
        ("http://cam.local/stream.mjpg", "stream"),
    ],
)
def test_stream_names_from_sources(source: str, name: str) -> None:
    assert stream_name(source) == name


def test_names_made_unique_and_fps_kept() -> None:
    specs = stream_specs(["a/clip.mp4", "b/clip.mp4", "c/other.mp4"], None, 10.0)
    assert [s.name for s in specs] == ["clip", "clip-2", "other"]
    assert all(s.fps == 10.0 for s in specs)


def test_streams_file(tmp_path: Path) -> None:
    path = tmp_path / "streams.yaml"
    path.write_text(
        "streams:\n"
        "  - {source: rtsp://10.0.0.5/front, name: front, camera: kitti, mode: realtime}\n"
        "  - {source: clips/rear.mp4}\n"
    )
    front, rear = read_streams_file(path)
    assert (front.name, front.camera, front.mode) == ("front", "kitti", "realtime")
    assert (rear.name, rear.camera, rear.mode) == ("rear", None, None)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("streams: []\n", "streams"),
        ("streams:\n  - {name: x}\n", "streams[0].source"),
        ("streams:\n  - {source: a.mp4, colour: red}\n", "unknown stream key: streams[0].colour"),
        ("streams:\n  - {source: a.mp4, mode: slow}\n", "streams[0].mode"),
        ("streams:\n  - {source: a.mp4, fps: .nan}\n", "streams[0].fps"),
        ("streams: [\n", "invalid YAML at line"),
    ],
)
def test_malformed_streams_file_is_one_line(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "streams.yaml"
    path.write_text(text)
    with pytest.raises(PerceptionError, match=re.escape(needle)):
        read_streams_file(path)


def test_sources_or_a_streams_file_not_both(tmp_path: Path) -> None:
    with pytest.raises(PerceptionError, match="not both"):
        stream_specs(["a.mp4"], tmp_path / "s.yaml", None)
    with pytest.raises(PerceptionError, match="no source"):
        stream_specs([], None, None)


# -- real runs ------------------------------------------------------------------------------------------


def frame_tracks(path: Path) -> list[list[tuple]]:
    return [
        [(t["id"], tuple(t["box"])) for t in e["tracks"]] for e in read_events(path) if e["type"] == "frame"
    ]


@pytest.mark.integration
def test_two_streams_share_a_detector_and_match_their_single_runs(tmp_path: Path) -> None:
    """Each stream's outputs land in OUT/<name>/ and hold exactly what a run of that stream alone gives:
    one shared detector, but each stream's own tracker, TTC and warnings."""
    out = tmp_path / "both"
    proc = run_cli("run", MOT17_13 / "img1", MOT17_09 / "img1", "--model", YOLOX_ONNX, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "all 2 streams" in proc.stderr
    for seq in (MOT17_13, MOT17_09):
        alone = tmp_path / f"alone-{seq.name}"
        assert run_cli("run", seq / "img1", "--model", YOLOX_ONNX, "--out", alone).returncode == 0
        together = out / seq.name
        frames = len(list((seq / "img1").glob("*.jpg")))
        assert video_frames(together / "annotated.mp4")[0] == frames
        events = read_events(together / "events.jsonl")
        assert events[0]["stream"] == seq.name and events[-1]["status"] == "ok"
        assert frame_tracks(together / "events.jsonl") == frame_tracks(alone / "events.jsonl")
        assert sum(len(f) for f in frame_tracks(together / "events.jsonl")) > 0


@pytest.mark.integration
def test_a_failing_stream_ends_alone(tmp_path: Path) -> None:
    """A corrupt image mid-sequence ends that stream with its error; the other stream completes; the run
    exits non-zero naming the stream that failed."""
    bad = tmp_path / "bad"
    bad.mkdir()
    for i, src in enumerate(sorted((MOT17_13 / "img1").glob("*.jpg"))[:3]):
        (bad / f"{i:06d}.jpg").write_bytes(src.read_bytes())
    (bad / "000003.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    proc = run_cli("run", bad, MOT17_09 / "img1", "--model", YOLOX_ONNX, "--out", out, "--fps", "25")
    assert_one_line_error(proc, "1 of 2 streams failed", "bad (cannot read image", mid_run=True)
    failed = read_events(out / "bad" / "events.jsonl")
    assert [e["frame"] for e in failed if e["type"] == "frame"] == [0, 1, 2]
    assert failed[-2]["type"] == "error" and failed[-1]["status"] == "error"
    good = read_events(out / MOT17_09.name / "events.jsonl")
    assert good[-1]["status"] == "ok"
    assert good[-1]["frames_processed"] == len(list((MOT17_09 / "img1").glob("*.jpg")))
