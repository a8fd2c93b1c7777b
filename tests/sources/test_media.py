"""Every video a dashcam, a phone or a recorder writes (perception/eval/media.py, made from the real clip):
read to its end, or refused with one line naming the damage, the frames before it kept. Completeness is
judged by the container's packets (perception/sources/video_probe.py), never by the frame count it
announces. The whole table, with random damage too, is benchmarks/media_fuzz.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception.core.config import load_config
from perception.core.errors import PerceptionError
from perception.eval.media import cases, decodable_frames, make
from perception.sources.files import open_source
from perception.sources.video_probe import VideoPackets, shortfall
from tests.conftest import HIGHWAY_CLIP, YOLOX_ONNX
from tests.helpers import assert_one_line_error, frames_of, read_events, run_cli

KIND = "integration"

FRAMES = 8
FAST = cases(slow=False)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {case.name: make(case, HIGHWAY_CLIP, folder, FRAMES) for case in FAST}


def read_all(path: Path) -> int:
    source = open_source(str(path), load_config(None).source)
    count = 0
    try:
        while source.read() is not None:
            count += 1
    finally:
        source.close()
    return count


@pytest.mark.parametrize("case", FAST, ids=[c.name for c in FAST])
def test_each_input_is_read_to_its_end_or_its_damage_is_named(case, media: dict[str, Path]) -> None:
    path = media[case.name]
    readable = decodable_frames(path)
    try:
        count, error = read_all(path), ""
    except PerceptionError as exc:
        count, error = -1, str(exc)
    if case.expect == "processed" or (case.expect == "any" and not error):
        assert not error and count == readable == FRAMES
    else:
        assert error and "\n" not in error and str(path) in error
        assert "truncated or corrupt" in error or "cannot" in error


@pytest.mark.parametrize(
    ("name", "frames", "needle"),
    [
        ("vp9_audio.webm", FRAMES, ""),  # announced more frames than it has (the audio is longer)
        ("h264_audio.ts", FRAMES, ""),
        ("tiny_1x1.avi", FRAMES, ""),  # smaller than any stride; the annotated video at 2x2
        ("cut.mkv", None, "short of the duration its header states: truncated or corrupt"),
    ],
)
def test_the_whole_run(
    name: str, frames: int | None, needle: str, media: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = run_cli("run", media[name], "--model", YOLOX_ONNX, "--out", out, "--imgsz", "256", "448")
    events = read_events(out / "events.jsonl")
    if needle:
        assert_one_line_error(proc, needle, mid_run=True)
        assert len(frames_of(events)) == decodable_frames(media[name]) > 0
        assert events[-1]["type"] == "end" and events[-1]["status"] == "error"
    else:
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert len(frames_of(events)) == frames and events[-1]["status"] == "ok"
        assert (out / "annotated.mp4").stat().st_size > 0


def packets(
    count: int, stated: int = 0, last_s: float | None = None, error: str = "", missing_s: float = 0.0
) -> VideoPackets:
    return VideoPackets(count, stated, last_s if last_s is not None else (count - 1) / 25, error, missing_s)


@pytest.mark.unit
def test_shortfall_judges_the_packets_not_an_estimate() -> None:
    # complete: the last frame is the last packet, whatever a container would have announced
    assert shortfall(40, 1.56, 25, packets(40)) == ""
    # hidden frames (a codec's reference frames) add packets, not later timestamps
    assert shortfall(40, 1.56, 25, packets(43, last_s=1.56)) == ""
    # decoding stopped early: later packets remain
    assert shortfall(27, 1.04, 25, packets(221)) == "of 221 frames"
    # an MP4 index that outlived a cut; 1 % slack for an edit list's trimmed frames
    assert shortfall(110, 4.36, 25, packets(111, stated=221, last_s=4.4)) == "of 221 frames"
    assert shortfall(219, 8.72, 25, packets(219, stated=221, last_s=8.72)) == ""
    # a Matroska header's duration no packet reaches
    assert "short of the duration" in shortfall(18, 0.68, 25, packets(18, missing_s=1.9))
    assert shortfall(40, 1.56, 25, packets(40, missing_s=0.04)) == ""
    # the demuxer's own error
    assert shortfall(12, 0.44, 25, packets(12, error="Invalid data")) == "of 12 frames (Invalid data)"
