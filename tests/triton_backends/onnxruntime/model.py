"""A Python-based Triton backend named `onnxruntime`, for the test server (tests/triton_server.py).

NVIDIA's Triton images run `platform: "onnxruntime_onnx"` models with their C++ ONNX Runtime backend; the
`tritonserver` bundled in the `nvidia-pytriton` wheel ships only the Python backend. Triton looks for a
backend named `onnxruntime` as `backends/onnxruntime/libtriton_onnxruntime.so` and, failing that, as a
Python-based backend `backends/onnxruntime/model.py` (this file), so the very model repository that
`perception triton-repo` writes (config.pbtxt + 1/model.onnx) loads unchanged: Triton parses its config,
runs its dynamic batcher and serves HTTP and gRPC; this file only runs each batch Triton formed through
ONNX Runtime, as the C++ backend would. It runs inside Triton's Python stub (the venv of .ci/run), not in
the project's venv.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        filename = config.get("default_model_filename") or "model.onnx"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        threads = os.environ.get("TRITON_ORT_THREADS")
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_names = [i["name"] for i in config["input"]]
        self.output_names = [o["name"] for o in config["output"]]
        self.batched = config.get("max_batch_size", 0) > 0

    def execute(self, requests: list) -> list:
        """One ONNX Runtime run over every request of the batch Triton's scheduler formed."""
        per_request = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.input_names]
            for r in requests
        ]
        if self.batched and len(requests) > 1:
            feeds = {
                name: np.concatenate([inputs[k] for inputs in per_request])
                for k, name in enumerate(self.input_names)
            }
        else:
            feeds = dict(zip(self.input_names, per_request[0], strict=True))
        try:
            outputs = self.session.run(self.output_names, feeds)
        except Exception as exc:  # an input the model refuses: every request of the batch gets the error
            error = pb_utils.TritonError(f"onnxruntime: {str(exc).strip().splitlines()[0]}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        if not self.batched or len(requests) == 1:
            return [self._response(outputs)]
        sizes = np.cumsum([inputs[0].shape[0] for inputs in per_request])[:-1]
        split = [np.split(out, sizes) for out in outputs]
        return [self._response([parts[i] for parts in split]) for i in range(len(requests))]

    def _response(self, outputs: list) -> object:
        tensors = [
            pb_utils.Tensor(n, np.ascontiguousarray(o))
            for n, o in zip(self.output_names, outputs, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        self.session = None
