"""Did a video that stopped decoding reach its end? Asked of the container's packets, not of the frame count
it announces: WebM, Matroska and MPEG-TS state none (OpenCV then estimates one from the duration, which an
audio track or a rounded duration makes wrong), AVI's may count time-base ticks, while MP4 and MOV state
theirs exactly in an index that outlives a cut (and Matroska its duration). Reading the packets (without
decoding: fast) tells a complete file from a truncated one."""

from __future__ import annotations

from dataclasses import dataclass

import av

from perception.core.errors import first_line


@dataclass(frozen=True)
class VideoPackets:
    """What the demuxer found for the first video stream."""

    packets: int  # video packets read to the end (or to a demuxing error)
    stated_frames: int  # the frame count an MP4/MOV sample table states (exact), else 0
    last_s: float | None  # the latest presentation time among the packets, from the stream's start
    error: str  # why demuxing stopped before the end ('' at a clean end)
    missing_s: float = 0.0  # of a Matroska/WebM header's stated duration, how much no packet reached


def read_packets(path: str) -> VideoPackets | None:
    """The video stream's packets, without decoding them; None if the file cannot be opened again (then no
    judgement is made)."""
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    with container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        count, last, first, error, end_s = 0, None, None, "", 0.0
        try:
            for packet in container.demux():  # every stream: a cut ends them all
                if packet.size == 0:  # the flush packet at the end
                    continue
                if packet.pts is not None and packet.time_base is not None:
                    end_s = max(end_s, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                if packet.stream.index != stream.index:
                    continue
                count += 1
                if packet.pts is not None:
                    last = packet.pts if last is None else max(last, packet.pts)
                    first = packet.pts if first is None else min(first, packet.pts)
        except (av.error.FFmpegError, OSError) as exc:
            error = first_line(exc)
        start = stream.start_time if stream.start_time is not None else first
        last_s = float((last - (start or 0)) * stream.time_base) if last is not None else None
        # MP4/MOV count their samples; AVI's header counts ticks of its time base, others estimate or say none
        stated = max(stream.frames, 0) if container.format.name.startswith("mov,mp4") else 0
        return VideoPackets(count, stated, last_s, error, _missing_s(container, end_s))


def _missing_s(container: av.container.InputContainer, end_s: float) -> float:
    """Matroska and WebM write the segment's duration into their header once a recording is finished, so
    it outlives a cut as MP4's index does; other formats' durations are FFmpeg's own estimates."""
    if "matroska" not in container.format.name or container.duration is None:
        return 0.0
    start_s = (container.start_time or 0) / av.time_base
    return max(0.0, container.duration / av.time_base - (end_s - start_s))


def shortfall(decoded: int, last_decoded_s: float | None, fps: float, packets: VideoPackets) -> str:
    """Why decoding stopped before the last packet ('' if it did not): `of N frames` where the container
    knows N, else how much of its stated duration is missing. A little slack for frames a decoder may
    legitimately not show (an edit list's trimmed frames, a codec's hidden reference frames): a stated count
    must be missed by more than 1 % (2 frames at least), and packets beyond the last decoded frame must be
    later in time too, by more than a frame and a half."""
    frame_s = 1.0 / max(fps, 1e-3)
    slack = max(2, packets.stated_frames // 100, packets.packets // 100)
    total = max(packets.stated_frames, packets.packets)
    of_total = f"of {total} frames"
    if packets.error:
        return f"{of_total} ({packets.error})"
    if packets.stated_frames and decoded < packets.stated_frames - slack:
        return of_total  # an index that outlived a cut: MP4's sample table names frames no longer there
    # a Matroska/WebM header's duration that outlived a cut; a frame's and an audio block's slack (the last
    # packets end where the duration does, to within an audio frame: AAC 21 ms, Vorbis up to 46 ms)
    if packets.missing_s > frame_s + 0.05:
        return f"frames, {packets.missing_s:.1f} s short of the duration its header states"
    later = (
        packets.last_s is not None
        and last_decoded_s is not None
        and last_decoded_s < packets.last_s - 1.5 * frame_s
    )
    return of_total if later and decoded < packets.packets - slack else ""


def why_unreadable(path: str, opened: bool = False) -> str:
    """What is wrong with a file OpenCV cannot open as a video (or, `opened`, can open but decodes no frame
    of), for the one error line."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if not head:
                return "an empty file"
            f.seek(0)
            data = f.read(64 << 20)  # an MP4's top-level boxes are found within its first tens of MB
    except OSError as exc:
        return first_line(exc)
    if head[4:8] == b"ftyp" and b"moov" not in data and b"mdat" in data:
        return (
            "an MP4/MOV recording without its index (no moov box): it was cut off before it was finished "
            "(a dashcam losing power); a repair tool such as untrunc can rebuild it from a complete file of "
            "the same camera"
        )
    try:
        with av.open(path) as container:
            kinds = sorted({s.type for s in container.streams})
            if not container.streams.video:
                return f"no video track (only {', '.join(kinds) or 'no streams'})"
    except (av.error.FFmpegError, OSError, ValueError):
        pass
    if opened:
        return "no frame decodes (corrupt, or a codec this build cannot decode)"
    return "not a video file, or a format OpenCV cannot read"
