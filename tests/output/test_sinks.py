"""The output writers on their own: the H.264 writer (sizes, timestamps, cutting back to whole fragments),
whole-line files on a full disk, label placement, MOTChallenge rows and the output folder's lock."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from perception.core.errors import PerceptionError
from perception.eval.mot import read_results
from perception.output.folder import RunFolder
from perception.output.sinks import LineFile, mot_rows_text, place_labels
from perception.output.video import Mp4Writer, complete_fragments_end
from perception.runtime.streams import stream_name
from tests.helpers import video_timestamps_s
from tests.output.test_folder import tmpfs, top_level_boxes

KIND = "unit"


def frames_of(path: Path) -> list[tuple[int, int]]:
    with av.open(str(path)) as container:
        return [(f.width, f.height) for f in container.decode(video=0)]


def gradient(h: int, w: int, shift: int) -> np.ndarray:
    """A frame that changes from one to the next (x264 has something to encode), cheap to make."""
    x = (np.arange(w, dtype=np.uint16) + shift * 7) % 256
    return np.broadcast_to(x.astype(np.uint8)[None, :, None], (h, w, 3)).copy()


def test_odd_sizes_are_cut_even_and_new_sizes_scaled(tmp_path: Path) -> None:
    writer = Mp4Writer(tmp_path / "v.mp4", fps=10)
    writer.write(gradient(101, 201, 0), 0.0)  # yuv420p needs even sides
    writer.write(gradient(240, 320, 1), 0.1)  # a stream that came back at another size
    writer.close()
    writer.close()  # again: nothing
    assert frames_of(tmp_path / "v.mp4") == [(200, 100), (200, 100)]


def test_timestamps_from_any_origin_strictly_increasing(tmp_path: Path) -> None:
    """Live sources stamp frames with a monotonic clock (any origin); a timestamp that does not move on
    (a restarted stream) still gets its own slot right after the last."""
    writer = Mp4Writer(tmp_path / "v.mp4", fps=25)
    for i, ts in enumerate([1000.0, 1000.04, 1000.2, 1000.2, 1000.1, 1000.3]):
        writer.write(gradient(64, 64, i), ts)
    writer.close()
    times = video_timestamps_s(tmp_path / "v.mp4")
    assert times[:3] == pytest.approx([0.0, 0.04, 0.2], abs=1e-4)
    assert all(b > a for a, b in zip(times, times[1:], strict=False)) and times[-1] == pytest.approx(0.3)


def test_a_file_cut_anywhere_is_cut_back_to_whole_fragments(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    writer = Mp4Writer(path, fps=10, keyframe_s=0.5)  # a keyframe every 5 frames, a fragment every frame
    for i in range(23):
        writer.write(gradient(64, 96, i), i / 10)
    writer.close()
    data = path.read_bytes()
    assert top_level_boxes(path)[:2] == [b"ftyp", b"moov"] and top_level_boxes(path).count(b"moof") == 23
    assert complete_fragments_end(path) == len(data)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # somewhere inside a fragment
    end = complete_fragments_end(cut)
    assert end < len(data) * 2 // 3
    cut.write_bytes(data[:end])
    frames = len(frames_of(cut))
    assert frames == top_level_boxes(cut).count(b"moof") and 5 <= frames < 23  # every whole frame decodes


def test_full_disk_raises_once_naming_the_file_and_keeps_whole_fragments(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "512k") as disk:
        path = disk / "v.mp4"
        writer = Mp4Writer(path, fps=10, keyframe_s=0.5)
        rng = np.random.default_rng(0)
        with pytest.raises(PerceptionError, match=f"cannot write {path}: No space left on device"):
            for i in range(500):  # after two small fragments, noise: it does not compress, the disk fills
                image = gradient(240, 320, i) if i < 10 else rng.integers(0, 256, (240, 320, 3), np.uint8)
                writer.write(image, i / 10)
        writer.write(gradient(240, 320, 0), 99.0)  # after a failure: nothing more, no second error
        writer.close()
        frames = len(frames_of(path))
        assert frames == top_level_boxes(path).count(b"moof") and 10 <= frames < i
        assert complete_fragments_end(path) == path.stat().st_size


def test_line_file_on_a_full_disk_keeps_whole_lines(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "64k") as disk:
        lines = LineFile(disk / "log.jsonl")
        line = '{"n": %d, "pad": "' + "x" * 1000 + '"}\n'
        written = 0
        with pytest.raises(PerceptionError, match="log.jsonl: No space left on device"):
            for n in range(1000):
                lines.write(line % n + line % (n + 1000))  # two lines in one write: both or neither
                written += 2
        text = (disk / "log.jsonl").read_text()
        assert text.endswith("\n") and len(text.splitlines()) == written > 0
        lines.close()


def test_labels_do_not_pile_up() -> None:
    """A queue of far cars side by side: labels wider than the cars would overlap, so only every few gets
    one, the most important first; a box shorter than a label gets none; at the top edge the label goes
    inside the box."""
    boxes = np.array([[100 + 20 * i, 200, 118 + 20 * i, 220] for i in range(10)], np.int32)
    sizes = np.tile([70, 15], (10, 1))
    order = np.arange(10)[::-1]  # the last car first
    keep, rects = place_labels(boxes, sizes, 960, order)
    assert keep[9] and keep.sum() == 3  # 70 px labels over 20 px steps: one in four
    kept = rects[keep]
    assert all(kept[i, 2] <= kept[i + 1, 0] or kept[i + 1, 2] <= kept[i, 0] for i in range(len(kept) - 1))
    keep, _ = place_labels(np.array([[10, 300, 40, 310]], np.int32), np.array([[60, 15]]), 960, np.arange(1))
    assert not keep[0]  # 10 px tall, label 15 px
    keep, rects = place_labels(np.array([[900, 0, 958, 50]]), np.array([[80, 15]]), 960, np.arange(1))
    assert keep[0] and rects[0].tolist() == [880, 0, 960, 15]  # inside the top, shifted left to fit


def test_mot_rows_round_trip(tmp_path: Path) -> None:
    rows = np.array([[1, 3, 10.0, 20.0, 50.5, 80.25, 0.9], [2, 3, 12.0, 21.0, 52.0, 81.0, 0.85]])
    (tmp_path / "t.txt").write_text(mot_rows_text(rows))
    np.testing.assert_allclose(read_results(tmp_path / "t.txt"), rows, atol=1e-2)
    assert (tmp_path / "t.txt").read_text().splitlines()[0] == "1,3,10.00,20.00,40.50,60.25,0.9000,-1,-1,-1"
    assert mot_rows_text(np.zeros((0, 7))) == ""


def test_output_folder_lock(tmp_path: Path) -> None:
    first = RunFolder.claim(tmp_path / "out", "clip", ("events.jsonl",))
    with pytest.raises(PerceptionError, match=r"is in use by another run \(pid \d+\)"):
        RunFolder.claim(tmp_path / "out", "clip", ("events.jsonl",))
    first.release()
    RunFolder.claim(tmp_path / "out", "clip", ("events.jsonl",)).release(failed=True)
    assert (tmp_path / "out").is_dir()  # not made by the failed run: it stays
    RunFolder.claim(tmp_path / "new", "clip", ("events.jsonl",)).release(failed=True)
    assert not (tmp_path / "new").exists()  # made by a run that failed before writing: gone again


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("videos/highway.mp4", "highway"),
        ("MOT17-13-FRCNN/img1", "MOT17-13-FRCNN"),
        ("0", "camera0"),
        ("rtsp://user:pw@cam.local:554/stream1?x=1", "stream1"),
        ("http://example.com/", "example.com"),
        ("weird name (1).mp4", "weird_name_1"),
    ],
)
def test_default_run_names(spec: str, name: str) -> None:
    assert stream_name(spec) == name
