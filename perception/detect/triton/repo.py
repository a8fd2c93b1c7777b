"""A Triton model repository for a detector: `perception triton-repo MODEL.onnx --out DIR`.

NVIDIA's Triton Inference Server serves models from a folder per model: `NAME/config.pbtxt` (inputs,
outputs, batching) and `NAME/1/model.onnx` (or `model.plan` for TensorRT). Many pipeline processes on many
machines then share one GPU server, and Triton's dynamic batcher gathers their single-frame requests into
batches. The config written here is complete (servers may run with auto-complete off): dims read from the
ONNX graph at a fixed input size (a static shape is what TensorRT and the ONNX Runtime backend run fastest),
and `parameters` that carry what the pipeline's Triton backend needs to decode the raw head locally: the
output layout and the class names. The backend reads them back from the server (triton/backend.py).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from perception.core.config import Config
from perception.core.errors import PerceptionError, first_line
from perception.detect.decode import HeadDecoder, choose_layout
from perception.detect.labels import class_names_from, names_count
from perception.detect.metadata import ModelMetadata
from perception.detect.tensorrt.files import file_sha256

PLATFORMS = {"onnxruntime": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}
# Keys of the config's `parameters` that the pipeline reads back (perception/detect/triton/backend.py).
PARAM_LAYOUT = "perception.layout"
PARAM_CLASS_NAMES = "perception.class_names"
PARAM_ONNX_SHA256 = "perception.onnx_sha256"
# ONNX Runtime's element types -> Triton's data types and the numpy type to feed.
DATA_TYPES = {
    "tensor(float)": ("TYPE_FP32", np.float32),
    "tensor(float16)": ("TYPE_FP16", np.float16),
    "tensor(uint8)": ("TYPE_UINT8", np.uint8),
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton's, e.g. TYPE_FP32
    dims: tuple[int, ...]  # without the batch dimension when the model batches


@dataclass(frozen=True)
class RepoModel:
    """One model of the repository, as its config.pbtxt describes it."""

    name: str
    platform: str  # onnxruntime | tensorrt
    max_batch_size: int  # 0: the graph has a fixed batch of 1, Triton cannot batch it
    input: TensorSpec
    output: TensorSpec
    layout: str
    class_names: list[str]
    onnx_sha256: str
    max_queue_delay_us: int
    instances: int


def model_name(path: Path) -> str:
    """Triton names a model by its folder: the file's stem, with anything but [A-Za-z0-9_.-] replaced."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem) or "model"


def inspect_onnx(
    path: Path, cfg: Config, imgsz: tuple[int, int] | None
) -> tuple[TensorSpec, TensorSpec, str, list[str], bool]:
    """Input and output specs at the input size served, layout, class names, and whether the graph batches.

    The output dims come from running the graph once on zeros at that size: symbolic dims (YOLOX's anchor
    count) become the numbers Triton needs, and the run checks that the output really has the layout.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several types for unreadable or invalid files
        raise PerceptionError(f"cannot load model {path}: {first_line(exc)}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
        raise PerceptionError(f"model {path}: expected one N x 3 x H x W image input")
    if inputs[0].type not in DATA_TYPES:
        raise PerceptionError(f"model {path}: input type {inputs[0].type} is not float32, float16 or uint8")
    batch, _, in_h, in_w = inputs[0].shape
    fixed = isinstance(in_h, int) and isinstance(in_w, int)
    if fixed and imgsz is not None and tuple(imgsz) != (in_h, in_w):
        raise PerceptionError(
            f"model {path} has a fixed input size {in_h}x{in_w}: --imgsz {imgsz[0]} {imgsz[1]}"
        )
    input_hw = (in_h, in_w) if fixed else tuple(imgsz or cfg.detector.input_size)
    if not fixed and (input_hw[0] % 32 or input_hw[1] % 32):
        raise PerceptionError(
            f"input size {input_hw[0]}x{input_hw[1]}: height and width must be multiples of 32"
        )
    batches = not isinstance(batch, int)
    if isinstance(batch, int) and batch != 1:
        raise PerceptionError(f"model {path}: fixed batch {batch}; export it with a dynamic batch or batch 1")

    data_type, dtype = DATA_TYPES[inputs[0].type]
    zeros = np.zeros((1, 3, *input_hw), dtype)
    try:
        raw = session.run([outputs[0].name], {inputs[0].name: zeros})[0]
    except Exception as exc:
        raise PerceptionError(
            f"model {path} does not run at input {list(zeros.shape)}: {first_line(exc)}"
        ) from None
    meta = ModelMetadata.parse(session.get_modelmeta().custom_metadata_map)
    layout = cfg.detector.layout
    if layout == "auto":
        layout = choose_layout(raw, input_hw, meta)[0]
    num_classes = HeadDecoder(layout, input_hw, cfg.detector).num_classes(
        raw.shape, path, names_count(meta.names)
    )
    names = class_names_from(meta.names, num_classes)
    out_type = DATA_TYPES.get(outputs[0].type, ("TYPE_FP32", None))[0]
    if batches:
        in_dims, out_dims = (3, *input_hw), tuple(raw.shape[1:])
    else:  # Triton's max_batch_size 0: the dims are the full shapes, batch of 1 included
        in_dims, out_dims = (1, 3, *input_hw), tuple(raw.shape)
    spec_in = TensorSpec(inputs[0].name, data_type, in_dims)
    spec_out = TensorSpec(outputs[0].name, out_type, out_dims)
    return spec_in, spec_out, layout, names, batches


def _quoted(text: str) -> str:
    """A protobuf text-format string literal (UTF-8 passes through)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor(spec: TensorSpec) -> str:
    dims = ", ".join(str(d) for d in spec.dims)
    return (
        f"  {{\n    name: {_quoted(spec.name)}\n    data_type: {spec.data_type}\n    dims: [ {dims} ]\n  }}"
    )


def config_pbtxt(model: RepoModel, source: str) -> str:
    """config.pbtxt in protobuf text format (Triton's ModelConfig)."""
    platform = PLATFORMS[model.platform][0]
    lines = [
        f"# Written by `perception triton-repo` from {source}.",
        f"name: {_quoted(model.name)}",
        f"platform: {_quoted(platform)}",
        f"max_batch_size: {model.max_batch_size}",
        f"input [\n{_tensor(model.input)}\n]",
        f"output [\n{_tensor(model.output)}\n]",
    ]
    if model.max_batch_size > 0:
        # Requests that arrive while the instances are busy are run together, up to max_batch_size; a delay
        # above 0 also holds a lone request back that long, waiting for company (throughput over latency).
        lines.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {model.max_queue_delay_us}\n}}")
    # TensorRT plans run on a GPU only; ONNX Runtime takes the GPU when the server has one (KIND_AUTO).
    kind = "    kind: KIND_GPU\n" if model.platform == "tensorrt" else ""
    lines.append(f"instance_group [\n  {{\n{kind}    count: {model.instances}\n  }}\n]")
    params = {
        PARAM_LAYOUT: model.layout,
        PARAM_CLASS_NAMES: json.dumps(model.class_names, ensure_ascii=False),
        PARAM_ONNX_SHA256: model.onnx_sha256,
    }
    for key, value in params.items():
        lines.append(
            f"parameters {{\n  key: {_quoted(key)}\n  value {{ string_value: {_quoted(value)} }}\n}}"
        )
    return "\n".join(lines) + "\n"


def trtexec_script(model: RepoModel, precision: str) -> str:
    """The commands that build `1/model.plan` on the server: a plan is tied to one GPU model and one
    TensorRT version, so it cannot be built here and copied; trtexec ships in NVIDIA's TensorRT image."""
    name, (c, h, w) = model.input.name, model.input.dims[-3:]
    shapes = ""
    if model.max_batch_size > 0:
        one, most = f"{name}:1x{c}x{h}x{w}", f"{name}:{model.max_batch_size}x{c}x{h}x{w}"
        shapes = f" \\\n  --minShapes={one} --optShapes={most} --maxShapes={most}"
    flag = " --fp16" if precision == "fp16" else ""
    return (
        "#!/bin/sh\n"
        "# Build the TensorRT plan this model's config.pbtxt expects, ON THE TRITON SERVER'S GPU, with\n"
        "# the TensorRT version of its Triton image (a plan runs only on the GPU model and TensorRT version\n"
        "# that built it), e.g. in nvcr.io/nvidia/tensorrt:<the Triton image's yy.mm>-py3 on that machine.\n"
        "set -e\n"
        'cd "$(dirname "$0")"\n'
        f"trtexec --onnx=model.onnx --saveEngine=1/model.plan{flag}{shapes}\n"
    )


def write_repository(
    model_path: Path,
    out: Path,
    cfg: Config,
    platform: str = "onnxruntime",
    max_batch: int = 8,
    name: str | None = None,
    imgsz: tuple[int, int] | None = None,
    max_queue_delay_us: int = 0,
    instances: int = 1,
    force: bool = False,
) -> RepoModel:
    """Write OUT/NAME/config.pbtxt and OUT/NAME/1/model.onnx (onnxruntime), or for tensorrt the config,
    NAME/model.onnx and NAME/build_plan.sh that makes NAME/1/model.plan on the server's GPU."""
    if platform not in PLATFORMS:
        raise PerceptionError(f"unknown platform {platform!r}: onnxruntime or tensorrt")
    if not model_path.is_file():
        raise PerceptionError(f"model not found: {model_path}")
    if model_path.suffix.lower() != ".onnx":
        raise PerceptionError(
            f"model {model_path}: triton-repo takes an ONNX model (perception export makes one)"
        )
    if max_batch < 1:
        raise PerceptionError(f"--max-batch {max_batch}: must be 1 or more")
    if instances < 1:
        raise PerceptionError(f"--instances {instances}: must be 1 or more")
    if max_queue_delay_us < 0:
        raise PerceptionError(f"--max-queue-delay-us {max_queue_delay_us}: must be 0 or more")
    precision = cfg.tensorrt.precision
    if platform == "tensorrt" and precision == "int8":
        raise PerceptionError(
            "tensorrt.precision int8: triton-repo writes fp16 or fp32 plans; INT8 needs a calibration cache"
        )
    name = name or model_name(model_path)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise PerceptionError(f"model name {name!r}: use letters, digits, '_', '.' and '-'")
    spec_in, spec_out, layout, names, batches = inspect_onnx(model_path, cfg, imgsz)
    model = RepoModel(
        name=name,
        platform=platform,
        max_batch_size=max_batch if batches else 0,
        input=spec_in,
        output=spec_out,
        layout=layout,
        class_names=names,
        onnx_sha256=file_sha256(model_path),
        max_queue_delay_us=max_queue_delay_us,
        instances=instances,
    )
    model_dir = out / name
    if model_dir.exists():
        if not force:
            raise PerceptionError(f"{model_dir} exists: pass --force to replace it")
        shutil.rmtree(model_dir)
    try:
        (model_dir / "1").mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(config_pbtxt(model, model_path.name), encoding="utf-8")
        if platform == "onnxruntime":
            shutil.copyfile(model_path, model_dir / "1" / PLATFORMS[platform][1])
        else:
            shutil.copyfile(model_path, model_dir / "model.onnx")
            script = model_dir / "build_plan.sh"
            script.write_text(trtexec_script(model, precision))
            script.chmod(0o755)
    except OSError as exc:
        raise PerceptionError(f"cannot write {model_dir}: {exc.strerror or exc}") from None
    return model
