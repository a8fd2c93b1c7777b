"""Whether a model is quantized (INT8), read from the graph itself: what `detector.precision: int8` requires,
and what the auto choice reports. OpenVINO reads both formats: static INT8 (ONNX QDQ pairs, NNCF or
Ultralytics IR exports) shows as FakeQuantize operations, dynamically quantized ONNX (MatMulInteger and
friends, int8 weights) as 8-bit integer weight constants."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from perception.core.errors import PerceptionError, first_line


def _feeds_tensors(op) -> bool:
    return any(len(t.get_node().get_output_partial_shape(0)) >= 2 for t in op.output(0).get_target_inputs())


@lru_cache(maxsize=16)
def _quantized(path: str, mtime_ns: int) -> bool:
    import openvino as ov  # here, not at import: the Ultralytics backend runs without OpenVINO

    from perception.detect.openvino_ir import read_model

    int8 = (ov.Type.i8, ov.Type.u8)
    try:
        model = read_model(path)
    except Exception as exc:  # OpenVINO raises RuntimeError and friends for unreadable files
        raise PerceptionError(f"cannot load model {path}: {first_line(exc)}") from None
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "FakeQuantize":
            return True
        # 8-bit weights of a dynamically quantized model: integer constants feeding tensors (not indices).
        if kind == "Constant" and op.get_output_element_type(0) in int8 and _feeds_tensors(op):
            return True
    return False


def is_quantized(path: str | Path) -> bool:
    """True for an INT8 model (static or dynamic quantization); the file itself or an IR folder's .xml."""
    from perception.detect.openvino_ir import model_file

    path = model_file(Path(path))
    return _quantized(str(path), path.stat().st_mtime_ns)


def require_quantized(path: str | Path, backend: str) -> None:
    """`detector.precision: int8` runs a quantized model as it is; a float model is refused, with the way to
    make an INT8 one."""
    if not is_quantized(path):
        raise PerceptionError(
            f"detector.precision int8: {path} is not quantized ({backend} would run it in floating point); "
            f"make an INT8 copy with: perception quantize {path} --calib FRAMES"
        )
