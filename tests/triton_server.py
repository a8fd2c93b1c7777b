"""A real NVIDIA Triton Inference Server on loopback, for the Triton tests and benchmarks.

    .venv-triton/bin/python tests/triton_server.py REPOSITORY --http-port P --grpc-port Q

Serves a model repository as `perception triton-repo` writes it (MODEL/config.pbtxt with
`dynamic_batching`, MODEL/1/model.onnx) with the `tritonserver` binary (Triton 2.51) that the
`nvidia-pytriton==0.7.0` wheel bundles: the real server, its model-config parser, dynamic batcher, HTTP and
gRPC endpoints, CPU-only here. That build ships only Triton's Python backend, so the C++ ONNX Runtime
backend that NVIDIA's images use for `platform: "onnxruntime_onnx"` is stood in for by a Python-based
backend of the same name (tests/triton_backends/onnxruntime/model.py: ONNX Runtime on each batch Triton
formed). Its stub links Debian's libpython3.11, so this runs in the venv `.ci/run` makes with
`/usr/bin/python3 -m venv .venv-triton` (`nvidia-pytriton==0.7.0`, `numpy<2`, `onnxruntime`).

Prints `ready http://127.0.0.1:P grpc://127.0.0.1:Q` once every model is loaded and both endpoints answer;
SIGTERM or SIGINT stop the server (in-flight requests get `--exit-timeout-s`) and remove the temporary
backend folder and its shared-memory regions (`--shm-prefix`); after a SIGKILL, whoever started it removes
them (tests/triton_harness.py kills the process group and the regions). Exits non-zero if the server
cannot start within `--start-timeout-s` (its log is on stderr).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytriton

BACKENDS = Path(__file__).resolve().parent / "triton_backends"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """The server is killed with this launcher, even by SIGKILL: no orphan holds the test ports."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def backend_directory(root: Path) -> Path:
    """Triton's backend folder: its Python backend (library, utils, the stub for this Python) and the
    Python-based backends of tests/triton_backends. Copies, not links: Triton refuses a backend library
    whose real path lies outside the backend folder."""
    dist = Path(pytriton.__file__).parent / "tritonserver"
    python = root / "python"
    python.mkdir(parents=True)
    shutil.copy2(dist / "backends" / "python" / "libtriton_python.so", python)
    shutil.copy2(dist / "backends" / "python" / "triton_python_backend_utils.py", python)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy2(dist / "python_backend_stubs" / version / "triton_python_backend_stub", python)
    for backend in BACKENDS.iterdir():
        if (backend / "model.py").is_file():
            shutil.copytree(backend, root / backend.name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def remove_shared_memory(prefix: str) -> None:
    """The regions a server (or its stubs) left behind when killed: /dev/shm is memory."""
    for region in Path("/dev/shm").glob(f"{prefix}*"):
        region.unlink(missing_ok=True)


def _ready(http_port: int, grpc_port: int, timeout_s: float) -> bool:
    """Server ready (every model loaded, strict readiness) over HTTP, and the gRPC port accepting."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=timeout_s) as r:
            if r.status != 200:
                return False
        with socket.create_connection(("127.0.0.1", grpc_port), timeout=timeout_s):
            return True
    except (OSError, urllib.error.URLError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repository", type=Path, help="model repository (perception triton-repo --out)")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--start-timeout-s", type=float, default=120.0)
    parser.add_argument("--exit-timeout-s", type=int, default=5)
    parser.add_argument("--log-verbose", type=int, default=0)
    parser.add_argument(
        "--work-dir", type=Path, help="where the temporary backend folder goes (default: /tmp)"
    )
    parser.add_argument(
        "--shm-prefix",
        default=f"perception_triton_{os.getpid()}_",
        help="name prefix of the server's shared-memory regions in /dev/shm (removed at exit)",
    )
    args = parser.parse_args()
    if not args.repository.is_dir():
        print(f"error: model repository not found: {args.repository}", file=sys.stderr)
        return 1

    dist = Path(pytriton.__file__).parent
    stopping: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with tempfile.TemporaryDirectory(prefix="triton-backends-", dir=args.work_dir) as tmp:
        backends = backend_directory(Path(tmp) / "backends")
        env = {
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",  # the stub finds this venv's python
            "LD_LIBRARY_PATH": str(dist.parent / "nvidia_pytriton.libs"),
            "HOME": tmp,
        }
        cmd = [
            str(dist / "tritonserver" / "bin" / "tritonserver"),
            f"--model-repository={args.repository.resolve()}",
            f"--backend-directory={backends}",
            "--http-address=127.0.0.1",
            f"--http-port={args.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={args.grpc_port}",
            "--allow-metrics=false",
            "--disable-auto-complete-config",  # the config must be complete as written
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={args.exit_timeout_s}",
            f"--log-verbose={args.log_verbose}",
            # Tensors cross to the Python stub through shared memory, grown in steps of a batch of 800x448.
            f"--backend-config=python,shm-region-prefix-name={args.shm_prefix}",
            "--backend-config=python,shm-default-byte-size=16777216",
            "--backend-config=python,shm-growth-byte-size=67108864",
        ]
        server = subprocess.Popen(cmd, env=env, stdout=sys.stderr, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + args.start_timeout_s
        while not stopping and server.poll() is None and not _ready(args.http_port, args.grpc_port, 2.0):
            if time.monotonic() > deadline:
                print(f"error: Triton not ready after {args.start_timeout_s:g} s", file=sys.stderr)
                stopping.append(0)
                break
            time.sleep(0.2)
        started = not stopping and server.poll() is None
        if started:
            print(f"ready http://127.0.0.1:{args.http_port} grpc://127.0.0.1:{args.grpc_port}", flush=True)
            while not stopping and server.poll() is None:
                time.sleep(0.1)
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=args.exit_timeout_s + 10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    remove_shared_memory(args.shm_prefix)
    if not started:
        print(f"error: tritonserver exited with {server.returncode} before it was ready", file=sys.stderr)
        return 1
    if not stopping:
        print(f"error: tritonserver exited with {server.returncode}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
