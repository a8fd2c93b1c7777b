"""benchmarks/gpu_check.sh, as far as a machine without a GPU can check it: it finds a Python with torch, the
package and the assets, records the environment and lays out every step (--dry-run runs none of them; the
full CPU fallback is `bash benchmarks/gpu_check.sh OUT` without it, ~1-2 minutes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from perception.detect.tensorrt.gpu import tensorrt_available
from tests.conftest import REPO

KIND = "integration"


def test_gpu_check_dry_run(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out), "--dry-run"],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    environment = (out / "environment.txt").read_text()
    assert "torch " in environment and "GPU available:" in environment and "ultralytics " in environment
    err = proc.stderr
    for step in ("run_ultralytics:", "bench_ultralytics:", "--compare detector,sequential,ultralytics"):
        assert step in err
    gpu = "GPU available: True" in environment
    assert ("device cuda:0, precision fp16" in err) == gpu and ("no CUDA GPU" in err) != gpu
    assert ("build_engine:" in err) == (gpu and tensorrt_available())
    assert (out / "gpu.yaml").read_text().count("ultralytics_device") == 1


@pytest.mark.unit
def test_gpu_check_needs_an_output_folder() -> None:
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2 and "usage:" in proc.stderr
