"""The CPU-side detector runtimes: each loads a model and runs a tensor (letterbox and decoding are shared,
in detect/backend.py): ONNX Runtime, OpenVINO, Ultralytics. TensorRT: detect/tensorrt/."""
