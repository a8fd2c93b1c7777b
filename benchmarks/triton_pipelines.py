"""Two pipelines sharing one Triton server against two pipelines each with its own detector.

    python benchmarks/triton_pipelines.py [--rounds 3] [--imgsz 384 640]

Two `perception run` processes on the shared clip at once, in each round, alternated: both with
`--backend triton` against one server (the real tritonserver of the tests, tests/triton_server.py in the
`.venv-triton` that .ci/run builds, ONNX Runtime on the CPU inside, dynamic batching), and both with
`--backend onnxruntime` in-process. Throughput: `--mode fast`, the wall time until both finished, frames per
second over both. Latency: `--mode realtime` (the clip's 25 fps, frames dropped when behind, like a camera),
e2e p50 / p99 of every processed frame and the share processed. On this 2-core machine the server runs on the
same cores as the pipelines: the figures show the cost of the hop, not a GPU server's gain.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", REPO.parent / "shared")).resolve()
CLIP = ASSETS / "videos" / "highway_960x540_25fps.mp4"
MODEL = ASSETS / "models" / "yolox_nano.onnx"
TRITON_PYTHON = REPO / ".venv-triton" / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(repo: Path, work: Path) -> tuple[subprocess.Popen, str]:
    http_port, grpc_port = free_port(), free_port()
    cmd = [str(TRITON_PYTHON), str(REPO / "tests" / "triton_server.py"), str(repo)]
    cmd += ["--http-port", str(http_port), "--grpc-port", str(grpc_port), "--work-dir", str(work)]
    cmd += ["--shm-prefix", f"perception_bench_{grpc_port}_"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=(work / "server.log").open("w"), text=True, start_new_session=True
    )
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        raise RuntimeError(f"Triton server did not start: {line!r}, see {work / 'server.log'}")
    return proc, f"grpc://127.0.0.1:{grpc_port}"


def pair(backend: str, mode: str, url: str, imgsz: list[str], out: Path) -> tuple[float, list[list[dict]]]:
    """Two runs at once; the wall time and each run's frame lines."""
    config = out / f"{backend}.yaml"
    out.mkdir(parents=True, exist_ok=True)
    config.write_text(f"detector:\n  triton_url: {url}\n  triton_model: yolox_nano\n")
    cmd = [
        sys.executable,
        "-m",
        "perception.cli",
        "run",
        str(CLIP),
        "--model",
        str(MODEL),
        "--backend",
        backend,
        "--mode",
        mode,
        "--imgsz",
        *imgsz,
        "--config",
        str(config),
    ]
    t0 = time.monotonic()
    procs = [
        subprocess.Popen(
            [*cmd, "--out", str(out / f"{backend}{i}")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=900)
        if p.returncode:
            raise RuntimeError(err)
    wall = time.monotonic() - t0
    frames = []
    for i in range(2):
        lines = (out / f"{backend}{i}" / "events.jsonl").read_text().splitlines()
        frames.append([e for e in map(json.loads, lines) if e["type"] == "frame"])
    return wall, frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--imgsz", nargs=2, default=["384", "640"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="triton_pipelines_"))
    repo = work / "repo"
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "perception.cli",
            "triton-repo",
            str(MODEL),
            "--out",
            str(repo),
            "--imgsz",
            *args.imgsz,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if made.returncode:
        raise SystemExit(made.stderr)
    server, url = start_server(repo, work)
    try:
        fps: dict[str, list[float]] = {"triton": [], "onnxruntime": []}
        for r in range(args.rounds):
            for backend in ("triton", "onnxruntime") if r % 2 == 0 else ("onnxruntime", "triton"):
                wall, frames = pair(backend, "fast", url, args.imgsz, work / f"fast{r}")
                fps[backend].append(sum(len(f) for f in frames) / wall)
                print(
                    f"round {r + 1} fast {backend}: {wall:.1f} s, {fps[backend][-1]:.1f} fps over both",
                    flush=True,
                )
        print("\n| two pipelines | throughput fps (median) | rounds | e2e p50 ms | e2e p99 ms | processed |")
        print("|---|---|---|---|---|---|")
        for backend in ("onnxruntime", "triton"):
            _, frames = pair(backend, "realtime", url, args.imgsz, work / "realtime")
            e2e = [f["latency_ms"]["e2e"] for run in frames for f in run]
            share = sum(len(run) for run in frames) / (2 * 221)
            name = "each its own detector (onnxruntime)" if backend == "onnxruntime" else "one Triton server"
            print(
                f"| {name} | {statistics.median(fps[backend]):.1f} "
                f"| {', '.join(f'{x:.1f}' for x in fps[backend])} "
                f"| {np.percentile(e2e, 50):.0f} | {np.percentile(e2e, 99):.0f} | {share:.0%} |"
            )
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
        for region in Path("/dev/shm").glob("perception_bench_*"):
            region.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
