"""Several streams in one process, against one process per stream, and live streams that die.

    python benchmarks/multi_stream.py files [--streams 4] [--rounds 3]     # N copies of the clip
    python benchmarks/multi_stream.py rtsp  [--streams 4] [--seconds 40]   # N RTSP servers at 25 fps

`files`: the shared clip copied N times; in each round, alternated, one `perception run` with the N copies
(one shared detector, batching across streams) and N separate `perception run` processes started at once.
Reported: wall time per round, frames per second over all streams, and the ratio (one process / N
processes) per round and its median. Every stream's output is checked complete (frame lines = clip frames).

`rtsp`: N real RTSP servers (tests/rtsp_server.py, Debian's python3 with GStreamer) each streaming the clip
in a loop at 25 fps; one `perception run` with the N URLs. Halfway, the first server is killed for good.
Reported per stream from events.jsonl: processed FPS and e2e p50/p99 before the kill, and after it for the
others (their rate must hold: within 10 %).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", REPO.parent / "shared")).resolve()
CLIP = ASSETS / "videos" / "highway_960x540_25fps.mp4"
MODEL = ASSETS / "models" / "yolox_nano.onnx"
SYSTEM_PYTHON = "/usr/bin/python3"


def run(*args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def frame_lines(path: Path) -> list[dict]:
    return [e for e in map(json.loads, path.read_text().splitlines()) if e["type"] == "frame"]


def files(streams: int, rounds: int, imgsz: list[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="multi_stream_"))
    clips = []
    for i in range(streams):
        clip = work / f"cam{i}.mp4"
        shutil.copy(CLIP, clip)
        clips.append(clip)
    expected = len(frame_lines_of_clip())
    common = ["--model", MODEL, "--imgsz", *imgsz]
    rows = []
    for r in range(rounds):
        order = ("one", "separate") if r % 2 == 0 else ("separate", "one")
        times = {}
        for mode in order:
            out = work / f"{mode}{r}"
            t0 = time.monotonic()
            if mode == "one":
                proc = run("run", *clips, *common, "--out", out)
                assert proc.returncode == 0, proc.stderr
                outs = [out / c.stem for c in clips]
            else:
                procs = [
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "perception.cli",
                            "run",
                            str(c),
                            *map(str, common),
                            "--out",
                            str(out / c.stem),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        text=True,
                    )
                    for c in clips
                ]
                for p in procs:
                    _, err = p.communicate(timeout=900)
                    assert p.returncode == 0, err
                outs = [out / c.stem for c in clips]
            times[mode] = time.monotonic() - t0
            for o in outs:
                assert len(frame_lines(o / "events.jsonl")) == expected, o
        rows.append(times)
        total = streams * expected
        print(
            f"round {r + 1}: one process {times['one']:.1f} s ({total / times['one']:.1f} fps), "
            f"{streams} processes {times['separate']:.1f} s ({total / times['separate']:.1f} fps), "
            f"ratio {times['separate'] / times['one']:.2f}",
            flush=True,
        )
    ratios = [t["separate"] / t["one"] for t in rows]
    print(
        f"\n{streams} streams x {expected} frames, {rounds} rounds: "
        f"throughput one process / {streams} processes "
        f"= {statistics.median(ratios):.2f} (median; rounds {', '.join(f'{x:.2f}' for x in ratios)}); "
        f"wall p50 one {statistics.median(t['one'] for t in rows):.1f} s, "
        f"separate {statistics.median(t['separate'] for t in rows):.1f} s"
    )
    shutil.rmtree(work, ignore_errors=True)


def frame_lines_of_clip() -> list[int]:
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return list(range(n))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, log: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, str(REPO / "tests" / "rtsp_server.py"), str(CLIP), "--port", str(port), "--loop"],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        raise RuntimeError(f"RTSP server did not start: {line!r}")
    return proc


def rtsp(streams: int, seconds: float, imgsz: list[str]) -> None:
    work = Path(tempfile.mkdtemp(prefix="multi_rtsp_"))
    ports = [free_port() for _ in range(streams)]
    servers = [start_server(p, work / f"server{i}.log") for i, p in enumerate(ports)]
    urls = [f"rtsp://127.0.0.1:{p}/live" for p in ports]
    config = work / "live.yaml"
    config.write_text("source:\n  reconnect_attempts: 2\n  backoff_initial_s: 0.5\n  backoff_max_s: 1.0\n")
    out = work / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perception.cli",
            "run",
            *urls,
            "--model",
            str(MODEL),
            "--imgsz",
            *imgsz,
            "--config",
            str(config),
            "--out",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "run.stderr").open("w"),
    )
    try:
        time.sleep(seconds / 2)
        kill_ns = time.monotonic_ns()
        servers[0].kill()
        time.sleep(seconds / 2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        for s in servers:
            s.kill()
        proc.kill()
    names = ["live"] + [f"live-{i + 1}" for i in range(1, streams)]
    print(f"{streams} RTSP streams at 25 fps, {seconds:g} s, stream 1's server killed at {seconds / 2:g} s")
    print(
        "| stream | fps before | e2e p50 / p99 ms before | fps after | e2e p50 / p99 ms after "
        "| after / before |"
    )
    print("|---|---|---|---|---|---|")
    for i, name in enumerate(names):
        frames = frame_lines(out / name / "events.jsonl")
        warm = [f for f in frames if f["capture_ns"] > frames[0]["capture_ns"] + 3e9]  # first 3 s: warm-up
        before = [f for f in warm if f["capture_ns"] < kill_ns]
        after = [f for f in warm if f["capture_ns"] >= kill_ns + 1e9]  # 1 s after the kill

        def stats(fs: list[dict]) -> tuple[float, float, float]:
            if len(fs) < 2:
                return 0.0, float("nan"), float("nan")
            span = (fs[-1]["capture_ns"] - fs[0]["capture_ns"]) / 1e9
            e2e = [f["latency_ms"]["e2e"] for f in fs]
            return (len(fs) - 1) / span, float(np.percentile(e2e, 50)), float(np.percentile(e2e, 99))

        b, a = stats(before), stats(after)
        ratio = a[0] / b[0] if b[0] else float("nan")
        print(
            f"| {i + 1}{' (killed)' if i == 0 else ''} | {b[0]:.1f} | {b[1]:.0f} / {b[2]:.0f} | {a[0]:.1f} | "
            f"{a[1]:.0f} / {a[2]:.0f} | {ratio:.2f} |"
        )
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["files", "rtsp"])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--imgsz", nargs=2, default=["384", "640"])
    args = parser.parse_args()
    if args.what == "files":
        files(args.streams, args.rounds, args.imgsz)
    else:
        rtsp(args.streams, args.seconds, args.imgsz)


if __name__ == "__main__":
    main()
