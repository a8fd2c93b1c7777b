"""Shared fixtures and the test kinds. Real assets come from ../shared (or $PERCEPTION_ASSETS); nothing is
mocked.

Every test has exactly one kind, as a marker:
- `unit`: no assets, no servers; seconds. `PERCEPTION_ASSETS=/nonexistent python -m pytest -m unit` passes.
- `integration`: real models, clips and images from the shared folder (and real local servers: HTTP,
  Triton, a browser).
- `live`: a real RTSP server streaming the clip (GStreamer, installed by .ci/run).
A test module declares its kind with `KIND = "unit" | "integration" | "live"`; a test that differs says so
with its own marker. A module without KIND is a collection error, so no test goes unclassified.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.core.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", REPO.parent / "shared")).resolve()
YOLOX_ONNX = ASSETS / "models" / "yolox_nano.onnx"
HIGHWAY_CLIP = ASSETS / "videos" / "highway_960x540_25fps.mp4"
MOT17_13 = ASSETS / "mot" / "MOT17-mini" / "MOT17-13-FRCNN"
STILLS = ASSETS / "images" / "udacity_highway"

KINDS = ("unit", "integration", "live")

# Backend auto without its timed trial: a test's result must not depend on which runtime won a race on a busy
# machine (tests/detect/auto/test_choose.py runs the trial itself). Choices are cached in a folder of this
# session's own.
os.environ.setdefault("PERCEPTION_AUTO_TRIAL", "0")
_CACHE = tempfile.mkdtemp(prefix="perception-test-cache-")
os.environ.setdefault("PERCEPTION_CACHE_DIR", _CACHE)


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        own = [m.name for m in item.own_markers if m.name in KINDS]
        if len(own) > 1:
            raise pytest.UsageError(f"{item.nodeid}: more than one test kind {own}")
        if own:
            continue
        kind = getattr(item.module, "KIND", None)
        if kind not in KINDS:
            raise pytest.UsageError(f"{item.module.__name__}: set KIND to one of {', '.join(KINDS)}")
        item.add_marker(kind)


@pytest.fixture(autouse=True)
def _assets_for_this_kind(request: pytest.FixtureRequest) -> None:
    """Integration and live tests need the shared folder: without it, one clear failure each."""
    if request.node.get_closest_marker("unit") is None and not YOLOX_ONNX.is_file():
        pytest.fail(f"test assets not found at {ASSETS}: set PERCEPTION_ASSETS to the shared folder")


@pytest.fixture(scope="session")
def cfg() -> Config:
    return load_config()


@pytest.fixture(scope="session")
def highway_frame() -> np.ndarray:
    """Frame 100 of the real dashcam clip (several cars ahead)."""
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 100)
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


@pytest.fixture(scope="session")
def highway_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One `perception run` of the real clip, shared by the tests that read its outputs."""
    from tests.helpers import run_cli

    out = tmp_path_factory.mktemp("highway")
    return run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", out), out
