"""Per-backend detector latency, median and p99, on real dashcam frames.

    python benchmarks/detector_latency.py [--passes 2] [--block 25] [--warmup 10]

Times `detector.detect(frame)`: letterbox, inference and decoding with NMS, what the pipeline's detect
stage pays per frame, on every frame of ../shared/videos/highway_960x540_25fps.mp4 (960x540), decoded
into memory first. All configurations are loaded up front and then take turns (interleaved, so a busy
spell on the machine hits each of them alike) in blocks of consecutive frames: a runtime's worker
threads keep spinning for a moment after each call, and taking turns frame by frame would charge that to
whichever runtime runs next (OpenVINO after ONNX Runtime measured ~1.6x slower that way). The first frame
of each block is not counted. TensorRT rows appear only where an NVIDIA GPU with tensorrt and pycuda is
present (its plans are built, or reused, first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from perception.core.config import load_config
from perception.detect import create_detector
from perception.detect.tensorrt.gpu import tensorrt_available

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
YOLOX = ("YOLOX-Nano", "models/yolox_nano.onnx", [(384, 640), (448, 800), (640, 640)])
YOLOV8 = ("YOLOv8n INT8", "models/yolov8n_int8_openvino_model", [(640, 640)])  # fixed-size IR
CONFIGS = [
    (*YOLOX, ["onnxruntime", "openvino", "tensorrt"]),
    (*YOLOV8, ["openvino", "ultralytics"]),
]


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    """The clip's frames in memory (the first `limit` of them): timing starts after decoding."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while limit is None or len(frames) < limit:
        ok, image = cap.read()
        if not ok:
            break
        frames.append(image)
    cap.release()
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ASSETS / "videos" / "highway_960x540_25fps.mp4")
    parser.add_argument("--passes", type=int, default=2, help="times over the clip")
    parser.add_argument("--block", type=int, default=25, help="consecutive frames per turn")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames per configuration first")
    parser.add_argument("--config", help="YAML overriding configs/default.yaml (threads, OpenVINO hint, ...)")
    args = parser.parse_args()
    cfg = load_config(args.config)
    frames = read_frames(args.source)
    gpu = tensorrt_available()

    runs = []
    for name, rel, sizes, backends in CONFIGS:
        for size in sizes:
            for backend in backends:
                if backend == "tensorrt" and not gpu:
                    continue
                run_cfg = cfg.model_copy(
                    update={
                        "detector": cfg.detector.model_copy(update={"backend": backend, "input_size": size})
                    }
                )
                detector = create_detector(ASSETS / rel, run_cfg)
                for image in frames[: args.warmup]:
                    detector.detect(image)
                label = f"| {name} | {backend} | {detector.input_hw[0]}x{detector.input_hw[1]} |"
                runs.append((label, detector, []))

    load_before = os.getloadavg()
    for _ in range(args.passes):
        for start in range(0, len(frames), args.block):
            for _label, detector, times in runs:
                for i, image in enumerate(frames[start : start + args.block]):
                    started = time.perf_counter()
                    detector.detect(image)
                    if i:  # the first frame of a turn may still share the CPU with the last runtime
                        times.append((time.perf_counter() - started) * 1e3)
    load_after = os.getloadavg()

    print(
        f"{len(frames)} frames of {args.source.name} x {args.passes} passes in turns of {args.block}, "
        f"{os.cpu_count()} CPUs, "
        f"load average {load_before[0]:.1f} before / {load_after[0]:.1f} after"
        + ("" if gpu else "; no NVIDIA GPU: TensorRT not measured")
    )
    print("| model | backend | input | detect ms p50 | detect ms p99 | mean | frames |")
    print("|---|---|---|---|---|---|---|")
    for label, _detector, times in runs:
        ordered = sorted(times)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(
            f"{label} {statistics.median(ordered):.1f} | {p99:.1f} | {statistics.fmean(ordered):.1f} | "
            f"{len(ordered)} |"
        )


if __name__ == "__main__":
    main()
