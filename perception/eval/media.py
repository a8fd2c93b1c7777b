"""Videos as dashcams, phones and recorders write them, made from a real clip: containers, codecs, pixel
formats, odd and tiny sizes, timing quirks and damage. The media fuzzing harness
(benchmarks/media_fuzz.py) and tests/sources/test_media.py run them through `perception run`.

    python -m perception.eval.media OUT_DIR [--frames N] [--case NAME ...]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

FPS = 25


@dataclass(frozen=True)
class Case:
    """One input file: how it is written and what `perception run` must do with it."""

    name: str  # the file name, its suffix the container
    codec: str = "libx264"
    pix_fmt: str = "yuv420p"
    size: tuple[int, int] | None = None  # (width, height); None: the clip's own
    audio: bool = False  # an audio track 1 s longer than the video (the container's duration is the audio's)
    start_s: float = 0.0  # the video's first timestamp
    vfr: bool = False  # irregular frame intervals
    options: dict[str, str] = field(default_factory=dict)
    damage: str = ""  # "" | "cut" (keep the first 55 % of the bytes) | "flip" (a byte in 5 kB) | "noise"
    # "processed" (exit 0, every frame) | "error" (one error line, the frames before it kept) | "any" of both
    expect: str = "processed"
    slow: bool = False  # left out of the test suite (large or slow to encode)


CASES = [
    Case("vp9_audio.webm", "libvpx-vp9", audio=True),
    Case("vp8.webm", "libvpx"),
    Case("h264_audio.ts", audio=True),
    Case("h264.m2ts"),
    Case("hevc_audio.mkv", "libx265", audio=True),
    Case("ffv1_grey.mkv", "ffv1", "gray"),
    Case("h264_444.mkv", pix_fmt="yuv444p"),
    Case("hevc.mp4", "libx265"),
    Case("av1.mp4", "libsvtav1", slow=True),
    Case("prores.mov", "prores_ks", "yuv422p10le"),
    Case("h264_10bit.mp4", pix_fmt="yuv420p10le"),
    Case("h264_422.mkv", pix_fmt="yuv422p"),
    Case("mjpeg.avi", "mjpeg", "yuvj420p"),
    Case("png_alpha.mov", "png", "rgba"),
    Case("odd_961x541.mkv", "ffv1", "yuv444p", size=(961, 541)),
    Case("tiny_1x1.avi", "rawvideo", "bgr24", size=(1, 1)),
    Case("thin_1x64.avi", "rawvideo", "bgr24", size=(1, 64)),
    Case("small_16x16.mp4", pix_fmt="yuv444p", size=(16, 16)),
    Case("uhd_3840x2160.mp4", size=(3840, 2160), slow=True),
    Case("late_start_audio.mp4", audio=True, start_s=1.0),
    Case("vfr.mkv", vfr=True),
    Case("interlaced.ts", "mpeg2video", options={"flags": "+ildct+ilme"}),
    Case("size_change.ts"),  # two MPEG-TS pieces at different sizes, one after the other
    Case("flipped.mp4", damage="flip", expect="any"),  # decoded past the damage, or the damage named
    Case("cut.mp4", damage="cut", expect="error"),
    Case("cut.webm", "libvpx-vp9", audio=True, damage="cut", expect="error"),
    Case("cut.mkv", "ffv1", "yuv420p", damage="cut", expect="error"),
    Case("noise.mp4", damage="noise", expect="error"),
    Case("audio_only.m4a", codec="", audio=True, expect="error"),
    Case("empty.mp4", codec="", expect="error"),
    Case("no_index.mp4", damage="no_index", expect="error"),  # a dashcam file cut by a power loss
    Case("garbage.mp4", codec="", damage="noise", expect="error"),
]


def clip_frames(clip: Path, count: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(clip))
    try:
        for _ in range(count):
            ok, image = cap.read()
            if not ok:
                return
            yield image if size is None else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    finally:
        cap.release()


def _write(path: Path, frames: Iterator[np.ndarray], case: Case, fmt: str | None = None) -> None:
    # MP4 and MOV with their index first, as cameras that stream or keep a file playable write them
    faststart = path.suffix in (".mp4", ".mov") and case.damage != "no_index"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format=fmt, options=options) as out:
        video = audio = None
        if case.codec:
            video = out.add_stream(case.codec, rate=FPS, options=case.options)
            video.time_base = Fraction(1, 1000)
        if case.audio:
            audio = out.add_stream("libopus" if path.suffix == ".webm" else "aac", rate=48000)
            audio.layout = "mono"
        pts_ms = int(case.start_s * 1000)
        for count, image in enumerate(frames if video is not None else ()):
            if count == 0:
                video.width, video.height, video.pix_fmt = image.shape[1], image.shape[0], case.pix_fmt
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = pts_ms, Fraction(1, 1000)
            out.mux(video.encode(frame))
            pts_ms += (1000 // FPS) * (1 + (count % 3 == 2)) if case.vfr else 1000 // FPS
        if video is not None:
            out.mux(video.encode())
        if audio is not None:
            _silence(out, audio, pts_ms / 1000 + 1.0)


def _silence(out: av.container.OutputContainer, audio: av.audio.stream.AudioStream, seconds: float) -> None:
    fmt, step = audio.codec_context.format, audio.codec_context.frame_size or 1024
    for start in range(0, int(seconds * 48000), step):
        frame = av.AudioFrame(format=fmt.name, layout="mono", samples=step)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate, frame.pts = 48000, start
        out.mux(audio.encode(frame))
    out.mux(audio.encode())


def _damage(path: Path, how: str, seed: int) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    if how == "cut":
        del data[int(len(data) * 0.55) :]
    elif how == "flip":  # within the frames, not the header and index (MP4's may be at either end)
        for _ in range(len(data) // 5000):
            data[rng.randrange(len(data) // 5, len(data) * 4 // 5)] ^= 0xFF
    elif how == "no_index":  # written with its index last, cut before it
        del data[data.rfind(b"moov") - 4 :]
    elif how == "noise":
        start = len(data) // 8
        data[start : start + len(data) // 4] = rng.randbytes(len(data) // 4)
    path.write_bytes(bytes(data))


def make(case: Case, clip: Path, out_dir: Path, frames: int = 12, seed: int = 0) -> Path:
    """The case's file in out_dir, from the clip's first frames."""
    path = out_dir / case.name
    if case.name == "empty.mp4":
        path.write_bytes(b"")
        return path
    if case.name == "garbage.mp4":
        path.write_bytes(random.Random(seed).randbytes(50_000))
        return path
    if case.name == "size_change.ts":
        half = frames // 2
        first, second = out_dir / "part1.ts", out_dir / "part2.ts"
        _write(first, clip_frames(clip, half), case)
        _write(second, clip_frames(clip, frames - half, (480, 270)), case)
        path.write_bytes(first.read_bytes() + second.read_bytes())
        first.unlink()
        second.unlink()
        return path
    fmt = "mpegts" if path.suffix == ".m2ts" else ("ipod" if path.suffix == ".m4a" else None)
    _write(path, clip_frames(clip, frames, case.size), case, fmt)
    if case.damage:
        _damage(path, case.damage, seed)
    return path


def decodable_frames(path: Path) -> int:
    """How many frames OpenCV decodes from the file: what a run can process, whatever the header says."""
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def cases(names: list[str] | None = None, slow: bool = True) -> list[Case]:
    chosen = [c for c in CASES if (names is None or c.name in names) and (slow or not c.slow)]
    unknown = set(names or []) - {c.name for c in CASES}
    if unknown:
        raise SystemExit(f"error: unknown case {', '.join(sorted(unknown))}")
    return chosen


def main(argv: list[str] | None = None, make_case: Callable = make) -> int:
    parser = argparse.ArgumentParser(prog="python -m perception.eval.media", description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--clip", type=Path, default=Path("../shared/videos/highway_960x540_25fps.mp4"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--case", action="append", dest="names")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for case in cases(args.names):
        print(make_case(case, args.clip, args.out, args.frames))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
