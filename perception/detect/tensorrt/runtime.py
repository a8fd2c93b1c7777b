"""TensorRT backend: the low-latency path on NVIDIA GPUs (TensorRT 10 Python API, pycuda).

Takes an ONNX model (its plan is looked up in, or built into, the engine folder), a plan built by
`perception build-engine` (checked against its sidecar first), or an Ultralytics `.engine` export (metadata
header, then the plan). At run time: pinned host buffers the letterbox writes straight into, device buffers
allocated once, copies and execution queued on one CUDA stream, one synchronisation per frame.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.detect.backend import HeadDetector, LoadedModel
from perception.detect.tensorrt.files import PlanInfo, check_plan, read_engine_header, read_sidecar
from perception.detect.tensorrt.gpu import open_gpu


class TensorRTDetector(HeadDetector):
    """A YOLO TensorRT plan, batch 1, one CUDA stream."""

    backend = "tensorrt"

    def _load(self, path: Path, cfg: Config) -> LoadedModel:
        self.requests = 1  # one request at a time
        if not path.is_file():
            raise PerceptionError(f"model not found: {path}")
        gpu = self.gpu = open_gpu(cfg.tensorrt.device)
        trt, cuda = gpu.trt, gpu.cuda

        info: PlanInfo | None
        meta: dict = {}
        offset = 0
        if path.suffix.lower() == ".onnx":
            from perception.detect.tensorrt.build import ensure_plan

            plan, info = ensure_plan(path, cfg, gpu)
        else:
            plan = path
            offset, meta = read_engine_header(plan)
            info = read_sidecar(plan)
            if info is not None:
                check_plan(plan, info, gpu.info)
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
            input_hw = self._choose_input_hw(path, info, meta)
            self._context = engine.create_execution_context()
            if not self._context.set_input_shape(self._input_name, (1, 3, *input_hw)):
                raise PerceptionError(
                    f"model {path}: the plan does not accept input 1 x 3 x {input_hw[0]} x {input_hw[1]}"
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

        # The letterbox writes into the pinned input buffer itself when the plan takes float32.
        direct = self._host_in.dtype == np.float32
        return LoadedModel(
            input_hw=input_hw,
            # A plan built here: its sidecar's names and layout; an Ultralytics .engine: its header.
            metadata={"names": info.class_names} if info is not None else meta,
            layout=info.layout if info is not None else None,
            tensor=self._host_in if direct else None,
            warmup_runs=cfg.tensorrt.warmup_runs,
        )

    def _choose_input_hw(self, path: Path, info: PlanInfo | None, meta: dict) -> tuple[int, int]:
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

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        cuda = self.gpu.cuda
        if tensor is not self._host_in:  # the plan takes another dtype: one converting copy
            np.copyto(self._host_in, tensor, casting="same_kind")
        with self.gpu:
            cuda.memcpy_htod_async(self._device[self._input_name], self._host_in, self._stream)
            ok = self._context.execute_async_v3(self._stream.handle)
            cuda.memcpy_dtoh_async(self._host_out, self._device[self._output_name], self._stream)
            self._stream.synchronize()
        if not ok:
            raise PerceptionError("TensorRT inference failed (see TensorRT's log above)")
        raw = self._host_out
        return raw if raw.dtype == np.float32 else raw.astype(np.float32)

    def _release(self) -> None:
        """Free GPU memory while the context is current (pycuda warns when GC frees it later)."""
        if not getattr(self, "_device", None):
            return
        with self.gpu:
            for allocation in self._device.values():
                allocation.free()
            self._device = {}
            self._context = None
            self._engine = None
