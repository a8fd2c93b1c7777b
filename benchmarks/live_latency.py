"""Live latency on a real RTSP stream: it must stay flat over minutes (no backlog building up).

    python benchmarks/live_latency.py [--seconds 120] [--window-s 30] [--config FILE]

Serves the real clip looped without a break at its 25 fps over RTSP on loopback (GStreamer's server,
tests/rtsp_server.py, run by Debian's /usr/bin/python3), runs `perception run rtsp://...` on it as a
user would for --seconds, stops it with SIGINT and reads its events.jsonl. Per window of --window-s:
frames processed and skipped (dropped for a newer frame, or stale), e2e latency p50/p99 (grab to
sinks), backlog p50/max (how late frames arrived against the stream's own clock), and the RSS and
thread count of the `perception` process (sampled from /proc every second).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", REPO.parent / "shared"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_status(pid: int) -> tuple[float, int] | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in text.splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["Threads"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ASSETS / "videos" / "highway_960x540_25fps.mp4")
    parser.add_argument("--model", type=Path, default=ASSETS / "models" / "yolox_nano.onnx")
    parser.add_argument("--config", help="YAML overriding configs/default.yaml")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--window-s", type=float, default=30.0)
    args = parser.parse_args()

    port = free_port()
    server = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "tests" / "rtsp_server.py"), str(args.source), "--port", str(port)]
        + ["--loop"],
        stdout=subprocess.PIPE,
        text=True,
    )
    samples: list[tuple[float, float, int]] = []  # t_ns (monotonic), rss_mib, threads
    try:
        url = server.stdout.readline().split()[-1]
        with tempfile.TemporaryDirectory(prefix="live-latency-") as tmp:
            cmd = [sys.executable, "-m", "perception.cli", "run", url, "--model", str(args.model)]
            cmd += ["--out", tmp] + (["--config", args.config] if args.config else [])
            run = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline and run.poll() is None:
                status = proc_status(run.pid)
                if status:
                    samples.append((time.monotonic_ns(), *status))
                time.sleep(1.0)
            run.send_signal(signal.SIGINT)
            _, stderr = run.communicate(timeout=60)
            events = [json.loads(line) for line in (Path(tmp) / "events.jsonl").read_text().splitlines()]
    finally:
        server.kill()
        server.wait()
    print(stderr.strip().splitlines()[-1])
    report(events, samples, args.window_s)


def report(events: list[dict], samples: list[tuple[float, float, int]], window_s: float) -> None:
    frames = [e for e in events if e["type"] == "frame"]
    health = [e for e in events if e["type"] == "source"]
    t0 = frames[0]["capture_ns"]
    print(
        "| window (s) | processed | fps | skipped | e2e ms p50 | e2e ms p99 | backlog ms p50 "
        "| backlog ms max | RSS MiB | threads |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    n_windows = int((frames[-1]["capture_ns"] - t0) / 1e9 // window_s) + 1
    for w in range(n_windows):
        lo, hi = t0 + w * window_s * 1e9, t0 + (w + 1) * window_s * 1e9
        part = [f for f in frames if lo <= f["capture_ns"] < hi]
        if len(part) < 2:
            continue
        e2e = np.array([f["latency_ms"]["e2e"] for f in part])
        backlog = np.array([f["latency_ms"].get("backlog", np.nan) for f in part])
        span_s = (part[-1]["capture_ns"] - part[0]["capture_ns"]) / 1e9
        skipped = part[-1]["frame"] - part[0]["frame"] + 1 - len(part)
        mem = [(rss, th) for t, rss, th in samples if lo <= t < hi]
        rss = f"{max(m[0] for m in mem):.0f}" if mem else "-"
        threads = f"{min(m[1] for m in mem)}..{max(m[1] for m in mem)}" if mem else "-"
        print(
            f"| {w * window_s:g}-{(w + 1) * window_s:g} | {len(part)} | {(len(part) - 1) / span_s:.1f} "
            f"| {skipped} | {np.percentile(e2e, 50):.1f} | {np.percentile(e2e, 99):.1f} "
            f"| {np.nanpercentile(backlog, 50):.1f} | {np.nanmax(backlog):.1f} | {rss} | {threads} |"
        )
    end = events[-1]
    print(
        f"\nend: {end.get('frames_grabbed')} grabbed, {end.get('frames_processed')} processed, "
        f"{end.get('frames_dropped')} dropped (newer frame), {end.get('frames_stale')} stale; "
        f"source events: {[e['state'] for e in health]}"
    )


if __name__ == "__main__":
    main()
