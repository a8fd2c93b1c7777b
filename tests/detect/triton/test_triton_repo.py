"""`perception triton-repo`: the model repository it writes, read back with Triton's own protobuf schema
(tritonclient's model_config_pb2). That the real tritonserver loads and serves it is tested in
tests/detect/triton/test_triton.py, whose server serves repositories written by this command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tests.conftest import ASSETS, YOLOX_ONNX
from tests.helpers import assert_one_line_error, run_cli
from tests.triton_harness import write_repo, yolox_variant

KIND = "integration"

COCO_CAR = 2


def read_config(model_dir: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(
        (model_dir / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig()
    )


def test_onnxruntime_repository(tmp_path: Path) -> None:
    model_dir = write_repo(tmp_path / "repo", YOLOX_ONNX)
    assert model_dir == tmp_path / "repo" / "yolox_nano"
    assert (model_dir / "1" / "model.onnx").read_bytes() == YOLOX_ONNX.read_bytes()
    config = read_config(model_dir)
    assert config.name == "yolox_nano"
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert config.HasField("dynamic_batching")
    assert config.dynamic_batching.max_queue_delay_microseconds == 0
    (inp,) = config.input
    (out,) = config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("images", model_config_pb2.TYPE_FP32, [3, 448, 800])
    # 448x800 at strides 8, 16, 32: 56*100 + 28*50 + 14*25 anchors, 5 + 80 columns.
    assert (out.name, out.data_type, list(out.dims)) == ("output", model_config_pb2.TYPE_FP32, [7350, 85])
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["perception.layout"] == "yolox"
    names = json.loads(params["perception.class_names"])
    assert len(names) == 80 and names[COCO_CAR] == "car" and names[9] == "traffic light"
    assert len(params["perception.onnx_sha256"]) == 64
    assert [g.count for g in config.instance_group] == [1]


def test_options_size_batch_delay_instances_and_names(tmp_path: Path) -> None:
    names = {i: f'class {i} "quoted" \\ ü' for i in range(80)}  # what must survive the text format
    model = yolox_variant(tmp_path / "named.onnx", names=names)
    model_dir = write_repo(
        tmp_path / "repo", model, "--name", "my-model.v2", "--imgsz", "384", "640", "--max-batch", "4",
        "--max-queue-delay-us", "500", "--instances", "2",
    )  # fmt: skip
    config = read_config(model_dir)
    assert config.name == "my-model.v2" and model_dir.name == "my-model.v2"
    assert list(config.input[0].dims) == [3, 384, 640]
    assert list(config.output[0].dims) == [5040, 85]
    assert config.max_batch_size == 4
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert [g.count for g in config.instance_group] == [2]
    assert json.loads(config.parameters["perception.class_names"].string_value) == list(names.values())


def test_fixed_batch_graph_gets_no_batching(tmp_path: Path) -> None:
    model = yolox_variant(tmp_path / "static.onnx", static_hw=(384, 640))
    proc = run_cli("triton-repo", model, "--out", tmp_path / "repo")
    assert proc.returncode == 0, proc.stderr
    assert "no batching" in proc.stderr
    config = read_config(tmp_path / "repo" / "static")
    assert config.max_batch_size == 0
    assert not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, 3, 384, 640]
    assert list(config.output[0].dims) == [1, 5040, 85]


def test_tensorrt_repository_says_the_plan_is_built_on_the_server(tmp_path: Path) -> None:
    proc = run_cli(
        "triton-repo", YOLOX_ONNX, "--out", tmp_path / "repo", "--platform", "tensorrt", "--max-batch", "16"
    )
    assert proc.returncode == 0, proc.stderr
    model_dir = tmp_path / "repo" / "yolox_nano"
    assert "ON THE TRITON SERVER'S GPU" in proc.stderr and "build_plan.sh" in proc.stderr
    config = read_config(model_dir)
    assert config.platform == "tensorrt_plan"
    assert config.max_batch_size == 16 and config.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_GPU, 1)
    ]
    assert list((model_dir / "1").iterdir()) == []  # the plan is made on the server, not here
    assert (model_dir / "model.onnx").read_bytes() == YOLOX_ONNX.read_bytes()
    script = (model_dir / "build_plan.sh").read_text()
    assert "trtexec --onnx=model.onnx --saveEngine=1/model.plan --fp16" in script
    assert (
        "--minShapes=images:1x3x448x800 --optShapes=images:16x3x448x800 --maxShapes=images:16x3x448x800"
        in script
    )


def test_tensorrt_int8_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "int8.yaml"
    config.write_text("tensorrt:\n  precision: int8\n")
    proc = run_cli(
        "triton-repo", YOLOX_ONNX, "--out", tmp_path / "repo", "--platform", "tensorrt", "--config", config
    )
    assert_one_line_error(proc, "int8")
    assert not (tmp_path / "repo").exists()


def test_existing_model_folder_needs_force(tmp_path: Path) -> None:
    write_repo(tmp_path / "repo", YOLOX_ONNX)
    proc = run_cli("triton-repo", YOLOX_ONNX, "--out", tmp_path / "repo", "--imgsz", "384", "640")
    assert_one_line_error(proc, "exists", "--force")
    assert list(read_config(tmp_path / "repo" / "yolox_nano").input[0].dims) == [3, 448, 800]  # untouched
    write_repo(tmp_path / "repo", YOLOX_ONNX, "--imgsz", "384", "640", "--force")
    assert list(read_config(tmp_path / "repo" / "yolox_nano").input[0].dims) == [3, 384, 640]


@pytest.mark.parametrize(
    ("model", "args", "needles"),
    [
        (Path("missing.onnx"), [], ["model not found", "missing.onnx"]),
        (ASSETS / "models" / "yolov8n_int8_openvino_model" / "yolov8n.xml", [], ["ONNX model"]),
        (YOLOX_ONNX, ["--imgsz", "400", "640"], ["multiples of 32"]),
        (YOLOX_ONNX, ["--max-batch", "0"], ["--max-batch 0"]),
        (YOLOX_ONNX, ["--name", "a/b"], ["model name"]),
        (
            ASSETS / "models" / "gtsdb_yolov5n_640.onnx",
            ["--imgsz", "384", "640"],
            ["fixed input size 640x640"],
        ),
    ],
)
def test_bad_requests_are_one_line_errors(
    tmp_path: Path, model: Path, args: list[str], needles: list[str]
) -> None:
    proc = run_cli("triton-repo", model, "--out", tmp_path / "repo", *args)
    assert_one_line_error(proc, *needles)


def test_fixed_size_model_refuses_another_size(tmp_path: Path) -> None:
    model = yolox_variant(tmp_path / "static.onnx", static_hw=(384, 640))
    proc = run_cli("triton-repo", model, "--out", tmp_path / "repo", "--imgsz", "448", "800")
    assert_one_line_error(proc, "fixed input size 384x640")
