"""TensorRT backend: the low-latency path on NVIDIA GPUs (TensorRT 10 Python API, pycuda).

Takes an ONNX model (its plan is looked up in, or built into, the engine folder), a plan built by
`perception build-engine` (checked against its sidecar first), or an Ultralytics `.engine` export (metadata
header, then the plan). At run time: pinned host buffers the letterbox writes straight into, device buffers
allocated once, copies and execution queued on one CUDA stream, one synchronisation per frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perception.config import Config
from perception.detect.engine_files import PlanInfo, check_plan, read_engine_header, read_sidecar
from perception.detect.gpu import open_gpu
from perception.detect.postprocess import HeadDecoder, class_names_from, detect_layout
from perception.errors import PerceptionError
from perception.types import Detections


class TensorRTDetector:
    """A YOLOX or Ultralytics-layout TensorRT plan, batch 1, one CUDA stream."""

    backend = "tensorrt"
    requests = 1  # one request at a time

    def __init__(self, model_path: str | Path, cfg: Config) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise PerceptionError(f"model not found: {path}")
        gpu = self.gpu = open_gpu(cfg.tensorrt.device)
        trt, cuda = gpu.trt, gpu.cuda

        info: PlanInfo | None
        meta: dict = {}
        offset = 0
        if path.suffix.lower() == ".onnx":
            from perception.detect.engine_build import ensure_plan

            plan, info = ensure_plan(path, cfg, gpu)
        else:
            plan = path
            offset, meta = read_engine_header(plan)
            info = read_sidecar(plan)
            if info is not None:
                check_plan(plan, info, gpu.info)
            if meta.get("end2end"):
                raise PerceptionError(
                    f"model {path}: NMS-free (end2end) Ultralytics exports are not decoded by the tensorrt "
                    "backend; export without end2end, or use --backend ultralytics"
                )
        with plan.open("rb") as f:
            f.seek(offset)
            blob = f.read()

        with gpu:
            self._runtime = trt.Runtime(gpu.logger)
            self._engine = self._runtime.deserialize_cuda_engine(blob)
            if self._engine is None:
                raise PerceptionError(
                    f"TensorRT cannot load plan {plan}: it was built for another GPU or TensorRT version, or "
                    f"is damaged (this machine: {gpu.info.describe()}); rebuild it with "
                    "`perception build-engine MODEL.onnx`"
                )
            engine = self._engine
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            outputs = [n for n in names if n not in inputs]
            if len(inputs) != 1 or not outputs:
                raise PerceptionError(f"model {path}: expected one image input and an output, got {names}")
            self._input_name = inputs[0]
            self._output_name = info.output_name if info is not None else outputs[0]
            self.input_hw = self._choose_input_hw(path, info, meta, cfg)
            self._context = engine.create_execution_context()
            if not self._context.set_input_shape(self._input_name, (1, 3, *self.input_hw)):
                raise PerceptionError(
                    f"model {path}: the plan does not accept input "
                    f"1 x 3 x {self.input_hw[0]} x {self.input_hw[1]}"
                )

            # Buffers for every I/O tensor (TensorRT needs an address for each), allocated once.
            self._stream = cuda.Stream()
            self._device = {}
            self._host_out = None
            for name in names:
                shape = tuple(self._context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise PerceptionError(
                        f"model {path}: tensor {name} has data-dependent shape {list(shape)}"
                    )
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                if name == self._input_name:
                    self._host_in = cuda.pagelocked_empty(shape, dtype)
                elif name == self._output_name:
                    self._host_out = cuda.pagelocked_empty(shape, dtype)
                self._device[name] = cuda.mem_alloc(max(1, int(np.prod(shape)) * dtype.itemsize))
                self._context.set_tensor_address(name, int(self._device[name]))
            if self._host_out is None:
                raise PerceptionError(f"model {path}: no output tensor named {self._output_name!r}")

        out_shape = self._host_out.shape
        self.layout = (
            cfg.detector.layout
            if cfg.detector.layout != "auto"
            else (info.layout if info is not None else detect_layout(out_shape))
        )
        # The letterbox writes into the pinned input buffer itself when the plan takes float32.
        direct = self._host_in.dtype == np.float32
        self.decoder = HeadDecoder(
            self.layout, self.input_hw, cfg.detector, tensor=self._host_in if direct else None
        )
        self._staging = None if direct else self.decoder.letterbox.tensor
        num_classes = self.decoder.num_classes(out_shape, path)
        names_meta = info.class_names if info is not None else meta.get("names")
        self.class_names = class_names_from(names_meta, num_classes)
        self.decoder.set_classes(cfg.classes, self.class_names)

        blank = np.zeros((*self.input_hw, 3), np.uint8)
        for _ in range(cfg.tensorrt.warmup_runs):  # first runs pay for lazy CUDA/TensorRT initialisation
            self.detect(blank)

    def _choose_input_hw(self, path: Path, info: PlanInfo | None, meta: dict, cfg: Config) -> tuple[int, int]:
        """The plan's own size if fixed; else the size it was built for (sidecar, Ultralytics header), else
        the optimisation profile's optimum. A fixed batch other than 1 is refused: frames come one by one."""
        engine = self._engine
        shape = tuple(engine.get_tensor_shape(self._input_name))
        if len(shape) != 4:
            raise PerceptionError(f"model {path}: expected an N x 3 x H x W input, got {list(shape)}")
        if shape[0] > 1:
            raise PerceptionError(
                f"model {path}: the plan has a fixed batch of {shape[0]}; build it with batch 1"
            )
        if shape[2] > 0 and shape[3] > 0:
            return int(shape[2]), int(shape[3])
        if info is not None:
            return int(info.key.input_shape[2]), int(info.key.input_shape[3])
        imgsz = meta.get("imgsz")
        if isinstance(imgsz, list) and len(imgsz) == 2:
            return int(imgsz[0]), int(imgsz[1])
        _min, opt, _max = engine.get_tensor_profile_shape(self._input_name, 0)
        return int(opt[2]), int(opt[3])

    def fork(self) -> TensorRTDetector:
        raise PerceptionError("the tensorrt backend runs one request at a time (detector.requests: 1)")

    def detect(self, image: np.ndarray) -> Detections:
        cuda = self.gpu.cuda
        tensor = self.decoder.letterbox(image)
        if self._staging is not None:
            np.copyto(self._host_in, tensor, casting="same_kind")
        with self.gpu:
            cuda.memcpy_htod_async(self._device[self._input_name], self._host_in, self._stream)
            ok = self._context.execute_async_v3(self._stream.handle)
            cuda.memcpy_dtoh_async(self._host_out, self._device[self._output_name], self._stream)
            self._stream.synchronize()
        if not ok:
            raise PerceptionError("TensorRT inference failed (see TensorRT's log above)")
        raw = self._host_out[0]
        return self.decoder(raw if raw.dtype == np.float32 else raw.astype(np.float32))

    def close(self) -> None:
        """Free GPU memory while the context is current (pycuda warns when GC frees it later)."""
        if not getattr(self, "_device", None):
            return
        with self.gpu:
            for allocation in self._device.values():
                allocation.free()
            self._device = {}
            self._context = None
            self._engine = None
