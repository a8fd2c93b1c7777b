"""`perception quantize`: a real FP32 model quantized to INT8 by NNCF on real frames; written only when the
accuracy check passes, refused (nothing written, figures printed) when it does not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from perception.core.config import Config
from perception.detect import create_detector
from perception.detect.auto.accuracy import load_frames
from perception.detect.quantize import head_tail, split_frames
from perception.detect.quantized import is_quantized
from tests.conftest import ASSETS, HIGHWAY_CLIP, YOLOX_ONNX
from tests.helpers import run_cli, with_detector

KIND = "integration"

MOT17_MINI = ASSETS / "mot" / "MOT17-mini"
YOLOV8_IR = ASSETS / "models" / "yolov8n_int8_openvino_model"
SIZE = ("256", "416")  # small: quick to calibrate and check


def test_held_back_frames_never_calibrate() -> None:
    frames = load_frames(HIGHWAY_CLIP, 40)
    calibration, held = split_frames(frames)
    assert len(held) == 10 and len(calibration) == 30
    assert not {f.name for f in held} & {f.name for f in calibration}


def test_head_tail_is_what_follows_the_last_convolutions() -> None:
    import openvino as ov

    model = ov.Core().read_model(str(YOLOX_ONNX))
    tail = set(head_tail(model))
    kinds = {op.get_friendly_name(): op.get_type_name() for op in model.get_ordered_ops()}
    assert tail and not any(kinds[name] in ("Convolution", "GroupConvolution") for name in tail)
    assert any(kinds[name] == "Concat" for name in tail) and any(kinds[name] == "Sigmoid" for name in tail)
    assert len(tail) < len(kinds) // 10  # the head's post-processing, not the network


def test_quantize_writes_an_int8_model_that_keeps_recall(tmp_path: Path, cfg: Config, highway_frame) -> None:
    out = tmp_path / "yolox_int8"
    result = run_cli(
        "quantize", YOLOX_ONNX, "--calib", HIGHWAY_CLIP, "--imgsz", *SIZE, "--frames", "64",
        "--max-drop", "0.05", "--out", out, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout
    assert "accuracy check on 16 frames (every 4th of" in lines and "reference: fp32 detections" in lines
    assert "recall: FP32 1.0000, INT8 " in lines and "ms (OpenVINO)" in lines and f"wrote {out}" in lines
    assert is_quantized(out) and (out / "yolox_nano.xml").is_file() and (out / "yolox_nano.bin").is_file()
    int8 = create_detector(out, with_detector(cfg, backend="openvino", precision="int8"))
    assert int8.input_hw == (256, 416) and int8.layout == "yolox"
    fp32 = create_detector(YOLOX_ONNX, with_detector(cfg, backend="onnxruntime", input_size=(256, 416)))
    got, want = int8.detect(highway_frame), fp32.detect(highway_frame)
    assert len(want) > 0 and abs(len(got) - len(want)) <= max(2, len(want) // 4)


def test_quantize_refuses_a_model_that_loses_recall(tmp_path: Path) -> None:
    """Calibrated on flat grey frames, the INT8 ranges clip real images: recall collapses on MOT17's ground
    truth, and nothing is written."""
    grey = tmp_path / "grey"
    grey.mkdir()
    for i in range(24):
        cv2.imwrite(str(grey / f"{i:03d}.png"), np.full((360, 640, 3), 100 + i, np.uint8))
    out = tmp_path / "never"
    result = run_cli(
        "quantize", YOLOX_ONNX, "--calib", grey, "--check", MOT17_MINI, "--imgsz", *SIZE, "--out", out,
        timeout=600,
    )  # fmt: skip
    assert result.returncode == 1
    assert "reference: ground truth" in result.stdout and "recall: FP32 " in result.stdout
    assert "error: INT8 model not written: recall drops" in result.stderr
    assert not out.exists()


def test_quantize_errors_are_one_line(tmp_path: Path) -> None:
    cases = [
        (("quantize", YOLOV8_IR, "--calib", HIGHWAY_CLIP), "already quantized"),
        (("quantize", YOLOX_ONNX, "--calib", tmp_path / "none"), "frames not found"),
        (("quantize", tmp_path / "none.onnx", "--calib", HIGHWAY_CLIP), "model not found"),
        (("quantize", YOLOX_ONNX, "--calib", ASSETS / "images" / "udacity_highway"), "needs at least 24"),
    ]
    for args, needle in cases:
        result = run_cli(*args, "--out", tmp_path / "out", timeout=300)
        assert result.returncode == 1, args
        assert needle in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr
    assert not (tmp_path / "out").exists()
