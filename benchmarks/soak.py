"""Soak: the real clip looped for a long run in `fast` mode; nothing may grow without bound.

    python benchmarks/soak.py [--minutes 30] [--warmup-minutes 3] [--sample-s 5] [--config FILE]

The whole pipeline runs in this process as `perception run` wires it (detector, tracker, TTC, the
annotated video and the event log written to a temporary folder), on a source that replays the clip
end to end without a break (time keeps running across the loop, so tracks of the old loop expire).
Every --sample-s seconds it records this process's resident memory (VmRSS) and OS thread count from
/proc/self/status, and the tracker's live track count. Printed: a table per minute, and after warm-up
the peak RSS growth over the RSS at the end of warm-up, and the thread count range.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

from perception.core.config import load_config
from perception.core.types import Frame
from perception.detect import create_detector
from perception.output.sinks import Annotator, EventLog, VideoSink
from perception.runtime.pipeline import Pipeline, Stream
from perception.runtime.processor import build_processor
from perception.sources.files import Source, open_source

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))


class LoopedClip:
    """A video file replayed again and again as one endless replay source (reopened at each end)."""

    def __init__(self, path: Path, open_clip) -> None:
        self._open = open_clip
        self._inner: Source = open_clip()
        self.name = f"{path} (looped)"
        self.is_live = False
        self.fps = self._inner.fps
        self.frame_count = None
        self.loops = 0
        self._index = 0
        self._offset_s = 0.0

    def read(self) -> Frame | None:
        frame = self._inner.read()
        if frame is None:
            self._inner.close()
            self.loops += 1
            self._offset_s = self._index / self.fps
            self._inner = self._open()
            frame = self._inner.read()
        frame.index = self._index
        frame.source_ts_s += self._offset_s
        self._index += 1
        return frame

    def close(self) -> None:
        self._inner.close()


def proc_status() -> tuple[float, int]:
    """(VmRSS in MiB, OS threads) of this process."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ASSETS / "videos" / "highway_960x540_25fps.mp4")
    parser.add_argument("--model", type=Path, default=ASSETS / "models" / "yolox_nano.onnx")
    parser.add_argument("--config", help="YAML overriding configs/default.yaml")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--warmup-minutes", type=float, default=3.0)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--out", type=Path, help="keep the outputs here (default: a temporary folder)")
    args = parser.parse_args()

    cfg = load_config(args.config, {"source": {"mode": "fast"}})
    detector = create_detector(args.model, cfg)
    source = LoopedClip(args.source, lambda: open_source(str(args.source), cfg.source))
    with contextlib.ExitStack() as stack:
        out = args.out or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        out.mkdir(parents=True, exist_ok=True)
        video = stack.enter_context(
            contextlib.closing(VideoSink(out / "annotated.mp4", source.fps, cfg.output))
        )
        events = stack.enter_context(
            contextlib.closing(EventLog(out / "events.jsonl", cfg.labels, detector.class_names))
        )
        processed = [0]

        def count(_result) -> None:
            processed[0] += 1

        processor = build_processor(cfg)
        stream = Stream(
            source,
            processor,
            [video, events],
            annotate=Annotator(cfg.labels, detector.class_names),
            on_frame=count,
        )
        pipeline = Pipeline(detector, cfg, [stream])
        samples: list[tuple[float, float, int, int, int]] = []  # t_s, rss_mib, threads, frames, tracks
        done = threading.Event()
        start = time.monotonic()

        def sample() -> None:
            while not done.wait(args.sample_s):
                t_s = time.monotonic() - start
                rss, threads = proc_status()
                samples.append((t_s, rss, threads, processed[0], processor.tracker.active_count))
                if t_s >= args.minutes * 60:
                    pipeline.stop()

        sampler = threading.Thread(target=sample, name="soak-sampler", daemon=True)
        sampler.start()
        summary = pipeline.run()
        done.set()
        sampler.join()
        video_mib = (out / "annotated.mp4").stat().st_size / 2**20

    report(samples, args.warmup_minutes * 60, summary.e2e_percentile(50), source.loops, video_mib)


def report(samples, warmup_s: float, e2e_p50_ms: float, loops: int, video_mib: float) -> None:
    print("| minute | frames | fps (last minute) | RSS MiB | threads | live tracks |")
    print("|---|---|---|---|---|---|")
    last_frames, last_t = 0, 0.0
    for t_s, rss, threads, frames, tracks in samples:
        if int(t_s // 60) > int(last_t // 60) or (t_s, rss, threads, frames, tracks) == samples[-1]:
            fps = (frames - last_frames) / max(t_s - last_t, 1e-9)
            print(f"| {t_s / 60:.1f} | {frames} | {fps:.1f} | {rss:.1f} | {threads} | {tracks} |")
            last_frames, last_t = frames, t_s
    warm = [s for s in samples if s[0] <= warmup_s]
    after = [s for s in samples if s[0] > warmup_s]
    if not warm or not after:
        print("run shorter than the warm-up: no growth figure", file=sys.stderr)
        return
    base = warm[-1][1]
    peak = max(s[1] for s in after)
    threads = sorted({s[2] for s in after})
    print(
        f"\nafter warm-up ({warmup_s / 60:g} min, RSS {base:.1f} MiB): peak RSS {peak:.1f} MiB, "
        f"growth {100 * (peak - base) / base:+.2f} %; RSS min {min(s[1] for s in after):.1f} MiB; "
        f"threads {threads[0]}..{threads[-1]}; live tracks max {max(s[4] for s in after)}; "
        f"{samples[-1][3]} frames, {loops} loops of the clip, e2e p50 (last 4096 frames) "
        f"{e2e_p50_ms:.0f} ms; annotated video {video_mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
