"""What serving the detector through Triton costs against ONNX Runtime in-process: same model, same frames.

    python benchmarks/triton_overhead.py [--model M] [--input-size 384x640] [--rounds 3] [--clients 1 2 4]

Writes a model repository with `perception triton-repo` (dynamic batching up to 8, no queue delay) and
serves it with the real tritonserver of the tests (tests/triton_server.py, in the `.venv-triton` that
`.ci/run` builds; ONNX Runtime on the CPU inside), on loopback, on the same machine as the client: the
server's CPU time is this machine's too. One process, warm detectors, interleaved:

- latency: per frame of the clip, one `detect()` each by direct ONNX Runtime, Triton over gRPC and Triton
  over HTTP (rotated order), batch 1, one request at a time: p50/p90 of the whole call (letterbox, request
  or inference, decode) and of its inference step alone;
- throughput: N clients (threads) each detecting frames back to back for `--seconds`; direct: one ONNX
  Runtime session with N requests (cores / N threads each, as `perception run` sets them up), Triton: N
  gRPC connections to one server whose dynamic batcher may run queued requests together (mean batch =
  requests / model executions, from the server's statistics). Rounds rotate the order.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import tritonclient.http as triton_http

from perception.core.config import load_config
from perception.detect import create_detector

REPO = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", REPO.parent / "shared"))
TRITON_PYTHON = REPO / ".venv-triton" / "bin" / "python"


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def clip_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while (image := cap.read()[1]) is not None:
        frames.append(image)
    cap.release()
    return frames


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def latency(detectors: dict, frames: list[np.ndarray], rounds: int) -> dict[str, dict[str, list[float]]]:
    names = list(detectors)
    out = {n: {"call": [], "inference": []} for n in names}
    for r in range(rounds):
        for i, image in enumerate(frames):
            shift = (i + r) % len(names)
            for name in names[shift:] + names[:shift]:
                det = detectors[name]
                t0 = time.perf_counter_ns()
                det.detect(image)
                out[name]["call"].append((time.perf_counter_ns() - t0) / 1e6)
                out[name]["inference"].append(det.timings_ms["inference"])
    return out


def throughput(handles: list, frames: list[np.ndarray], seconds: float) -> float:
    """Frames per second over all clients, each looping over the frames from its own offset."""
    done = [0] * len(handles)
    stop = threading.Event()
    start = threading.Barrier(len(handles) + 1, timeout=60)

    def client(k: int) -> None:
        i = k * len(frames) // len(handles)
        start.wait()
        while not stop.is_set():
            handles[k].detect(frames[i % len(frames)])
            done[k] += 1
            i += 1

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(len(handles))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    return sum(done) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ASSETS / "videos" / "highway_960x540_25fps.mp4")
    parser.add_argument("--model", type=Path, default=ASSETS / "models" / "yolox_nano.onnx")
    parser.add_argument("--input-size", default="384x640")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    if not TRITON_PYTHON.is_file():
        sys.exit(f"error: {TRITON_PYTHON} not found: .ci/run builds it")
    h, w = (int(v) for v in args.input_size.split("x"))
    frames = clip_frames(args.source)

    with tempfile.TemporaryDirectory(prefix="triton-bench-") as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(
            [sys.executable, "-m", "perception.cli", "triton-repo", str(args.model), "--out", str(repo)]
            + ["--imgsz", str(h), str(w)],
            check=True,
            timeout=300,
        )
        http_port, grpc_port = free_ports(2)
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 - closed below
        server = subprocess.Popen(
            [str(TRITON_PYTHON), str(REPO / "tests" / "triton_server.py"), str(repo)]
            + ["--http-port", str(http_port), "--grpc-port", str(grpc_port)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            ready = server.stdout.readline()
            if not ready.startswith("ready"):
                sys.exit(
                    f"error: Triton server did not start: {(Path(tmp) / 'server.log').read_text()[-2000:]}"
                )
            run(args, frames, (h, w), http_port, grpc_port)
        finally:
            server.terminate()
            server.wait(60)
            log.close()


def run(args, frames, input_hw, http_port: int, grpc_port: int) -> None:
    base = {"input_size": list(input_hw)}
    direct_cfg = load_config(overrides={"detector": {**base, "backend": "onnxruntime"}})

    def triton_cfg(scheme: str, port: int):
        return load_config(
            overrides={
                "detector": {**base, "backend": "triton", "triton_url": f"{scheme}://127.0.0.1:{port}"}
            }
        )

    model = args.model
    detectors = {
        "onnxruntime (direct)": create_detector(model, direct_cfg),
        "triton gRPC": create_detector(model, triton_cfg("grpc", grpc_port)),
        "triton HTTP": create_detector(model, triton_cfg("http", http_port)),
    }
    stats_client = triton_http.InferenceServerClient(f"127.0.0.1:{http_port}", network_timeout=60)
    served = model.stem
    before = stats_client.get_inference_statistics(served)["model_stats"][0]
    lat = latency(detectors, frames, args.rounds)
    after = stats_client.get_inference_statistics(served)["model_stats"][0]
    n = len(frames) * args.rounds
    print(f"\n{model.name} at {input_hw[0]}x{input_hw[1]}, {n} frames each, batch 1, interleaved\n")
    print("| path | detect() p50 ms | p90 ms | inference step p50 ms | p90 ms | overhead p50 ms |")
    print("|---|---|---|---|---|---|")
    ref = pct(lat["onnxruntime (direct)"]["call"], 50)
    for name, v in lat.items():
        print(
            f"| {name} | {pct(v['call'], 50):.1f} | {pct(v['call'], 90):.1f} | "
            f"{pct(v['inference'], 50):.1f} | {pct(v['inference'], 90):.1f} | "
            f"{pct(v['call'], 50) - ref:+.1f} |"
        )
    # Where a request's time goes inside the server (Triton's statistics: means over the requests above).
    requests = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    steps = {}
    for step in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        ns = after["inference_stats"][step]["ns"] - before["inference_stats"][step]["ns"]
        steps[step] = ns / 1e6 / max(1, requests)
    print(
        f"\nInside the server, mean per request ({requests} requests): {steps['success']:.1f} ms in all, "
        f"queue {steps['queue']:.1f}, input {steps['compute_input']:.1f}, "
        f"inference {steps['compute_infer']:.1f} (the Python stub and ONNX Runtime), "
        f"output {steps['compute_output']:.1f}"
    )

    def counts() -> tuple[int, int]:
        s = stats_client.get_inference_statistics(served)["model_stats"][0]
        return s["inference_count"], s["execution_count"]

    fps: dict[tuple[str, int], list[float]] = {}
    batch: dict[int, list[float]] = {}
    setups = {}
    for c in args.clients:
        first = create_detector(model, direct_cfg, requests=c)
        setups[("direct", c)] = [first, *(first.fork() for _ in range(c - 1))]
        first = create_detector(model, triton_cfg("grpc", grpc_port), requests=c)
        setups[("triton", c)] = [first, *(first.fork() for _ in range(c - 1))]
    order = list(setups)
    for r in range(args.rounds):
        shift = r % len(order)
        for key in order[shift:] + order[:shift]:
            before = counts()
            fps.setdefault(key, []).append(throughput(setups[key], frames, args.seconds))
            if key[0] == "triton":
                after = counts()
                batch.setdefault(key[1], []).append((after[0] - before[0]) / max(1, after[1] - before[1]))
        print(f"round {r + 1}: " + ", ".join(f"{k[0]} x{k[1]}: {fps[k][-1]:.1f}" for k in order), flush=True)

    print(f"\nthroughput, {args.seconds:g} s per run, {args.rounds} rounds (frames per second, median)\n")
    print(
        "| clients | onnxruntime direct FPS | Triton gRPC FPS | Triton / direct (median of rounds) "
        "| mean batch on the server |"
    )
    print("|---|---|---|---|---|")
    for c in args.clients:
        d, t = fps[("direct", c)], fps[("triton", c)]
        ratio = statistics.median(a / b for a, b in zip(t, d, strict=True))
        print(
            f"| {c} | {statistics.median(d):.1f} ({', '.join(f'{v:.1f}' for v in d)}) | "
            f"{statistics.median(t):.1f} ({', '.join(f'{v:.1f}' for v in t)}) | {ratio:.2f} | "
            f"{statistics.median(batch[c]):.2f} |"
        )
    stats_client.close()


if __name__ == "__main__":
    main()
