"""The Triton command, added to `perception` by cli.py:

- `perception triton-repo MODEL.onnx --out DIR`: a model repository for NVIDIA's Triton Inference Server, so
  pipelines on many machines share GPU servers (`--backend triton`) and Triton batches across them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from perception.core.config import load_config

COMMANDS = ("triton-repo",)


def add_commands(commands: argparse._SubParsersAction) -> None:
    repo = commands.add_parser(
        "triton-repo", help="write a Triton Inference Server model repository for an ONNX detector"
    )
    repo.add_argument("model", type=Path, help="ONNX detector (YOLOX or Ultralytics layout)")
    repo.add_argument("--out", required=True, type=Path, help="model repository folder (tritonserver's)")
    repo.add_argument(
        "--platform",
        choices=["onnxruntime", "tensorrt"],
        default="onnxruntime",
        help="Triton backend: onnxruntime (1/model.onnx) or tensorrt (1/model.plan, built on the server)",
    )
    repo.add_argument(
        "--max-batch", type=int, default=8, help="largest batch Triton's dynamic batcher forms (default 8)"
    )
    repo.add_argument("--name", help="model name (default: the file's stem)")
    repo.add_argument(
        "--imgsz",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size served (default: config input_size)",
    )
    repo.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=0,
        help="how long a request may wait for others to batch with (default 0: only requests that queue "
        "while the model is busy are batched, none is held back)",
    )
    repo.add_argument("--instances", type=int, default=1, help="model instances per GPU, or on the CPU")
    repo.add_argument("--config", help="YAML overriding configs/default.yaml (layout, input size, precision)")
    repo.add_argument("--force", action="store_true", help="replace the model's folder if it exists")


def run(args: argparse.Namespace) -> int:
    from perception.detect.triton.repo import write_repository

    cfg = load_config(args.config)
    model = write_repository(
        args.model,
        args.out,
        cfg,
        platform=args.platform,
        max_batch=args.max_batch,
        name=args.name,
        imgsz=tuple(args.imgsz) if args.imgsz else None,
        max_queue_delay_us=args.max_queue_delay_us,
        instances=args.instances,
        force=args.force,
    )
    model_dir = args.out / model.name
    dims = "x".join(str(d) for d in model.input.dims[-2:])
    batching = (
        f"dynamic batching up to {model.max_batch_size}"
        if model.max_batch_size
        else "no batching (the graph has a fixed batch of 1; export it with a dynamic batch to batch)"
    )
    print(
        f"perception: {model.name} [{model.platform}, {model.layout}, {dims}, "
        f"{len(model.class_names)} classes, {batching}] -> {model_dir}",
        file=sys.stderr,
    )
    if model.platform == "tensorrt":
        print(
            f"perception: build {model_dir / '1' / 'model.plan'} ON THE TRITON SERVER'S GPU with its "
            f"TensorRT version: sh {model_dir / 'build_plan.sh'} (trtexec, in NVIDIA's TensorRT image "
            "matching the Triton image); a plan built elsewhere will not load",
            file=sys.stderr,
        )
    else:
        print(
            f"perception: serve it with tritonserver --model-repository {args.out.resolve()}, then run "
            f"perception run SOURCE --backend triton --model {model.name}",
            file=sys.stderr,
        )
    print(model_dir)
    return 0
