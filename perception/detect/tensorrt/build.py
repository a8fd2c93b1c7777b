"""Building TensorRT plans from ONNX with the TensorRT 10 Python API, cached in the engine folder.

`prepare_build` checks everything that needs no GPU first (the ONNX file, input size and batch against the
model, the layout and class names, the INT8 calibration set), so a bad request fails in a second, not after
a minutes-long build. `build_plan` then parses, sets the optimisation profile and precision flags,
calibrates INT8 from real images (MinMax, as Ultralytics does for YOLO heads: entropy calibration clips the
box regression outputs), and writes the plan with its sidecar.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.detect.labels import ALL_CLASSES
from perception.detect.preprocess import INPUT_FORMATS, Letterbox
from perception.detect.tensorrt.calibration import CalibrationSet, calibration_cache_path
from perception.detect.tensorrt.files import (
    PlanInfo,
    PlanKey,
    cached_plan,
    file_sha256,
    plan_path,
    write_plan,
)


def _stderr(message: str) -> None:
    print(f"perception: {message}", file=sys.stderr)


@dataclass(frozen=True)
class BuildSpec:
    """A checked build request: what the plan will be built from and for."""

    onnx: Path
    onnx_sha256: str
    input_name: str
    output_name: str
    input_shape: tuple[int, int, int, int]  # largest batch, 3, height, width
    dynamic: bool  # the ONNX input has free dimensions: the plan gets an optimisation profile
    layout: str
    class_names: list[str]
    precision: str
    calibration: CalibrationSet | None

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.input_shape[2], self.input_shape[3]


def prepare_build(
    onnx: str | Path,
    cfg: Config,
    precision: str,
    imgsz: tuple[int, int] | None = None,
    batch: int | None = None,
    calib_source: str | Path | None = None,
) -> BuildSpec:
    """Validate a build request on the CPU: the ONNX runs once on ONNX Runtime at the requested size, which
    also tells its layout and class names."""
    from perception.detect.runtimes.onnxruntime import OnnxRuntimeDetector

    path = Path(onnx)
    if not path.is_file():
        raise PerceptionError(f"model not found: {path}")
    if path.suffix.lower() != ".onnx":
        raise PerceptionError(
            f"build-engine takes an ONNX model, got {path.name}: export a .pt first with "
            f"`perception export {path} --format onnx`"
        )
    if imgsz is not None and (imgsz[0] % 32 or imgsz[1] % 32 or min(imgsz) < 32):
        raise PerceptionError(f"--imgsz {imgsz[0]} {imgsz[1]}: height and width must be multiples of 32")
    n = batch if batch is not None else cfg.tensorrt.batch
    if n < 1:
        raise PerceptionError(f"--batch {n}: must be at least 1")
    if precision == "int8" and calib_source is None:
        raise PerceptionError(
            "INT8 needs calibration images: pass --calib-dir with an image folder or a video"
        )
    if precision != "int8" and calib_source is not None:
        raise PerceptionError(f"--calib-dir only applies to --int8, not {precision}")

    if imgsz is not None:
        sized = cfg.detector.model_copy(update={"input_size": tuple(imgsz)})
        cfg = cfg.model_copy(update={"detector": sized})
    # The plan does not depend on the taxonomy: every class kept, so a sign model builds with any config.
    reference = OnnxRuntimeDetector(path, cfg.model_copy(update={"classes": {"object": [ALL_CLASSES]}}))
    model_input = reference.session.get_inputs()[0]
    dims = model_input.shape
    if imgsz is not None and reference.input_hw != tuple(imgsz):
        raise PerceptionError(
            f"model {path} has a fixed input of {reference.input_hw[0]}x{reference.input_hw[1]}; "
            f"--imgsz {imgsz[0]} {imgsz[1]} cannot apply (export it with that size or dynamic)"
        )
    if isinstance(dims[0], int) and dims[0] != n:
        raise PerceptionError(f"model {path} has a fixed batch of {dims[0]}; --batch {n} cannot apply")
    output_name = reference.session.get_outputs()[0].name
    reference.close()
    calibration = None
    if calib_source is not None:
        calibration = CalibrationSet(
            calib_source, cfg.tensorrt.calib_min_images, cfg.tensorrt.calib_max_images
        )
        if len(calibration) < n:
            raise PerceptionError(f"calibration set {calib_source} has fewer images than one batch of {n}")
    return BuildSpec(
        onnx=path,
        onnx_sha256=file_sha256(path),
        input_name=model_input.name,
        output_name=output_name,
        input_shape=(n, 3, *reference.input_hw),
        dynamic=not all(isinstance(d, int) for d in dims),
        layout=reference.layout,
        class_names=reference.class_names,
        precision=precision,
        calibration=calibration,
    )


def _make_calibrator(gpu, spec: BuildSpec, cache: Path):
    """An INT8 calibrator fed by the calibration set; built here because it must subclass a TensorRT class."""
    trt, cuda = gpu.trt, gpu.cuda
    letterbox = Letterbox(spec.input_hw, INPUT_FORMATS[spec.layout])
    batch = spec.input_shape[0]

    class Calibrator(trt.IInt8MinMaxCalibrator):
        def __init__(self) -> None:
            trt.IInt8MinMaxCalibrator.__init__(self)
            self.batches = spec.calibration.batches(letterbox, batch)
            self.device = cuda.mem_alloc(int(np.prod(spec.input_shape)) * np.dtype(np.float32).itemsize)
            self.images = 0
            self.error: BaseException | None = None

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            # An exception must not unwind into TensorRT's C++ caller: keep it, end calibration, raise later.
            try:
                host = next(self.batches, None)
                if host is None:
                    return None
                cuda.memcpy_htod(self.device, host)
                self.images += batch
                return [int(self.device)]
            except BaseException as exc:
                self.error = exc
                return None

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_plan(
    spec: BuildSpec, cfg: Config, gpu, log: Callable[[str], None] = _stderr
) -> tuple[Path, PlanInfo]:
    """Build, serialise and cache the plan for `spec` on `gpu` (a `perception.detect.tensorrt.gpu.Gpu`)."""
    trt = gpu.trt
    engine_dir = Path(cfg.tensorrt.engine_dir)
    key = PlanKey.for_model(gpu.info, spec.precision, spec.input_shape, spec.onnx_sha256)
    plan = plan_path(engine_dir, spec.onnx, key)
    n, c, h, w = spec.input_shape
    log(
        f"building TensorRT {spec.precision} plan for {spec.onnx.name} at {h}x{w}, batch {n}, "
        f"on {gpu.info.describe()}"
    )
    started = time.perf_counter()
    calibration_info = None
    with gpu:
        builder = trt.Builder(gpu.logger)
        network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
        parser = trt.OnnxParser(network, gpu.logger)
        if not parser.parse_from_file(str(spec.onnx)):
            text = str(parser.get_error(0)).strip() if parser.num_errors else ""
            first = next(iter(text.splitlines()), "unknown error")
            raise PerceptionError(f"TensorRT cannot parse {spec.onnx}: {first}")
        config = builder.create_builder_config()
        if cfg.tensorrt.workspace_mib:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.tensorrt.workspace_mib << 20)
        if spec.dynamic:
            profile = builder.create_optimization_profile()
            # One input size; batch from 1 (the pipeline) up to n, tuned for n.
            profile.set_shape(spec.input_name, (1, c, h, w), (n, c, h, w), (n, c, h, w))
            config.add_optimization_profile(profile)
        calibrator = None
        if spec.precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)  # INT8 too: layers that do not quantise fall back to FP16
        if spec.precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            cache = calibration_cache_path(
                engine_dir,
                spec.onnx,
                spec.onnx_sha256,
                spec.input_hw,
                spec.calibration.digest,
                gpu.info.tensorrt,
            )
            if cache.is_file():
                log(f"reusing INT8 calibration cache {cache}")
            calibrator = _make_calibrator(gpu, spec, cache)
            config.int8_calibrator = calibrator
            calibration_info = {
                "source": str(spec.calibration.source),
                "images": len(spec.calibration),
                "sha256": spec.calibration.digest,
                "cache": str(cache),
            }
        serialized = builder.build_serialized_network(network, config)
        if calibrator is not None:
            calibrator.device.free()
            if calibrator.error is not None:
                raise calibrator.error
        if serialized is None:
            raise PerceptionError(
                f"TensorRT could not build a plan from {spec.onnx} (see TensorRT's log above)"
            )
        plan_bytes = memoryview(serialized)
        info = PlanInfo(
            key=key,
            plan_sha256=_sha256_bytes(plan_bytes),
            onnx=str(spec.onnx),
            layout=spec.layout,
            class_names=list(spec.class_names),
            input_name=spec.input_name,
            output_name=spec.output_name,
            calibration=calibration_info,
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            build_s=round(time.perf_counter() - started, 1),
        )
        write_plan(plan, plan_bytes, info)
    log(f"TensorRT plan {plan} built in {info.build_s:.0f} s")
    return plan, info


def _sha256_bytes(data: memoryview) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def ensure_plan(onnx: Path, cfg: Config, gpu, log: Callable[[str], None] = _stderr) -> tuple[Path, PlanInfo]:
    """The cached plan for this ONNX at the configured precision, size and batch, built when missing or
    stale. INT8 is never built implicitly: it needs a calibration set (`perception build-engine --int8`)."""
    spec = prepare_build(onnx, cfg, cfg.tensorrt.precision)
    key = PlanKey.for_model(gpu.info, spec.precision, spec.input_shape, spec.onnx_sha256)
    plan = plan_path(Path(cfg.tensorrt.engine_dir), onnx, key)
    info, why = cached_plan(plan, key)
    if info is not None:
        return plan, info
    if spec.precision == "int8":
        raise PerceptionError(
            f"no INT8 TensorRT plan for {onnx} ({why}): build one with "
            f"`perception build-engine {onnx} --int8 --calib-dir DIR`"
        )
    log(f"{why}: building it now (once; later runs load {plan})")
    return build_plan(spec, cfg, gpu, log)
