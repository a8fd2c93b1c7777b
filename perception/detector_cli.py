"""The detector's own commands, added to `perception` by cli.py:

- `perception detect IMAGE_OR_DIR`: detections printed and drawn, the first check a user runs on a model;
- `perception build-engine MODEL.onnx`: a TensorRT plan (and INT8 calibration) into the engine folder;
- `perception export MODEL.pt`: Ultralytics export to ONNX or OpenVINO, for the other backends.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from perception.cli_flags import add_flags, flag_overrides
from perception.config import load_config
from perception.detect import BACKENDS, Detector, create_detector, resolve_backend
from perception.errors import PerceptionError
from perception.sinks import LABEL_COLOURS, draw_labels
from perception.sources import IMAGE_SUFFIXES, image_files
from perception.types import Detections

COMMANDS = ("detect", "build-engine", "export")
PRECISIONS = ("fp32", "fp16", "int8")


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=["auto", *BACKENDS],
        help="detector runtime (default: config detector.backend, auto: TensorRT on an NVIDIA GPU, "
        "else ONNX Runtime / OpenVINO by model format)",
    )


def _imgsz(values: list[int] | None) -> tuple[int, int] | None:
    if values is None:
        return None
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def add_commands(commands: argparse._SubParsersAction) -> None:
    detect = commands.add_parser(
        "detect", help="run the detector on images: print the boxes and draw them", allow_abbrev=False
    )
    detect.add_argument("images", type=Path, help="an image, or a folder of images")
    detect.add_argument(
        "--model",
        help="detector model: .onnx, OpenVINO IR, .pt, .engine (default: config detector.default_model)",
    )
    add_flags(detect, "--backend", "--imgsz", "--conf", "--classes")
    detect.add_argument("--config", help="YAML overriding configs/default.yaml")
    detect.add_argument("--out", type=Path, help="folder for the drawn images (default: out/detect)")

    build = commands.add_parser(
        "build-engine", help="build a TensorRT plan from an ONNX model (NVIDIA GPU)", allow_abbrev=False
    )
    build.add_argument("model", type=Path, help="ONNX model")
    precision = build.add_mutually_exclusive_group()
    for name in PRECISIONS:
        precision.add_argument(
            f"--{name}", dest="precision", action="store_const", const=name, help=f"{name.upper()} plan"
        )
    build.add_argument("--calib-dir", type=Path, help="INT8 calibration images: an image folder or a video")
    build.add_argument(
        "--imgsz", type=int, nargs="+", metavar="N", help="input height [width] (default: config input_size)"
    )
    build.add_argument(
        "--batch", type=int, help="largest batch the plan accepts (default: config tensorrt.batch)"
    )
    build.add_argument("--config", help="YAML overriding configs/default.yaml")

    export = commands.add_parser(
        "export", help="export an Ultralytics .pt model (through Ultralytics)", allow_abbrev=False
    )
    export.add_argument("model", help="Ultralytics .pt model")
    export.add_argument("--format", choices=["onnx", "openvino"], default="onnx", help="export format")
    export.add_argument(
        "--imgsz", type=int, nargs="+", metavar="N", help="input height [width] (default: 640)"
    )
    export.add_argument("--dynamic", action="store_true", help="dynamic input size (ONNX)")


def run(args: argparse.Namespace) -> int:
    if args.command == "detect":
        return _detect(args)
    if args.command == "build-engine":
        return _build_engine(args)
    return _export(args)


# ---------------------------------------------------------------- detect


def _image_files(target: Path) -> list[Path]:
    if not target.exists():
        raise PerceptionError(f"not found: {target}")
    if target.is_file():
        return [target]
    files = image_files(target)
    if not files:
        raise PerceptionError(f"no images in {target} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def draw_detections(image: np.ndarray, det: Detections, labels: list[str], class_names: list[str]) -> None:
    """Boxes, each with its class and score (labels placed so they do not pile up), in place."""
    boxes = np.round(det.boxes_xyxy).astype(np.int32)
    texts, colours = [], []
    for box, score, class_id, label_id in zip(boxes, det.scores, det.class_ids, det.label_ids, strict=True):
        colour = LABEL_COLOURS.get(labels[label_id], (200, 200, 200))
        x1, y1, x2, y2 = box.tolist()
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2, cv2.LINE_AA)
        texts.append(f"{class_names[class_id]} {score:.2f}")
        colours.append(colour)
    draw_labels(image, boxes, texts, colours, np.argsort(-det.scores, kind="stable"))


def _detect(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, flag_overrides(args))
    files = _image_files(args.images)
    model = args.model or cfg.detector.default_model
    # What is shown: output.display_conf, or the --conf a user asked for (then it is both thresholds).
    shown = args.conf if args.conf is not None else cfg.output.display_conf
    detector = create_detector(model, cfg)
    try:
        _detect_files(detector, files, args.out or Path("out") / "detect", cfg.labels, model, shown)
    finally:
        detector.close()
    return 0


def _detect_files(
    detector: Detector, files: list[Path], out: Path, labels: list[str], model: str, min_score: float = 0.0
) -> int:
    """Detect each image, print and draw the detections scoring at least `min_score`; how many those were."""
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"perception: {Path(model).name} [{detector.backend}, {detector.layout}, "
        f"{detector.input_hw[0]}x{detector.input_hw[1]}] on {len(files)} image(s) -> {out}",
        file=sys.stderr,
    )
    total = 0
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise PerceptionError(f"cannot read image {path}")
        started = time.perf_counter()
        found = detector.detect(image)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        det = found.subset(np.flatnonzero(found.scores >= min_score))
        total += len(det)
        h, w = image.shape[:2]
        hidden = f" ({len(found) - len(det)} below {min_score:g} not shown)" if len(found) > len(det) else ""
        print(f"{path.name} {w}x{h}: {len(det)} detections{hidden} in {elapsed_ms:.1f} ms")
        for box, score, class_id, label_id in zip(
            det.boxes_xyxy, det.scores, det.class_ids, det.label_ids, strict=True
        ):
            coords = ", ".join(f"{v:.1f}" for v in box.tolist())
            print(f"  {labels[label_id]:<13} {detector.class_names[class_id]:<14} {score:.2f}  [{coords}]")
        draw_detections(image, det, labels, detector.class_names)
        if not cv2.imwrite(str(out / path.name), image):
            raise PerceptionError(f"cannot write {out / path.name}")
    print(f"perception: {len(files)} image(s), {total} detections -> {out}", file=sys.stderr)
    return total


# ---------------------------------------------------------------- build-engine, export


def _build_engine(args: argparse.Namespace) -> int:
    from perception.detect.engine_build import build_plan, prepare_build
    from perception.detect.gpu import open_gpu

    cfg = load_config(args.config)
    precision = args.precision or cfg.tensorrt.precision
    # Everything that needs no GPU is checked first, so a bad request fails before any build starts.
    spec = prepare_build(args.model, cfg, precision, _imgsz(args.imgsz), args.batch, args.calib_dir)
    gpu = open_gpu(cfg.tensorrt.device)
    plan, _info = build_plan(spec, cfg, gpu)
    print(plan)
    return 0


def _export(args: argparse.Namespace) -> int:
    from perception.detect.ultralytics import export_model

    out = export_model(args.model, args.format, _imgsz(args.imgsz), args.dynamic)
    print(out)
    backend = resolve_backend(out, "auto")
    print(f"perception: run it with --model {out} (backend {backend})", file=sys.stderr)
    return 0
