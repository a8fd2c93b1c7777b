"""The NVIDIA side, imported only when asked for: TensorRT and pycuda live in the optional `gpu` extra, so a
CPU install never needs them and importing the package never touches CUDA."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from perception.core.errors import PerceptionError
from perception.detect.tensorrt.files import GpuInfo

INSTALL_HINT = 'pip install -e ".[gpu]" on a machine with an NVIDIA GPU and driver'


def tensorrt_available() -> bool:
    """tensorrt and pycuda are installed and a CUDA device answers: what `--backend auto` needs to pick
    TensorRT. Cheap when they are not installed (no import is attempted)."""
    if importlib.util.find_spec("tensorrt") is None or importlib.util.find_spec("pycuda") is None:
        return False
    try:
        import pycuda.driver as cuda

        cuda.init()
        return cuda.Device.count() > 0
    except Exception:  # no driver, no device, broken install: not usable either way
        return False


@dataclass
class Gpu:
    """TensorRT and a CUDA device's primary context (the one TensorRT's runtime API uses too).

    CUDA contexts are current per thread; the pipeline detects on its own thread, so every call that touches
    the GPU runs inside `with gpu:`, which pushes the context and pops it again.
    """

    trt: Any  # the tensorrt module
    cuda: Any  # pycuda.driver
    context: Any  # pycuda.driver.Context (primary context of `device`)
    info: GpuInfo
    logger: Any  # tensorrt.Logger, kept alive as long as anything built with it

    def __enter__(self) -> Gpu:
        self.context.push()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cuda.Context.pop()


_opened: dict[int, Gpu] = {}


def open_gpu(device: int) -> Gpu:
    """Import TensorRT and pycuda and retain `device`'s primary context (once per process and device)."""
    if device in _opened:
        return _opened[device]
    missing = [m for m in ("tensorrt", "pycuda") if importlib.util.find_spec(m) is None]
    if missing:
        raise PerceptionError(
            f"the tensorrt backend needs TensorRT and pycuda ({' and '.join(missing)} missing): "
            + INSTALL_HINT
        )
    import pycuda.driver as cuda
    import tensorrt as trt

    major = int(trt.__version__.split(".", 1)[0])
    if major != 10:
        raise PerceptionError(
            f"TensorRT {trt.__version__} is not supported: this project builds and runs plans with "
            "TensorRT 10.x"
        )
    try:
        cuda.init()
        count = cuda.Device.count()
        if device >= count:
            raise PerceptionError(f"tensorrt.device {device}: this machine has {count} CUDA device(s)")
        dev = cuda.Device(device)
        context = dev.retain_primary_context()
        cc_major, cc_minor = dev.compute_capability()
        info = GpuInfo(dev.name(), f"{cc_major}.{cc_minor}", trt.__version__)
    except cuda.Error as exc:
        raise PerceptionError(f"CUDA is not usable: {str(exc).strip() or type(exc).__name__}") from None
    gpu = Gpu(trt, cuda, context, info, trt.Logger(trt.Logger.WARNING))
    _opened[device] = gpu
    return gpu
