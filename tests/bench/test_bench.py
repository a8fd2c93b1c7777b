"""`perception bench` on a short cut of the real clip: the figures it reports are consistent with each
other and with the run (never that the machine is fast)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from perception.bench import latency_stats
from perception.detect.auto.choose import candidates, openvino_default_precision
from perception.detect.auto.machine import machine_info
from tests.conftest import HIGHWAY_CLIP, YOLOX_ONNX
from tests.helpers import run_cli

KIND = "integration"

CUT_FRAMES = 40
WARMUP = 5
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first CUT_FRAMES frames of the highway clip, at its own 25 fps."""
    path = tmp_path_factory.mktemp("clip") / "cut.mp4"
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    writer = None
    for _ in range(CUT_FRAMES):
        ok, image = cap.read()
        assert ok
        if writer is None:
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
        writer.write(image)
    writer.release()
    cap.release()
    return path


def bench(cut_clip: Path, out: Path, *args: str) -> dict:
    result = run_cli(
        "bench", cut_clip, "--model", YOLOX_ONNX, "--imgsz", "384", "640", "--warmup", str(WARMUP),
        "--out", out, *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads((out / "bench.json").read_text())


@pytest.fixture(scope="module")
def fast_run(cut_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench_fast")
    return bench(cut_clip, out, "--mode", "fast", "--compare", "sequential,detector", "--repeat", "2"), out


@pytest.fixture(scope="module")
def realtime_run(cut_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench_realtime")
    args = ("--mode", "realtime", "--compare", "sequential,detector", "--frames", "30")
    return bench(cut_clip, out, *args), out


def check_consistent(data: dict, frames_per_run: int, repeat: int) -> None:
    for key in ("schema_version", "command", "source", "model", "mode", "machine", "versions", "detector"):
        assert key in data
    assert data["repeat"] == repeat and data["warmup_frames"] == WARMUP
    assert {"numpy", "onnxruntime", "python"} <= set(data["versions"])
    for name, mode in data["modes"].items():
        frames = mode["frames"]
        dropped = frames["dropped"]["replaced_by_newer"] + frames["dropped"]["stale"]
        assert frames["processed"] + dropped == frames["grabbed"] == frames_per_run * repeat, name
        assert frames["warmup"] == WARMUP * repeat, name
        assert frames["measured"] + frames["warmup"] == frames["processed"], name
        assert len(mode["runs"]) == len(mode["fps_runs"]) == repeat
        assert mode["fps_median"] > 0
        for run in mode["runs"]:
            assert run["cpu_s"] >= 0 and run["peak_rss_mib"] > 0 and run["elapsed_s"] > 0
        for stage, s in mode["latency_ms"].items():
            assert s["n"] > 0, (name, stage)
            assert 0 <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"], (name, stage)
        assert mode["latency_ms"]["e2e"]["n"] == frames["measured"]


def test_fast_figures_add_up(fast_run: tuple[dict, Path]) -> None:
    data, _ = fast_run
    assert data["mode"] == "fast"
    assert set(data["modes"]) == {"pipeline", "sequential", "detector"}
    check_consistent(data, CUT_FRAMES, repeat=2)
    pipeline = data["modes"]["pipeline"]["latency_ms"]
    assert {"grab", "wait", "detect", "track", "ttc", "sink", "queues", "e2e"} <= set(pipeline)
    assert {"preprocess", "inference", "postprocess"} <= set(pipeline)  # ONNX Runtime reports its steps
    assert pipeline["inference"]["p50"] <= pipeline["detect"]["p50"]
    assert "e2e_due" not in pipeline  # frames are not due at any time in fast mode
    assert data["modes"]["pipeline"]["frames"]["dropped"] == {"replaced_by_newer": 0, "stale": 0}
    # e2e covers the stages it spans
    assert pipeline["e2e"]["max"] >= pipeline["detect"]["p50"]
    ratios = ("fps_ratio_vs_detector", "fps_ratio_vs_sequential")
    cpu = ("cpu_ms_per_frame_pipeline", "cpu_ms_per_frame_detector", "cpu_ms_per_frame_sequential")
    cpu += ("cpu_ratio_detector_vs_pipeline",)
    assert set(data["checks"]) == {"pipeline_fps", *ratios, *(f"{r}_round_median" for r in ratios), *cpu}
    checks = data["checks"]
    cpu_s = {m: sum(r["cpu_s"] for r in data["modes"][m]["runs"]) for m in ("pipeline", "detector")}
    frames = {m: data["modes"][m]["frames"]["processed"] for m in ("pipeline", "detector")}
    assert checks["cpu_ms_per_frame_pipeline"] == pytest.approx(1000 * cpu_s["pipeline"] / frames["pipeline"])
    assert checks["cpu_ratio_detector_vs_pipeline"] == pytest.approx(
        checks["cpu_ms_per_frame_detector"] / checks["cpu_ms_per_frame_pipeline"]
    )
    assert data["checks"]["pipeline_fps"] == data["modes"]["pipeline"]["fps_median"]
    pipe_runs, det_runs = data["modes"]["pipeline"]["fps_runs"], data["modes"]["detector"]["fps_runs"]
    by_round = sorted(p / d for p, d in zip(pipe_runs, det_runs, strict=True))
    assert data["checks"]["fps_ratio_vs_detector_round_median"] == pytest.approx(sum(by_round) / 2)


def test_backends_side_by_side(cut_clip: Path, tmp_path: Path) -> None:
    """Every candidate of backend auto as a pipeline mode in the same rounds, the plain ones marked, and
    auto's FPS over the faster plain runtime's in the checks."""
    data = bench(
        cut_clip, tmp_path, "--mode", "fast", "--compare", "backends", "--repeat", "2", "--frames", "20"
    )
    expected = {f"pipeline:{c.backend}-{c.precision}" for c in candidates("onnx", machine_info(), "auto")}
    assert set(data["modes"]) == {"pipeline", *expected}
    check_consistent(data, 20, repeat=2)
    described = data["detector"]["backend_modes"]
    assert set(described) == expected
    plain_ov = f"pipeline:openvino-{openvino_default_precision()}"
    assert described["pipeline:onnxruntime-fp32"]["plain"] and described[plain_ov]["plain"]
    assert sum(v["plain"] for v in described.values()) == 2  # plain ONNX Runtime and plain OpenVINO
    choice = data["detector"]["choice"]
    assert f"pipeline:{choice['backend']}-{choice['precision']}" in expected
    plain = [n for n, v in described.items() if v["plain"]]
    best = max(data["modes"][n]["fps_median"] for n in plain)
    assert data["checks"]["fps_ratio_auto_vs_best_plain"] == pytest.approx(
        data["checks"]["pipeline_fps"] / best
    )
    assert "fps_ratio_auto_vs_best_plain_round_median" in data["checks"]


def test_realtime_figures_add_up(realtime_run: tuple[dict, Path]) -> None:
    data, _ = realtime_run
    assert data["mode"] == "realtime" and data["frames_limit"] == 30
    check_consistent(data, 30, repeat=1)
    for name in ("pipeline", "sequential"):
        lat = data["modes"][name]["latency_ms"]
        assert lat["e2e_due"]["p50"] >= lat["e2e"]["p50"] - 1e-6  # due no later than captured
        assert "slope_ms_per_s" in data["modes"][name]["drift"]
    checks = data["checks"]
    assert checks["frame_interval_ms"] == pytest.approx(40.0, rel=0.01)
    assert checks["e2e_p99_ms"] == data["modes"]["pipeline"]["latency_ms"]["e2e_due"]["p99"]
    detect_p50 = data["modes"]["detector"]["latency_ms"]["detect"]["p50"]
    assert checks["e2e_p99_budget_ms"] == pytest.approx(detect_p50 + checks["frame_interval_ms"])


def test_report_and_plots(fast_run: tuple[dict, Path]) -> None:
    data, out = fast_run
    report = (out / "report.md").read_text()
    assert "| mode | FPS (median) |" in report and "pipeline / mode" in report
    for name in data["modes"]:
        assert f"| {name} |" in report
    assert data["plots"] == ["latency_cdf.png", "e2e_over_time.png"]
    for plot in data["plots"]:
        assert (out / plot).read_bytes()[:8] == PNG_MAGIC


@pytest.mark.unit
def test_latency_stats_ordered_and_empty() -> None:
    s = latency_stats([5.0, 1.0, 3.0, 100.0, 2.0])
    assert s["p50"] == 3.0 and s["max"] == 100.0 and s["n"] == 5
    assert s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert latency_stats([])["n"] == 0


def test_bad_arguments_fail_cleanly(cut_clip: Path, tmp_path: Path) -> None:
    result = run_cli("bench", cut_clip, "--model", YOLOX_ONNX, "--compare", "nope", "--out", tmp_path)
    assert result.returncode != 0 and "error:" in result.stderr
    missing = run_cli("bench", tmp_path / "none.mp4", "--model", YOLOX_ONNX, "--out", tmp_path)
    assert missing.returncode == 1 and "source not found" in missing.stderr


def test_without_matplotlib_the_figures_are_kept(cut_clip: Path, tmp_path: Path) -> None:
    """The plots need an optional library: without it, one line says so and bench.json and report.md
    (written first) are all there. The library is made unimportable the way Python itself marks a module
    missing (None in sys.modules)."""
    args = ["bench", str(cut_clip), "--model", str(YOLOX_ONNX), "--imgsz", "384", "640", "--frames", "12"]
    args += ["--warmup", "2", "--compare", "sequential", "--out", str(tmp_path)]
    code = "import sys; sys.modules['matplotlib'] = None; from perception.cli.main import main; "
    code += f"sys.exit(main({args!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert [line for line in lines if "plots" in line] == [
        "bench: no plots: matplotlib is not installed (pip install -e '.[bench]')"
    ]
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["plots"] == [] and set(data["modes"]) == {"pipeline", "sequential"}
    assert "| pipeline |" in (tmp_path / "report.md").read_text()
    assert not list(tmp_path.glob("*.png"))


def test_ultralytics_baseline_refused_for_a_model_it_cannot_decode(cut_clip: Path, tmp_path: Path) -> None:
    """YOLOX has no Ultralytics metadata: Ultralytics would read its head as its own and report nonsense
    (class ids in the thousands) at a confident speed. Refused in one line; the other modes are kept."""
    pytest.importorskip("ultralytics")
    data = bench(cut_clip, tmp_path, "--compare", "detector,ultralytics", "--frames", "12")
    assert set(data["modes"]) == {"pipeline", "detector"}
    assert "no Ultralytics metadata" in data["errors"]["ultralytics"]
    assert "ultralytics left out: refused:" in (tmp_path / "report.md").read_text()
