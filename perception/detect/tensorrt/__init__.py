"""TensorRT on NVIDIA GPUs: the runtime (`runtime`), plans' cache key, sidecar and `.engine` headers (`files`,
no TensorRT needed), building and INT8 calibration (`build`, `calibration`), the lazy TensorRT / pycuda
import (`gpu`)."""
