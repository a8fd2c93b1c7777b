"""Detector recall and precision at IoU 0.5 on labelled real frames, for pedestrians and vehicles.

    python benchmarks/detector_accuracy.py [--thresholds 0.15 0.4] [--json]

Data (from ../shared or $PERCEPTION_ASSETS):
- MOT17-mini: every frame of all 7 sequences (1920x1080, one 640x480). Scored: gt class 1 (pedestrian,
  `consider` set) and class 3 (car) with visibility >= 0.5. Ignored (a detection on them is neither right nor
  wrong): less visible pedestrians and cars, and the devkit's distractors (person on vehicle, static person,
  distractor, reflection) for pedestrians.
- KITTI: the 3 frames (1242x375). Scored at KITTI's "moderate" level (box height >= 25 px, occlusion <= 1,
  truncation <= 0.3): Pedestrian; Car, Van, Truck, Tram as vehicle. Ignored: the same classes below
  moderate, Person_sitting and Cyclist for pedestrians, Misc for vehicles, DontCare regions.

Each model runs at each of its input sizes through the project's own detector (what `perception run`
uses), with the config's score threshold lowered to the smallest threshold reported; a detection counts
at threshold t if its score is >= t. Matching is greedy by score, one detection per ground-truth box; an
unmatched detection with IoU >= 0.5 with an ignored box, or lying at least half inside one, is ignored.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.config import Config, load_config
from perception.detect import create_detector

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
IOU_THRESHOLD = 0.5
MOT_VISIBILITY = 0.5
MOT_PEDESTRIAN, MOT_CAR = 1, 3
MOT_PERSON_DISTRACTORS = (2, 7, 8, 12)
KITTI_MIN_HEIGHT, KITTI_MAX_OCCLUSION, KITTI_MAX_TRUNCATION = 25.0, 1, 0.3
KITTI_SCORED = {
    "Pedestrian": "pedestrian",
    "Car": "vehicle",
    "Van": "vehicle",
    "Truck": "vehicle",
    "Tram": "vehicle",
}
KITTI_IGNORED = {"Person_sitting": "pedestrian", "Cyclist": "pedestrian", "Misc": "vehicle"}
CLASSES = ("pedestrian", "vehicle")

# (name, model path under ASSETS, backend, input sizes). The YOLOv8n INT8 IR has a fixed 640x640 input:
# Ultralytics baked its anchor grid into the graph, so OpenVINO cannot reshape it.
MODELS = [
    ("YOLOX-Nano", "models/yolox_nano.onnx", "onnxruntime", [(384, 640), (448, 800), (640, 1152)]),
    ("YOLOX-Nano", "models/yolox_nano.onnx", "openvino", [(448, 800)]),
    ("YOLOv8n INT8", "models/yolov8n_int8_openvino_model", "openvino", [(640, 640)]),
    ("YOLOv8n INT8", "models/yolov8n_int8_openvino_model", "ultralytics", [(640, 640)]),
]


@dataclass
class Frame:
    dataset: str
    path: Path
    boxes: dict[str, np.ndarray]  # scored ground truth per class, (N, 4) xyxy
    ignore: dict[str, np.ndarray]  # ignored regions per class, (M, 4) xyxy


def _xywh_to_xyxy(rows: np.ndarray) -> np.ndarray:
    # MOT boxes are 1-based top-left + size.
    return np.c_[rows[:, 0] - 1, rows[:, 1] - 1, rows[:, 0] - 1 + rows[:, 2], rows[:, 1] - 1 + rows[:, 3]]


def mot17_frames(root: Path) -> list[Frame]:
    frames = []
    for seq in sorted(p for p in root.iterdir() if (p / "gt" / "gt.txt").is_file()):
        ini = configparser.ConfigParser()
        ini.read(seq / "seqinfo.ini")
        gt = np.loadtxt(seq / "gt" / "gt.txt", delimiter=",", ndmin=2)
        for image in sorted((seq / ini["Sequence"].get("imDir", "img1")).glob("*.jpg")):
            rows = gt[gt[:, 0] == int(image.stem)]
            cls, consider, vis = rows[:, 7], rows[:, 6] > 0, rows[:, 8]
            boxes = _xywh_to_xyxy(rows[:, 2:6])
            ped = (cls == MOT_PEDESTRIAN) & consider & (vis >= MOT_VISIBILITY)
            ped_ignore = ((cls == MOT_PEDESTRIAN) & ~ped) | np.isin(cls, MOT_PERSON_DISTRACTORS)
            car = (cls == MOT_CAR) & (vis >= MOT_VISIBILITY)
            car_ignore = (cls == MOT_CAR) & ~car
            frames.append(
                Frame(
                    "MOT17-mini",
                    image,
                    {"pedestrian": boxes[ped], "vehicle": boxes[car]},
                    {"pedestrian": boxes[ped_ignore], "vehicle": boxes[car_ignore]},
                )
            )
    return frames


def kitti_frames(root: Path) -> list[Frame]:
    frames = []
    for label_file in sorted((root / "label_2").glob("*.txt")):
        boxes = {c: [] for c in CLASSES}
        ignore = {c: [] for c in CLASSES}
        for line in label_file.read_text().splitlines():
            f = line.split()
            kind, truncated, occluded = f[0], float(f[1]), int(f[2])
            box = [float(v) for v in f[4:8]]
            moderate = (
                box[3] - box[1] >= KITTI_MIN_HEIGHT
                and occluded <= KITTI_MAX_OCCLUSION
                and truncated <= KITTI_MAX_TRUNCATION
            )
            if kind in KITTI_SCORED:
                (boxes if moderate else ignore)[KITTI_SCORED[kind]].append(box)
            elif kind in KITTI_IGNORED:
                ignore[KITTI_IGNORED[kind]].append(box)
            elif kind == "DontCare":
                for c in CLASSES:
                    ignore[c].append(box)
        as_array = {c: np.array(v, np.float64).reshape(-1, 4) for c, v in boxes.items()}
        as_ignore = {c: np.array(v, np.float64).reshape(-1, 4) for c, v in ignore.items()}
        image = root / "image_2" / f"{label_file.stem}.png"
        frames.append(Frame("KITTI", image, as_array, as_ignore))
    return frames


def _overlaps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, M) IoU and intersection over a's area."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter), inter / area_a[:, None]


def score_frame(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, ignore: np.ndarray) -> np.ndarray:
    """Per detection, best first: 1 true positive, 0 false positive, -1 ignored."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes[order]
    outcome = np.zeros(len(boxes), np.int8)
    iou_gt = _overlaps(boxes, gt)[0] if len(gt) and len(boxes) else np.zeros((len(boxes), 0))
    if len(ignore) and len(boxes):
        iou_ign, inside = _overlaps(boxes, ignore)
        on_ignored = ((iou_ign >= IOU_THRESHOLD) | (inside >= 0.5)).any(1)
    else:
        on_ignored = np.zeros(len(boxes), bool)
    taken = np.zeros(len(gt), bool)
    for i in range(len(boxes)):
        candidates = np.where(taken, -1.0, iou_gt[i]) if len(gt) else np.zeros(0)
        j = int(np.argmax(candidates)) if len(candidates) else -1
        if j >= 0 and candidates[j] >= IOU_THRESHOLD:
            taken[j] = True
            outcome[i] = 1
        elif on_ignored[i]:
            outcome[i] = -1
    result = np.empty_like(outcome)
    result[order] = outcome
    return result


def evaluate(
    cfg: Config, model: Path, backend: str, size: tuple[int, int], frames: list[Frame], lowest: float
) -> dict[tuple[str, str], dict]:
    """Per (dataset, class): each frame's detection scores and outcomes, and the ground-truth count."""
    run_cfg = cfg.model_copy(
        update={
            "detector": cfg.detector.model_copy(
                update={"backend": backend, "input_size": size, "conf_threshold": lowest}
            )
        }
    )
    detector = create_detector(model, run_cfg)
    labels = cfg.labels
    per: dict[tuple[str, str], dict] = {}
    for frame in frames:
        image = cv2.imread(str(frame.path))
        det = detector.detect(image)
        for cls in CLASSES:
            mine = det.label_ids == labels.index(cls)
            outcome = score_frame(
                det.boxes_xyxy[mine].astype(np.float64), det.scores[mine], frame.boxes[cls], frame.ignore[cls]
            )
            entry = per.setdefault((frame.dataset, cls), {"scores": [], "outcomes": [], "gt": 0})
            entry["scores"].append(det.scores[mine])
            entry["outcomes"].append(outcome)
            entry["gt"] += len(frame.boxes[cls])
    return per


def metrics(entry: dict, threshold: float) -> dict:
    scores = np.concatenate(entry["scores"]) if entry["scores"] else np.zeros(0)
    outcomes = np.concatenate(entry["outcomes"]) if entry["outcomes"] else np.zeros(0)
    kept = outcomes[scores >= threshold]
    tp, fp = int((kept == 1).sum()), int((kept == 0).sum())
    return {
        "tp": tp,
        "fp": fp,
        "recall": tp / entry["gt"] if entry["gt"] else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.15, 0.4])
    parser.add_argument("--config", help="YAML overriding configs/default.yaml (taxonomy, NMS)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON lines")
    args = parser.parse_args()
    cfg = load_config(args.config)
    frames = mot17_frames(ASSETS / "mot" / "MOT17-mini") + kitti_frames(ASSETS / "kitti")
    lowest = min(args.thresholds)

    rows = []
    for name, rel, backend, sizes in MODELS:
        for size in sizes:
            per = evaluate(cfg, ASSETS / rel, backend, size, frames, lowest)
            for (dataset, cls), entry in per.items():
                row = {
                    "model": name,
                    "backend": backend,
                    "input": f"{size[0]}x{size[1]}",
                    "dataset": dataset,
                    "class": cls,
                    "gt": entry["gt"],
                }
                for t in args.thresholds:
                    row[f"@{t:g}"] = metrics(entry, t)
                rows.append(row)
                if args.json:
                    print(json.dumps(row))
    if args.json:
        return
    counts = {ds: sum(1 for f in frames if f.dataset == ds) for ds in ("MOT17-mini", "KITTI")}
    print(
        f"frames: MOT17-mini {counts['MOT17-mini']} (7 sequences), KITTI {counts['KITTI']}; "
        f"IoU {IOU_THRESHOLD}"
    )
    head = "| model | backend | input | data | class | gt | " + " | ".join(
        f"recall @{t:g} | precision @{t:g}" for t in args.thresholds
    )
    print(head + " |")
    print("|" + "---|" * (6 + 2 * len(args.thresholds)))
    order = {"MOT17-mini": 0, "KITTI": 1}
    for row in sorted(
        rows, key=lambda r: (r["model"], r["input"], r["backend"], order[r["dataset"]], r["class"])
    ):
        cells = []
        for t in args.thresholds:
            m = row[f"@{t:g}"]
            cells.append(f"{m['recall']:.3f} ({m['tp']}) | {m['precision']:.3f} ({m['fp']} FP)")
        print(
            f"| {row['model']} | {row['backend']} | {row['input']} | {row['dataset']} | {row['class']} | "
            f"{row['gt']} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
