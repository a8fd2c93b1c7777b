"""`perception quantize MODEL --calib FRAMES`: static INT8 for the CPU, written only if it keeps recall.

NNCF's post-training quantization of the OpenVINO model (ONNX or IR in; OpenVINO IR out, at a fixed input
size), calibrated on real frames preprocessed by the model's own letterbox. Every fourth frame is held back:
the INT8 model's recall on those is compared with the FP32 model's (detect/auto/accuracy.py: against
ground truth where the frames have it, MOT sequences; else against FP32's confident detections), and a model
that loses more than one point is not written.

Kept in floating point: the output head's post-processing (every operation after the last convolution: box
decoding, sigmoid scores, concatenation, where one scale for boxes and scores would ruin both), the SiLU
activations' sigmoid and product, residual additions and concatenations; the convolutions themselves, nearly
all the work, run in INT8 (their inputs quantized, weights per channel).
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from perception.core.config import Config
from perception.core.errors import PerceptionError, first_line
from perception.detect.auto.accuracy import (
    MAX_RECALL_DROP,
    CheckFrame,
    RecallCheck,
    check_recall,
    load_frames,
)
from perception.detect.quantized import is_quantized

INSTALL_HINT = 'pip install -e ".[quantize]"'
HOLD_BACK_EVERY = 4  # every 4th frame is for the accuracy check, never for calibration
MIN_CALIBRATION, MIN_HELD_BACK = 16, 8
CONVOLUTIONS = ("Convolution", "GroupConvolution")
# Kept in floating point everywhere: SiLU's parts, residual additions and concatenations (their inputs come
# in different ranges; one INT8 scale for both costs recall: 1.7 points against 0.7 on MOT17-mini).
FLOAT_TYPES = ["Multiply", "Sigmoid", "Add", "Concat"]


@dataclass
class QuantizeResult:
    out: Path | None  # None: refused
    check: RecallCheck
    calibration_frames: int
    fp32_ms: float  # median inference+decode per held-back frame, same process, alternating
    int8_ms: float
    seconds: float


def split_frames(frames: Sequence[CheckFrame]) -> tuple[list[CheckFrame], list[CheckFrame]]:
    """(calibration, held back): every HOLD_BACK_EVERY-th frame held back."""
    held = [f for i, f in enumerate(frames) if i % HOLD_BACK_EVERY == HOLD_BACK_EVERY - 1]
    calib = [f for i, f in enumerate(frames) if i % HOLD_BACK_EVERY != HOLD_BACK_EVERY - 1]
    return calib, held


def head_tail(model) -> list[str]:
    """Names of the operations after the last convolutions: those with no convolution downstream."""
    ops = model.get_ordered_ops()
    reaches: dict[str, bool] = {}
    for op in reversed(ops):  # consumers come after producers in topological order
        below = False
        for out in op.outputs():
            for target in out.get_target_inputs():
                node = target.get_node()
                below = (
                    below
                    or node.get_type_name() in CONVOLUTIONS
                    or reaches.get(node.get_friendly_name(), False)
                )
        reaches[op.get_friendly_name()] = below
    skip = ("Parameter", "Result", "Constant", *CONVOLUTIONS)
    return [
        op.get_friendly_name()
        for op in ops
        if not reaches[op.get_friendly_name()] and op.get_type_name() not in skip
    ]


def _load_nncf():
    # NNCF imports torch where it is installed; torch's warning that it found no CUDA is no news on a CPU.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        import nncf
    except ImportError:
        raise PerceptionError(f"perception quantize needs NNCF: {INSTALL_HINT}") from None
    return nncf


def _time_pair(a, b, images: Sequence[np.ndarray]) -> tuple[float, float]:
    """Median detect() time of two detectors on the same frames, alternating frame by frame."""
    ta, tb = [], []
    for image in images:
        for det, times in ((a, ta), (b, tb)):
            t0 = time.perf_counter()
            det.detect(image)
            times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(ta)), float(np.median(tb))


def default_out(model: Path, input_hw: Sequence[int]) -> Path:
    stem = model.stem if model.is_file() else model.name.removesuffix("_openvino_model")
    return Path("out") / "quantize" / f"{stem}_int8_{input_hw[0]}x{input_hw[1]}_openvino_model"


def quantize(
    model_path: str | Path,
    calib: str | Path,
    cfg: Config,
    out: Path | None,
    max_frames: int = 300,
    max_drop: float = MAX_RECALL_DROP,
    check_frames: str | Path | None = None,
    say=lambda text: print(f"quantize: {text}", file=sys.stderr),
) -> QuantizeResult:
    from perception.detect import _create

    t_start = time.monotonic()
    model_path = Path(model_path)
    if not model_path.exists():
        raise PerceptionError(f"model not found: {model_path}")
    if is_quantized(model_path):
        raise PerceptionError(f"{model_path} is already quantized")
    frames = load_frames(calib, max_frames)
    if check_frames is None:
        calibration, held = split_frames(frames)
    else:  # checked on other frames (ground truth elsewhere): all of --calib calibrates
        calibration, held = frames, load_frames(check_frames, max_frames)
    if len(calibration) < MIN_CALIBRATION or len(held) < MIN_HELD_BACK:
        raise PerceptionError(
            f"calibration source {calib} gave {len(frames)} frames; quantize needs at least "
            f"{MIN_CALIBRATION + MIN_HELD_BACK} ({MIN_CALIBRATION} to calibrate, "
            f"every {HOLD_BACK_EVERY}th held back)"
        )
    nncf = _load_nncf()
    import openvino as ov

    fp32_cfg = cfg.model_copy(
        update={"detector": cfg.detector.model_copy(update={"backend": "openvino", "precision": "fp32"})}
    )
    fp32 = _create(model_path, fp32_cfg)
    input_hw = fp32.input_hw
    letterbox = fp32.decoder.letterbox
    say(
        f"{model_path.name} at {input_hw[0]}x{input_hw[1]} (layout {fp32.layout}): calibrating on "
        f"{len(calibration)} frames of {calib}, checking recall on {len(held)} "
        + (f"frames of {check_frames}" if check_frames else "held back")
    )

    from perception.detect.runtimes.openvino import _metadata, model_file, read_model

    source = model_file(model_path)
    model = read_model(source)
    model.reshape({model.input(0).get_any_name(): ov.PartialShape([1, 3, *input_hw])})
    metadata = _metadata(source, model)
    ignored = nncf.IgnoredScope(names=head_tail(model), types=FLOAT_TYPES, validate=False)
    dataset = nncf.Dataset([f.image for f in calibration], lambda image: letterbox(image).copy())
    try:
        quantized = nncf.quantize(
            model,
            dataset,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(calibration),
            ignored_scope=ignored,
        )
    except Exception as exc:  # NNCF raises many types for graphs it cannot handle
        raise PerceptionError(f"NNCF could not quantize {model_path}: {first_line(exc)}") from None

    target = out or default_out(model_path, input_hw)
    with tempfile.TemporaryDirectory(prefix="quantize-") as tmp:
        staged = Path(tmp) / "model"
        staged.mkdir()
        ov.save_model(quantized, str(staged / f"{source.stem}.xml"))
        if metadata:
            (staged / "metadata.yaml").write_text(yaml.safe_dump(_plain(metadata), sort_keys=False))
        int8_cfg = fp32_cfg.model_copy(
            update={"detector": fp32_cfg.detector.model_copy(update={"precision": "int8"})}
        )
        int8 = _create(staged, int8_cfg)
        reference = [fp32.detect(f.image) for f in held]
        candidate = [int8.detect(f.image) for f in held]
        check = check_recall(
            held, reference, candidate, fp32.labels, cfg.detector.conf_threshold,
            cfg.tracker.new_track_score_threshold, max_drop,
        )  # fmt: skip
        fp32_ms, int8_ms = _time_pair(fp32, int8, [f.image for f in held])
        int8.close()
        fp32.close()
        result = QuantizeResult(None, check, len(calibration), fp32_ms, int8_ms, time.monotonic() - t_start)
        if not check.passed:
            return result
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged, target)
    result.out = target
    return result


def _plain(value):
    """Metadata as plain YAML types (OpenVINO's rt_info values come as strings already)."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, int) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)
