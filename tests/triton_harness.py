"""The real Triton server for the tests: model repositories written by `perception triton-repo`, served by
tests/triton_server.py in the venv `.ci/run` builds (`.venv-triton`, Debian's python3). Every wait has a
deadline, and every server started here is killed on teardown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import onnx
import pytest

from tests.conftest import YOLOX_ONNX
from tests.helpers import run_cli, wait_ready

REPO = Path(__file__).resolve().parent.parent
TRITON_PYTHON = REPO / ".venv-triton" / "bin" / "python"
TRITON_SERVER = REPO / "tests" / "triton_server.py"
WAIT_S = 120  # deadline for anything a test waits on; generous, as CI machines are shared


def triton_missing() -> str | None:
    probe = "import pytriton, onnxruntime, numpy"
    try:
        proc = subprocess.run([str(TRITON_PYTHON), "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{TRITON_PYTHON} cannot run: {exc}"
    return proc.stderr.strip().splitlines()[-1] if proc.returncode else None


def require_triton() -> None:
    missing = triton_missing()
    if missing:
        pytest.skip(f"no Triton test server ({missing}); .ci/run builds .venv-triton")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TritonServer:
    """A model repository served on loopback, in a process that can be killed and started again on the
    same ports (as a server that crashes and is restarted)."""

    def __init__(self, repository: Path, log: Path) -> None:
        self.repository = repository
        self.log = log
        self.http_port, self.grpc_port = free_port(), free_port()
        self.grpc_url = f"grpc://127.0.0.1:{self.grpc_port}"
        self.http_url = f"http://127.0.0.1:{self.http_port}"
        self.shm_prefix = f"perception_test_triton_{self.grpc_port}_"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        cmd = [str(TRITON_PYTHON), str(TRITON_SERVER), str(self.repository)]
        cmd += ["--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port)]
        cmd += ["--work-dir", str(self.log.parent), "--shm-prefix", self.shm_prefix]
        with self.log.open("a") as log:
            # Its own process group: kill() takes tritonserver and its Python stubs along.
            self.proc = proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True
            )
        ready = wait_ready(proc, WAIT_S)
        if not ready.startswith("ready"):
            self.kill()
            raise RuntimeError(f"Triton server did not start: {ready} {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL to the launcher, tritonserver and its stubs (a crash); then what they leave behind:
        their shared-memory regions (their temporary files are under the test's tmp_path)."""
        if self.proc is not None and self.proc.poll() is None:
            self.resume()  # a paused process must run to die
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=WAIT_S)
        self.proc = None
        for region in Path("/dev/shm").glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)

    def _server_pids(self) -> list[int]:
        """tritonserver: the launcher's child."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def pause(self) -> None:
        """A server that hangs: connections are accepted by the kernel, nothing answers."""
        for pid in self._server_pids():
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        for pid in self._server_pids():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> int:
        """SIGTERM: the clean way; the launcher's exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=WAIT_S)
        self.proc = None
        return code


def write_repo(repo: Path, model: Path, *args: str) -> Path:
    """`perception triton-repo`, the real command; the model's folder."""
    proc = run_cli("triton-repo", model, "--out", repo, *args, timeout=WAIT_S)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip())


def yolox_variant(
    path: Path, names: dict[int, str] | None = None, static_hw: tuple[int, int] | None = None
) -> Path:
    """YOLOX-Nano with Ultralytics-style `names` metadata, or with a static 1 x 3 x H x W input (a graph
    that cannot batch), saved to `path`."""
    model = onnx.load(str(YOLOX_ONNX))
    if names is not None:
        prop = model.metadata_props.add()
        prop.key, prop.value = "names", repr(names)
    if static_hw is not None:
        dims = model.graph.input[0].type.tensor_type.shape.dim
        for dim, value in zip(dims, (1, 3, *static_hw), strict=True):
            dim.Clear()
            dim.dim_value = value
        out_dims = model.graph.output[0].type.tensor_type.shape.dim
        out_dims[0].Clear()
        out_dims[0].dim_value = 1
    onnx.save(model, str(path))
    return path
