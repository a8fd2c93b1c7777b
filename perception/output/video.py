"""The annotated video: H.264 in a fragmented MP4, written through PyAV (its wheels bundle FFmpeg with x264).

Why this shape:
- Fragmented MP4 (`frag_every_frame+empty_moov+default_base_moof`): the header is written first, then each
  frame as a fragment of its own (its index and its data), flushed to the file as soon as the next frame
  arrives (`flush_packets`). A run killed with `kill -9` (or a power cut, up to the last fsync) leaves a
  file that players read up to its last frame but one. A plain MP4 keeps its index in a `moov` box written
  at the end: killed, it cannot be opened at all. (A fragment per keyframe instead would lose up to a
  keyframe interval, a second, on a kill; a fragment per frame costs about 1 % in size.)
- H.264 in yuv420p with even dimensions: what browsers play.
- Each frame's presentation time is its own `source_ts_s`, so a variable frame rate or a realtime replay
  that dropped frames plays at the speed it was filmed.
- x264 `tune=zerolatency`: no lookahead and no B-frames, so each frame is encoded when it arrives (nothing
  is held back in the encoder to be lost by a kill); `preset` trades CPU for file size (ultrafast by
  default: the sink runs in the pipeline's hot path on machines with few cores; benchmarks/README.md).

A write that fails (disk full, device gone) raises a `PerceptionError` naming the file and the cause; the
file is then cut back to its last whole fragment (frame), so what was written stays readable.
"""

from __future__ import annotations

import contextlib
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from perception.core.errors import PerceptionError

TIME_BASE = Fraction(1, 90000)  # the MPEG clock: exact for 25, 30 and 30000/1001 fps alike
FSYNC_INTERVAL_S = 2.0  # written fragments reach the disk at least this often (power cuts)
_MOVFLAGS = "frag_every_frame+empty_moov+default_base_moof"
# BT.601 limited range, as OpenCV's BGR -> I420 conversion produces it; flagged so players do not guess
# (they assume BT.709 for HD sizes).
_SMPTE170M, _RANGE_TV = 6, 1


def describe_os_error(error: BaseException) -> str:
    """'No space left on device' rather than '[Errno 28] No space left on device: path'."""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


class Mp4Writer:
    """Frames in (BGR, any size), a fragmented H.264 MP4 out. The container is created at once (so a path
    that cannot be written fails before any frame); the stream is set up by the first frame, whose size
    (cut to even) every later frame is scaled to."""

    def __init__(
        self, path: Path, fps: float, crf: int = 23, preset: str = "ultrafast", keyframe_s: float = 1.0
    ) -> None:
        self.path = path
        self.fps = fps
        self.crf = crf
        self.preset = preset
        self.keyframe_s = keyframe_s
        self.frames_written = 0
        self._stream: av.video.stream.VideoStream | None = None
        self._size: tuple[int, int] | None = None  # width, height of the stream
        self._origin_s: float | None = None
        self._last_pts = -1
        self._synced_at = time.monotonic()
        self._failed = False
        try:
            self._file = _RawFile(path)
        except OSError as exc:
            raise PerceptionError(f"cannot write {path}: {describe_os_error(exc)}") from None
        options = {"movflags": _MOVFLAGS, "flush_packets": "1"}
        self._container = av.open(self._file, "w", format="mp4", options=options)

    def _open_stream(self, width: int, height: int) -> None:
        stream = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ctx = stream.codec_context
        ctx.time_base = TIME_BASE
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = _SMPTE170M
        ctx.color_range = _RANGE_TV
        ctx.options = {
            "preset": self.preset,
            "tune": "zerolatency",
            "crf": str(self.crf),
            "g": str(max(1, round(self.fps * self.keyframe_s))),  # where players can seek to
        }
        self._stream, self._size = stream, (width, height)

    def write(self, image: np.ndarray, ts_s: float) -> None:
        """Encode one frame shown at `ts_s` (seconds, any origin: the first frame is time 0)."""
        if self._failed:
            return
        if self._stream is None:
            h, w = image.shape[:2]
            self._open_stream(max(2, w - w % 2), max(2, h - h % 2))  # even sides, 2 px at least (H.264 4:2:0)
        width, height = self._size
        if image.shape[1] != width or image.shape[0] != height:
            if image.shape[1] - width in (0, 1) and image.shape[0] - height in (0, 1):
                image = image[:height, :width]  # an odd size cut to even: a view, no copy
            else:  # a stream that changed resolution mid-run: one playable file at the first size
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        if self._origin_s is None:
            self._origin_s = ts_s
        pts = max(round((ts_s - self._origin_s) / TIME_BASE), self._last_pts + 1)  # strictly increasing
        frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        frame.pts, frame.time_base = pts, TIME_BASE
        # How long it shows, as far as known now: the last interval (the muxer uses it for the last frame
        # only, the others end where the next begins), so a file lasts as long as its source.
        duration = pts - self._last_pts if self._last_pts >= 0 else round(1 / (self.fps * TIME_BASE))
        try:
            for packet in self._stream.encode(frame):
                packet.duration = duration  # zerolatency: the packet of this very frame
                self._container.mux(packet)
        except OSError as exc:
            self._fail()
            raise PerceptionError(f"cannot write {self.path}: {describe_os_error(exc)}") from None
        self._last_pts = pts
        self.frames_written += 1
        if time.monotonic() - self._synced_at > FSYNC_INTERVAL_S:
            self._fsync()

    def _fsync(self) -> None:
        self._synced_at = time.monotonic()
        with contextlib.suppress(OSError):
            os.fsync(self._file.fileno())

    def _fail(self) -> None:
        """After a failed write: release the container without writing more, and cut the file back to its
        last whole fragment (shrinking needs no free space)."""
        self._failed = True
        with contextlib.suppress(Exception):
            self._container.close()
        self._container = None
        with contextlib.suppress(OSError):
            os.ftruncate(self._file.fileno(), complete_fragments_end(self.path))
        self._file.close()

    def close(self) -> None:
        """Flush the encoder and finish the file; after a failure, nothing more is written. A writer that
        never had a frame leaves no file (an empty MP4 plays nothing)."""
        if self._container is None:
            return
        if self._stream is None:
            self._container = None
            self._file.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            return
        try:
            for packet in self._stream.encode():  # none expected with zerolatency
                self._container.mux(packet)
            self._container.close()
        except OSError as exc:
            self._fail()
            raise PerceptionError(f"cannot write {self.path}: {describe_os_error(exc)}") from None
        self._container = None
        self._fsync()
        self._file.close()


def complete_fragments_end(path: Path) -> int:
    """The byte offset where the last whole top-level box of an MP4 ends (a fragment being a `moof` box
    and the `mdat` after it): what a truncated or failed write can be cut back to."""
    size = path.stat().st_size
    end = pos = 0
    pending_moof = False
    with path.open("rb") as f:
        while pos + 8 <= size:
            f.seek(pos)
            header = f.read(16)
            box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if box_size == 1 and len(header) == 16:
                box_size = int.from_bytes(header[8:16], "big")
            if box_size < 8 or pos + box_size > size:
                break  # a box cut short (or size 0: to the end of a file being written)
            pos += box_size
            if kind == b"moof":
                pending_moof = True
            elif kind == b"mdat" or not pending_moof:
                pending_moof = False
                end = pos
    return end


class _RawFile:
    """The file PyAV writes through: unbuffered (a kill loses nothing already handed over), every write
    whole or an OSError (FFmpeg would not retry a short write), so a full disk surfaces here as itself."""

    def __init__(self, path: Path) -> None:
        self._f = open(path, "wb", buffering=0)  # noqa: SIM115 - closed by Mp4Writer

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[self._f.write(view) :]
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def fileno(self) -> int:
        return self._f.fileno()

    def close(self) -> None:
        self._f.close()
