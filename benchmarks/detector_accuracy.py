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
uses), with the config's score threshold lowered to 0.001; a detection counts at threshold t if its score
is >= t, and AP50 (all-point) is over every detection. Scoring is perception.eval.detection's (as
`perception eval-det`): greedy by score, one detection per ground-truth box; an unmatched detection with
IoU >= 0.5 with an ignored box, or lying at least half inside one, is ignored.
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

from perception.core.boxes import match_image
from perception.core.config import Config, load_config
from perception.detect import create_detector
from perception.eval.detection import average_precision, read_kitti

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
IOU_THRESHOLD = 0.5
AP_CONF_THRESHOLD = 0.001
MOT_VISIBILITY = 0.5
MOT_PEDESTRIAN, MOT_CAR = 1, 3
MOT_PERSON_DISTRACTORS = (2, 7, 8, 12)
CLASSES = ("pedestrian", "vehicle")

# (name, model path under ASSETS, backend, input sizes). The YOLOv8n INT8 IR has a fixed 640x640 input:
# Ultralytics baked its anchor grid into the graph, so OpenVINO cannot reshape it.
MODELS = [
    ("YOLOX-Nano", "models/yolox_nano.onnx", "onnxruntime", [(384, 640), (448, 800), (640, 1152)]),
    ("YOLOX-Nano", "models/yolox_nano.onnx", "openvino", [(448, 800)]),
    ("YOLOv8n INT8", "models/yolov8n_int8_openvino_model", "openvino", [(640, 640)]),
    ("YOLOv8n INT8", "models/yolov8n_int8_openvino_model", "ultralytics", [(640, 640)]),
    ("YOLO11n INT8", "models/yolo11n_int8_openvino_model", "openvino", [(640, 640)]),
    ("YOLO26n INT8", "models/yolo26n_int8.onnx", "onnxruntime", [(640, 640)]),
    ("YOLO26n INT8", "models/yolo26n_int8.onnx", "openvino", [(640, 640)]),
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
    """KITTI's moderate level, as `perception eval-det --format kitti` scores it."""
    stems = [p.stem for p in sorted((root / "label_2").glob("*.txt"))]
    truth = read_kitti(root / "label_2", stems)
    return [
        Frame(
            "KITTI",
            root / "image_2" / f"{stem}.png",
            {c: truth[stem].of(c)[0] for c in CLASSES},
            {c: truth[stem].of(c)[1] for c in CLASSES},
        )
        for stem in stems
    ]


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
    try:
        _collect(detector, frames, labels, per)
    finally:
        detector.close()
    return per


def _collect(detector, frames: list[Frame], labels: list[str], per: dict) -> None:
    for frame in frames:
        image = cv2.imread(str(frame.path))
        det = detector.detect(image)
        for cls in CLASSES:
            mine = det.label_ids == labels.index(cls)
            outcome = match_image(
                det.boxes_xyxy[mine].astype(np.float64), det.scores[mine], frame.boxes[cls], frame.ignore[cls]
            )
            entry = per.setdefault((frame.dataset, cls), {"scores": [], "outcomes": [], "gt": 0})
            entry["scores"].append(det.scores[mine])
            entry["outcomes"].append(outcome)
            entry["gt"] += len(frame.boxes[cls])


def ap50(entry: dict) -> float:
    scores = np.concatenate(entry["scores"]) if entry["scores"] else np.zeros(0)
    outcomes = np.concatenate(entry["outcomes"]) if entry["outcomes"] else np.zeros(0, np.int8)
    return average_precision(scores, outcomes, entry["gt"])


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
    lowest = min(*args.thresholds, AP_CONF_THRESHOLD)  # AP over every detection down to this score

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
                    "ap50": round(ap50(entry), 4),
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
    head = "| model | backend | input | data | class | gt | AP50 | " + " | ".join(
        f"recall @{t:g} | precision @{t:g}" for t in args.thresholds
    )
    print(head + " |")
    print("|" + "---|" * (7 + 2 * len(args.thresholds)))
    order = {"MOT17-mini": 0, "KITTI": 1}
    rank = {name: i for i, (name, *_rest) in reversed(list(enumerate(MODELS)))}  # first listing wins
    for row in sorted(
        rows, key=lambda r: (rank[r["model"]], r["input"], r["backend"], order[r["dataset"]], r["class"])
    ):
        cells = []
        for t in args.thresholds:
            m = row[f"@{t:g}"]
            cells.append(f"{m['recall']:.3f} ({m['tp']}) | {m['precision']:.3f} ({m['fp']} FP)")
        print(
            f"| {row['model']} | {row['backend']} | {row['input']} | {row['dataset']} | {row['class']} | "
            f"{row['gt']} | {row['ap50']:.3f} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
