"""OpenVINO backend: ONNX files and OpenVINO IR (`.xml` + `.bin`, or the folder Ultralytics exports), either
layout, on the CPU (or an Intel GPU). INT8 IR models only run here and through Ultralytics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino as ov
import yaml

from perception.core.config import Config
from perception.core.errors import PerceptionError, first_line
from perception.detect.backend import HeadDetector, LoadedModel
from perception.detect.openvino_ir import model_file, read_model
from perception.detect.quantized import require_quantized

# detector.precision -> INFERENCE_PRECISION_HINT. int8: a quantized model as it is, its other layers in f32.
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def _metadata(model_xml: Path, model: ov.Model) -> dict[str, object]:
    """The export's metadata: Ultralytics' `metadata.yaml` beside the IR, else what an ONNX file carried in
    its metadata_props (OpenVINO keeps them in the model's runtime info under `framework`)."""
    sidecar = model_xml.parent / "metadata.yaml"
    if model_xml.suffix == ".xml" and sidecar.is_file():
        try:
            meta = yaml.safe_load(sidecar.read_text())
        except yaml.YAMLError:
            meta = None
        if isinstance(meta, dict):
            return meta
    try:
        if model.has_rt_info(["framework"]):
            keys = model.get_rt_info(["framework"]).astype(dict)
            return {k: model.get_rt_info(["framework", k]).astype(str) for k in keys}
    except (RuntimeError, AttributeError, TypeError):
        pass
    return {}


def _static_dims(shape: ov.PartialShape) -> list[int | None]:
    return [d.get_length() if d.is_static else None for d in shape]


class OpenVinoDetector(HeadDetector):
    """A YOLO model compiled by OpenVINO: latency settings from config for one request, THROUGHPUT streams
    for more (each fork() gets an infer request of the one compiled model).

    The input tensor shares memory with the letterbox buffer, so a frame is resized straight into what the
    infer request reads.
    """

    backend = "openvino"

    def _load(self, path: Path, cfg: Config) -> LoadedModel:
        det = cfg.detector
        source = model_file(path)
        if det.precision == "int8":
            require_quantized(source, self.backend)
        core = ov.Core()
        try:
            model = read_model(source)
        except Exception as exc:  # OpenVINO raises RuntimeError and friends for unreadable files
            raise PerceptionError(f"cannot load model {path}: {first_line(exc)}") from None
        rank = model.input(0).get_partial_shape().rank if len(model.inputs) == 1 else None
        if rank is None or rank.is_dynamic or rank.get_length() != 4:
            raise PerceptionError(f"model {path}: expected one N x 3 x H x W image input")

        dims = _static_dims(model.input(0).get_partial_shape())
        fixed = dims[2] is not None and dims[3] is not None
        input_hw = (dims[2], dims[3]) if fixed else tuple(det.input_size)
        if dims[0] != 1 or not fixed:
            try:
                model.reshape({model.input(0).get_any_name(): ov.PartialShape([1, 3, *input_hw])})
            except Exception as exc:
                raise PerceptionError(
                    f"model {path}: cannot set input 1 x 3 x {input_hw[0]} x {input_hw[1]}: {first_line(exc)}"
                ) from None

        properties: dict[str, object] = {"PERFORMANCE_HINT": det.openvino_hint}
        if self.requests > 1:  # one stream per request, the cores split among them
            properties = {"PERFORMANCE_HINT": "THROUGHPUT", "PERFORMANCE_HINT_NUM_REQUESTS": self.requests}
        if det.openvino_threads:
            properties["INFERENCE_NUM_THREADS"] = det.openvino_threads
        if det.precision != "auto":  # auto: OpenVINO's own choice, bf16 on CPUs with AVX512-BF16 or AMX
            properties["INFERENCE_PRECISION_HINT"] = _OV_PRECISION[det.precision]
        try:
            self.compiled = core.compile_model(model, det.openvino_device, properties)
        except Exception as exc:
            raise PerceptionError(
                f"cannot compile model {path} for OpenVINO device {det.openvino_device}: {first_line(exc)}"
            ) from None
        return LoadedModel(input_hw=input_hw, metadata=_metadata(source, model))

    def _new_request(self) -> None:
        self._request = self.compiled.create_infer_request()
        self._request.set_input_tensor(ov.Tensor(self.decoder.letterbox.tensor, shared_memory=True))

    def _run(self, tensor: np.ndarray) -> np.ndarray:
        # The request reads the letterbox buffer itself (shared memory): `tensor` is already in place.
        try:
            self._request.infer()
        except Exception as exc:
            raise PerceptionError(
                f"model inference failed at input [1, 3, {self.input_hw[0]}, {self.input_hw[1]}]: "
                f"{first_line(exc)}"
            ) from None
        return self._request.get_output_tensor(0).data

    def _release(self) -> None:
        self._request = None
        self.compiled = None
