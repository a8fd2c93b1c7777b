"""The detector's own commands, added to `perception` by cli.py:

- `perception detect IMAGE_OR_DIR`: detections printed and drawn, the first check a user runs on a model
  (with every configured extra detector beside it);
- `perception eval-det IMAGES --gt FILE --format F`: precision, recall, AP50 against ground truth;
- `perception build-engine MODEL.onnx`: a TensorRT plan (and INT8 calibration) into the engine folder;
- `perception export MODEL.pt`: Ultralytics export to ONNX or OpenVINO, for the other backends;
- `perception quantize MODEL --calib FRAMES`: static INT8 (NNCF, OpenVINO IR), written only if recall holds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from perception.cli.flags import add_flags, flag_overrides
from perception.core.config import Config, load_config
from perception.core.errors import PerceptionError
from perception.core.types import Detections
from perception.detect import Detector, create_detector, resolve_backend
from perception.detect.extra import ExtraDetector, create_extra_detectors, merge_detections, run_class_names
from perception.detect.labels import ALL_CLASSES, describe_dropped
from perception.eval.detection import FORMATS, GroundTruth, evaluate
from perception.output.sinks import LABEL_COLOURS, draw_labels
from perception.sources.files import IMAGE_SUFFIXES, image_files

COMMANDS = ("detect", "eval-det", "build-engine", "export", "quantize")
AP_CONF_THRESHOLD = 0.001  # eval-det keeps detections down to this score for AP (as YOLO val does)
PRECISIONS = ("fp32", "fp16", "int8")


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

    ev = commands.add_parser(
        "eval-det",
        help="score the detector against ground truth: precision, recall, AP50 per class",
        allow_abbrev=False,
    )
    ev.add_argument("images", type=Path, help="an image, or a folder of images")
    ev.add_argument("--gt", required=True, type=Path, help="ground truth: GTSDB gt.txt, or a labels folder")
    ev.add_argument("--format", required=True, choices=FORMATS, help="ground-truth format")
    ev.add_argument("--model", required=True, help="detector model")
    add_flags(ev, "--backend", "--imgsz", "--conf")
    ev.add_argument("--config", help="YAML overriding configs/default.yaml")
    ev.add_argument("--json", action="store_true", help="print the scores as one JSON object")

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

    quant = commands.add_parser(
        "quantize", help="static INT8 for the CPU (NNCF, OpenVINO IR), written only if recall holds"
    )
    quant.add_argument("model", type=Path, help="FP32 model: .onnx or OpenVINO IR")
    quant.add_argument(
        "--calib", required=True, help="real frames: a video or an image folder (MOT sequences: scored on gt)"
    )
    quant.add_argument(
        "--imgsz", type=int, nargs="+", metavar="N", help="input height [width] (a fixed-size model's own)"
    )
    quant.add_argument(
        "--out", type=Path, help="output folder (default: out/quantize/NAME_int8_HxW_openvino_model)"
    )
    quant.add_argument(
        "--frames", type=int, default=300, help="frames taken from --calib, evenly (default 300)"
    )
    quant.add_argument(
        "--max-drop",
        type=float,
        default=0.01,
        help="largest recall loss accepted, as a fraction (default 0.01)",
    )
    quant.add_argument(
        "--check",
        help="frames for the accuracy check instead of every 4th of --calib (e.g. with ground truth)",
    )
    quant.add_argument("--config", help="YAML overriding configs/default.yaml")


def run(args: argparse.Namespace) -> int:
    if args.command == "detect":
        return _detect(args)
    if args.command == "eval-det":
        return _eval_det(args)
    if args.command == "build-engine":
        return _build_engine(args)
    if args.command == "quantize":
        return _quantize(args)
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


def detector_tag(detector: Detector) -> str:
    """`backend, layout, HxW`: how the start-up lines name a loaded detector."""
    return f"{detector.backend}, {detector.layout}, {detector.input_hw[0]}x{detector.input_hw[1]}"


def report_detector(detector: Detector, name: str = "") -> None:
    """Once at start, on stderr: which layout was decoded and why, and the classes the taxonomy drops."""
    prefix = f"perception: {name + ': ' if name else ''}"
    print(f"{prefix}layout {detector.layout}: {detector.layout_reason}", file=sys.stderr)
    dropped = describe_dropped(detector.dropped_classes, detector.class_names)
    if dropped:
        print(f"{prefix}{dropped}", file=sys.stderr)


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


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, flag_overrides(args))


def _detect(args: argparse.Namespace) -> int:
    cfg = _config(args)
    files = _image_files(args.images)
    model = args.model or cfg.detector.default_model
    out = args.out or Path("out") / "detect"
    # What is shown: output.display_conf, or the --conf a user asked for (then it is both thresholds).
    shown = args.conf if args.conf is not None else cfg.output.display_conf
    detector = create_detector(model, cfg)
    try:
        print(
            f"perception: {Path(model).name} [{detector_tag(detector)}] on {len(files)} image(s) -> {out}",
            file=sys.stderr,
        )
        report_detector(detector)
        extras = create_extra_detectors(cfg, detector)
        try:
            for extra in extras:
                report_detector(extra.detector, extra.name)
            _detect_files(detector, extras, files, out, cfg.labels, shown)
        finally:
            for extra in extras:
                extra.close()
    finally:
        detector.close()
    return 0


def _detect_files(
    detector: Detector,
    extras: list[ExtraDetector],
    files: list[Path],
    out: Path,
    labels: list[str],
    min_score: float = 0.0,
) -> int:
    """Detect (the main model and every extra one), print and draw the detections scoring at least
    `min_score`; how many those were."""
    out.mkdir(parents=True, exist_ok=True)
    class_names = run_class_names(detector, extras)
    total = 0
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise PerceptionError(f"cannot read image {path}")
        started = time.perf_counter()
        found = merge_detections([detector.detect(image), *(extra.detect(image) for extra in extras)])
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
            print(f"  {labels[label_id]:<13} {class_names[class_id]:<14} {score:.2f}  [{coords}]")
        draw_detections(image, det, labels, class_names)
        if not cv2.imwrite(str(out / path.name), image):
            raise PerceptionError(f"cannot write {out / path.name}")
    print(f"perception: {len(files)} image(s), {total} detections -> {out}", file=sys.stderr)
    return total


# ---------------------------------------------------------------- eval-det


def _eval_det(args: argparse.Namespace) -> int:
    """GTSDB and YOLO ground truth name the model's own class ids: every class is scored (taxonomy
    `{object: ["*"]}`, one NMS across classes, as an extra detector with "*" runs). KITTI names object
    types: scored as the config's driving labels. Precision and recall at the config's conf_threshold; AP
    over every detection down to AP_CONF_THRESHOLD."""
    cfg = _config(args)
    files = _image_files(args.images)
    conf = cfg.detector.conf_threshold
    low = cfg.detector.model_copy(update={"conf_threshold": min(conf, AP_CONF_THRESHOLD)})
    update: dict = {"detector": low}
    if args.format != "kitti":
        update["classes"] = {"object": [ALL_CLASSES]}
    truth = GroundTruth(args.gt, args.format, files)  # read (and checked) before the model loads
    detector = create_detector(args.model, cfg.model_copy(update=update))
    try:
        print(
            f"perception: {Path(args.model).name} [{detector_tag(detector)}] on {len(files)} image(s), "
            f"{args.format} ground truth {args.gt}",
            file=sys.stderr,
        )
        report_detector(detector)
        scores = evaluate(detector, files, truth, cfg.labels)
    finally:
        detector.close()
    names = None if args.format == "kitti" else class_keys(detector.class_names)
    result = {"model": str(args.model), "format": args.format, **scores.result(conf, names)}
    print(json.dumps(result) if args.json else format_scores(result))
    return 0


def class_keys(class_names: list[str]) -> dict[int, str]:
    """Class id -> the name it is reported under; a name the model repeats gets its id too."""
    repeated = {n for n in class_names if class_names.count(n) > 1}
    return {i: f"{n} [{i}]" if n in repeated else n for i, n in enumerate(class_names)}


def format_scores(result: dict) -> str:
    def cell(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    lines = [
        f"{result['images']} images, {result['gt']} ground-truth boxes, IoU {result['iou_threshold']:g}, "
        f"precision/recall at score >= {result['conf_threshold']:g}",
        f"{'class':<40} {'gt':>4} {'tp':>4} {'fp':>4} {'precision':>9} {'recall':>7} {'AP50':>6}",
    ]
    for name, m in result["per_class"].items():
        lines.append(
            f"{name:<40} {m['gt']:>4} {m['tp']:>4} {m['fp']:>4} {cell(m['precision']):>9} "
            f"{cell(m['recall']):>7} {cell(m['ap50']):>6}"
        )
    lines.append(
        f"{'all':<40} {result['gt']:>4} {result['tp']:>4} {result['fp']:>4} "
        f"{cell(result['precision']):>9} {cell(result['recall']):>7} {cell(result['ap50']):>6}"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- build-engine, export


def _build_engine(args: argparse.Namespace) -> int:
    from perception.detect.tensorrt.build import build_plan, prepare_build
    from perception.detect.tensorrt.gpu import open_gpu

    cfg = load_config(args.config)
    precision = args.precision or cfg.tensorrt.precision
    # Everything that needs no GPU is checked first, so a bad request fails before any build starts.
    spec = prepare_build(args.model, cfg, precision, _imgsz(args.imgsz), args.batch, args.calib_dir)
    gpu = open_gpu(cfg.tensorrt.device)
    plan, _info = build_plan(spec, cfg, gpu)
    print(plan)
    return 0


def _export(args: argparse.Namespace) -> int:
    from perception.detect.runtimes.ultralytics import export_model

    out = export_model(args.model, args.format, _imgsz(args.imgsz), args.dynamic)
    print(out)
    backend = resolve_backend(out, "auto")
    print(f"perception: run it with --model {out} (backend {backend})", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- quantize


def _quantize(args: argparse.Namespace) -> int:
    from perception.detect.quantize import HOLD_BACK_EVERY, quantize

    if args.frames < 1 or not 0 <= args.max_drop < 1:
        raise PerceptionError("--frames must be at least 1 and --max-drop within 0..1")
    imgsz = _imgsz(args.imgsz)
    overrides = {"detector": {"input_size": list(imgsz)}} if imgsz else None
    cfg = load_config(args.config, overrides)
    result = quantize(args.model, args.calib, cfg, args.out, args.frames, args.max_drop, args.check)
    check = result.check
    where = args.check or f"every {HOLD_BACK_EVERY}th of {args.calib}, held back"
    print(f"accuracy check on {check.frames} frames ({where}), {check.boxes} boxes")
    print(f"reference: {check.reference}")
    print(f"recall: FP32 {check.fp32_recall:.4f}, INT8 {check.recall:.4f} ({-100 * check.drop:+.2f} points)")
    print(
        f"detect() per frame, this machine, alternating: FP32 {result.fp32_ms:.1f} ms, "
        f"INT8 {result.int8_ms:.1f} ms (OpenVINO); calibrated on {result.calibration_frames} frames "
        f"in {result.seconds:.0f} s"
    )
    if result.out is None:
        raise PerceptionError(
            f"INT8 model not written: recall drops {100 * check.drop:.2f} points on the checked frames "
            f"(limit {100 * args.max_drop:.2f})"
        )
    print(f"wrote {result.out}")
    return 0
