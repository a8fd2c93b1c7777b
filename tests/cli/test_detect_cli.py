"""The flags users bring from Ultralytics, on `detect` and `run`: `--conf`, `--classes`, `--imgsz`; what
`detect` shows (a display threshold); no abbreviated options."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_cli import assert_one_line_error
from tests.conftest import MOT17_13, STILLS, YOLOX_ONNX
from tests.helpers import read_events, run_cli

KIND = "integration"


def detections(stdout: str) -> list[tuple[str, str, float]]:
    """(label, class, score) of every detection `detect` printed."""
    rows = [line.split() for line in stdout.splitlines() if line.startswith("  ")]
    return [(r[0], " ".join(r[1:-5]), float(r[-5])) for r in rows]


@pytest.fixture(scope="module")
def default_detect(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("detect")
    return run_cli("detect", STILLS, "--model", YOLOX_ONNX, "--out", out), out


def test_detect_shows_what_scores_above_the_display_threshold(default_detect) -> None:
    proc, out = default_detect
    assert proc.returncode == 0, proc.stderr
    found = detections(proc.stdout)
    assert found and min(score for _, _, score in found) >= 0.25  # output.display_conf
    assert "below 0.25 not shown" in proc.stdout  # detected at 0.15 (the tracker wants them), not shown
    assert len(list(out.glob("*.jpg"))) == len(list(STILLS.glob("*.jpg")))


def test_detect_conf_sets_what_is_shown(tmp_path: Path, default_detect) -> None:
    low = run_cli("detect", STILLS, "--model", YOLOX_ONNX, "--out", tmp_path, "--conf", "0.1")
    high = run_cli("detect", STILLS, "--model", YOLOX_ONNX, "--out", tmp_path, "--conf", "0.6")
    assert low.returncode == high.returncode == 0, low.stderr + high.stderr
    shown = [len(detections(p.stdout)) for p in (low, default_detect[0], high)]
    assert shown[0] > shown[1] > shown[2] > 0
    assert min(score for _, _, score in detections(high.stdout)) >= 0.6
    assert "not shown" not in low.stdout  # --conf is both thresholds: nothing detected is hidden


def test_detect_classes_by_name_or_index_and_imgsz(tmp_path: Path) -> None:
    by_name = run_cli("detect", STILLS, "--model", YOLOX_ONNX, "--out", tmp_path, "--classes", "car")
    by_index = run_cli("detect", STILLS, "--model", YOLOX_ONNX, "--out", tmp_path, "--classes", "2")
    assert by_name.returncode == by_index.returncode == 0, by_name.stderr + by_index.stderr
    assert detections(by_name.stdout) == detections(by_index.stdout)
    assert {cls for _, cls, _ in detections(by_name.stdout)} == {"car"}
    sized = run_cli("detect", STILLS, "--model", YOLOX_ONNX, "--out", tmp_path, "--imgsz", "320")
    assert sized.returncode == 0 and "[onnxruntime, yolox, 320x320]" in sized.stderr


@pytest.mark.parametrize(
    ("classes", "needle"),
    [
        (["spaceship"], "detector.classes: 'spaceship' is not a class of the model"),
        (["80"], "detector.classes: 80 is no class index of the model (0-79)"),
        (["umbrella"], "'umbrella' is in no label of config classes"),
    ],
)
def test_detect_classes_the_model_does_not_have(tmp_path: Path, classes: list[str], needle: str) -> None:
    proc = run_cli("detect", STILLS, "--model", YOLOX_ONNX, "--out", tmp_path, "--classes", *classes)
    assert_one_line_error(proc, needle)


def test_run_classes_keeps_only_those(tmp_path: Path) -> None:
    proc = run_cli("run", MOT17_13 / "img1", "--model", YOLOX_ONNX, "--out", tmp_path, "--classes", "person")
    assert proc.returncode == 0, proc.stderr
    tracks = [t for e in read_events(tmp_path / "events.jsonl") if e["type"] == "frame" for t in e["tracks"]]
    assert tracks and {t["class"] for t in tracks} == {"person"}  # the street has cars too (other tests)


@pytest.mark.unit
def test_no_abbreviated_options(tmp_path: Path) -> None:
    """`--conf` must never be read as `--config`, nor `--cl` as `--classes`."""
    proc = run_cli("detect", STILLS, "--model", YOLOX_ONNX, "--out", tmp_path, "--cl", "car")
    assert proc.returncode == 2 and "unrecognized arguments: --cl" in proc.stderr
    proc = run_cli("run", STILLS, "--model", YOLOX_ONNX, "--out", tmp_path, "--confi", "x.yaml")
    assert proc.returncode == 2 and "unrecognized arguments: --confi" in proc.stderr
