"""Shared fixtures. Real assets come from ../shared (or $PERCEPTION_ASSETS); nothing is mocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.config import Config, load_config
from perception.events import parse_event

REPO = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", REPO.parent / "shared")).resolve()
YOLOX_ONNX = ASSETS / "models" / "yolox_nano.onnx"
HIGHWAY_CLIP = ASSETS / "videos" / "highway_960x540_25fps.mp4"
MOT17_13 = ASSETS / "mot" / "MOT17-mini" / "MOT17-13-FRCNN"
STILLS = ASSETS / "images" / "udacity_highway"
HIGHWAY_FRAMES = 221


def pytest_configure(config: pytest.Config) -> None:
    if not YOLOX_ONNX.is_file():
        raise pytest.UsageError(
            f"test assets not found at {ASSETS}: set PERCEPTION_ASSETS to the shared folder"
        )


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


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_events(path: Path) -> list[dict]:
    """Every line of an events.jsonl, each checked against the schema in perception/events.py."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            parse_event(line)
        except ValueError as exc:
            raise AssertionError(f"{path}:{number} does not match the events schema: {exc}") from None
    return [json.loads(line) for line in lines]


def video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """Decode the whole file: counts frames a player would show, not what the header claims."""
    cap = cv2.VideoCapture(str(path))
    count, size = 0, (0, 0)
    while True:
        ok, image = cap.read()
        if not ok:
            break
        count += 1
        size = image.shape[:2]
    cap.release()
    return count, size


def video_timestamps_s(path: Path) -> list[float]:
    """Presentation time of every frame of a video, in seconds from its first, as a player shows them."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.pts * frame.time_base) for frame in container.decode(stream)]
    return [t - times[0] for t in times] if times else []


@pytest.fixture(scope="session")
def highway_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("highway")
    return run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", out), out
