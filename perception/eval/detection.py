"""Detection scoring: precision, recall and AP at IoU 0.5, overall and per class, against ground truth in
GTSDB, KITTI or YOLO format (`perception eval-det`, `benchmarks/detector_accuracy.py`).

Matching is greedy by score, one detection per ground-truth box (the best-overlapping one still free, IoU
>= 0.5); a detection matching no box but lying on an ignored region (IoU >= 0.5, or at least half inside)
is neither right nor wrong. AP is the area under the precision envelope over all detections (VOC 2010+,
all points); precision and recall are read at one score threshold, the operating point.

Classes: GTSDB and YOLO ground truth give the model's own class ids; KITTI gives object types, scored as
driving labels at KITTI's "moderate" level (box height >= 25 px, occlusion <= 1, truncation <= 0.3):
Pedestrian; Car, Van, Truck, Tram as vehicle; Cyclist. Less visible boxes of those, Person_sitting and
Cyclist (the rider) for pedestrians, Misc for vehicles and DontCare regions are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from perception.core.boxes import match_image
from perception.core.errors import PerceptionError

FORMATS = ("gtsdb", "kitti", "yolo")
IOU_THRESHOLD = 0.5
KITTI_MIN_HEIGHT, KITTI_MAX_OCCLUSION, KITTI_MAX_TRUNCATION = 25.0, 1, 0.3
KITTI_SCORED = {
    "Pedestrian": "pedestrian",
    "Car": "vehicle",
    "Van": "vehicle",
    "Truck": "vehicle",
    "Tram": "vehicle",
    "Cyclist": "cyclist",
}
KITTI_IGNORED = {"Person_sitting": ("pedestrian",), "Cyclist": ("pedestrian",), "Misc": ("vehicle",)}
KITTI_LABELS = ("pedestrian", "vehicle", "cyclist")


@dataclass
class ImageTruth:
    """One image's ground truth: boxes (N, 4) xyxy in pixels with their class keys, and ignored regions with
    the class keys they are ignored for (None: every class)."""

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    classes: list = field(default_factory=list)
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    ignore_classes: list = field(default_factory=list)

    def of(self, key: object) -> tuple[np.ndarray, np.ndarray]:
        """(scored boxes, ignored boxes) for one class key."""
        scored = np.array([c == key for c in self.classes], bool).reshape(-1)
        ignored = np.array([c is None or c == key for c in self.ignore_classes], bool).reshape(-1)
        return self.boxes[scored], self.ignore[ignored]


def _line_error(path: Path, number: int, line: str, expected: str) -> PerceptionError:
    return PerceptionError(f"ground truth {path} line {number}: expected {expected}, got {line.strip()!r}")


def read_gtsdb(path: Path) -> dict[str, ImageTruth]:
    """`NNNNN.ppm;left;top;right;bottom;class_id` per sign, inclusive pixel bounds; by image stem."""
    if not path.is_file():
        raise PerceptionError(f"ground truth not found: {path}")
    truth: dict[str, ImageTruth] = {}
    rows: dict[str, list[tuple[list[float], int]]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(";")
        try:
            left, top, right, bottom, class_id = (int(v) for v in parts[1:6])
        except ValueError:
            raise _line_error(path, number, line, "NAME;left;top;right;bottom;class_id") from None
        if len(parts) != 6:
            raise _line_error(path, number, line, "NAME;left;top;right;bottom;class_id")
        rows.setdefault(Path(parts[0]).stem, []).append(([left, top, right + 1, bottom + 1], class_id))
    for stem, entries in rows.items():
        boxes = np.array([b for b, _ in entries], np.float64)
        truth[stem] = ImageTruth(boxes, [c for _, c in entries])
    return truth


def read_kitti(folder: Path, stems: Iterable[str]) -> dict[str, ImageTruth]:
    """KITTI object labels (`label_2/STEM.txt`: type, truncation, occlusion, alpha, x1 y1 x2 y2, ...)."""
    if not folder.is_dir():
        raise PerceptionError(f"ground truth folder not found: {folder} (KITTI: the label_2 folder)")
    truth = {}
    for stem in stems:
        path = folder / f"{stem}.txt"
        image = ImageTruth()
        boxes, classes, ignore, ignore_classes = [], [], [], []
        for number, line in enumerate(path.read_text().splitlines() if path.is_file() else [], 1):
            f = line.split()
            try:
                kind, truncated, occluded = f[0], float(f[1]), int(float(f[2]))
                box = [float(v) for v in f[4:8]]
            except (IndexError, ValueError):
                raise _line_error(
                    path, number, line, "type truncated occluded alpha x1 y1 x2 y2 ..."
                ) from None
            moderate = (
                box[3] - box[1] >= KITTI_MIN_HEIGHT
                and occluded <= KITTI_MAX_OCCLUSION
                and truncated <= KITTI_MAX_TRUNCATION
            )
            if kind in KITTI_SCORED:
                (boxes if moderate else ignore).append(box)
                (classes if moderate else ignore_classes).append(KITTI_SCORED[kind])
            for label in KITTI_IGNORED.get(kind, ()):
                ignore.append(box)
                ignore_classes.append(label)
            if kind == "DontCare":
                ignore.append(box)
                ignore_classes.append(None)
        image.boxes = np.array(boxes, np.float64).reshape(-1, 4)
        image.classes = classes
        image.ignore = np.array(ignore, np.float64).reshape(-1, 4)
        image.ignore_classes = ignore_classes
        truth[stem] = image
    return truth


def read_yolo(folder: Path, image_sizes: dict[str, tuple[int, int]]) -> dict[str, ImageTruth]:
    """YOLO labels (`STEM.txt`: class cx cy w h, normalised to the image); a missing file: no objects."""
    if not folder.is_dir():
        raise PerceptionError(f"ground truth folder not found: {folder} (YOLO: the labels folder)")
    truth = {}
    for stem, (h, w) in image_sizes.items():
        path = folder / f"{stem}.txt"
        boxes, classes = [], []
        for number, line in enumerate(path.read_text().splitlines() if path.is_file() else [], 1):
            if not line.strip():
                continue
            try:
                class_id, cx, cy, bw, bh = int(line.split()[0]), *(float(v) for v in line.split()[1:5])
            except (IndexError, ValueError):
                raise _line_error(path, number, line, "class cx cy w h") from None
            boxes.append([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
            classes.append(class_id)
        truth[stem] = ImageTruth(np.array(boxes, np.float64).reshape(-1, 4), classes)
    return truth


class GroundTruth:
    """A ground-truth source for a list of images, matched by file stem (GTSDB names `.ppm` images, the
    shared copies are `.jpg`). GTSDB and KITTI are read at once (errors before any model loads); YOLO boxes
    are normalised, so each image's are read with its size."""

    def __init__(self, source: Path, fmt: str, images: Sequence[Path]) -> None:
        if fmt not in FORMATS:
            raise PerceptionError(f"ground-truth format {fmt!r}: expected one of {', '.join(FORMATS)}")
        self.source, self.format = Path(source), fmt
        stems = [p.stem for p in images]
        if fmt == "gtsdb":
            self._truth = read_gtsdb(self.source)
        elif fmt == "kitti":
            self._truth = read_kitti(self.source, stems)
        elif not self.source.is_dir():
            raise PerceptionError(f"ground truth folder not found: {self.source} (YOLO: the labels folder)")

    def image(self, path: Path, image_hw: tuple[int, int]) -> ImageTruth:
        if self.format == "yolo":
            return read_yolo(self.source, {path.stem: image_hw})[path.stem]
        return self._truth.get(path.stem, ImageTruth())


def evaluate(detector, images: Sequence[Path], truth: GroundTruth, labels: Sequence[str]) -> DetectionScores:
    """Run `detector` (a perception.detect.Detector) on every image and collect its scores. Class keys: the
    model's class ids (GTSDB, YOLO), or driving labels (KITTI: only the labels it annotates)."""
    scores = DetectionScores()
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise PerceptionError(f"cannot read image {path}")
        gt = truth.image(path, image.shape[:2])
        det = detector.detect(image)
        if truth.format == "kitti":
            keys = [labels[i] for i in det.label_ids]
            scorable = np.array([k in KITTI_LABELS for k in keys], bool).reshape(-1)
            det, keys = det.subset(scorable), [k for k in keys if k in KITTI_LABELS]
        else:
            keys = det.class_ids.tolist()
            known = len(detector.class_names)
            bad = [c for c in gt.classes if not 0 <= c < known]
            if bad:
                raise PerceptionError(
                    f"ground truth {truth.source}: class {bad[0]} of {path.name} is not a class of the "
                    f"model ({known} classes)"
                )
        scores.add(det.boxes_xyxy, det.scores, keys, gt)
    return scores


def average_precision(scores: np.ndarray, outcomes: np.ndarray, num_gt: int) -> float:
    """All-point AP: the area under the precision envelope (precision made non-increasing in recall)."""
    if num_gt == 0:
        return float("nan")
    kept = outcomes >= 0
    order = np.argsort(-scores[kept], kind="stable")
    hits = outcomes[kept][order] == 1
    if not len(hits):
        return 0.0
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    recall = np.concatenate(([0.0], tp / num_gt))
    precision = np.concatenate(([1.0], tp / (tp + fp)))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * envelope[1:]))


class DetectionScores:
    """Detections and ground truth collected image by image, per class key; scored at the end."""

    def __init__(self, iou_threshold: float = IOU_THRESHOLD) -> None:
        self.iou_threshold = iou_threshold
        self._scores: dict[object, list[np.ndarray]] = {}
        self._outcomes: dict[object, list[np.ndarray]] = {}
        self._gt: dict[object, int] = {}
        self.images = 0

    def add(self, boxes: np.ndarray, scores: np.ndarray, keys: Sequence, truth: ImageTruth) -> None:
        """One image: detection boxes, scores and class keys (same kind as the ground truth's)."""
        self.images += 1
        keys_arr = np.asarray(list(keys), dtype=object)
        for key in set(truth.classes) | set(keys_arr.tolist()):
            mine = keys_arr == key if len(keys_arr) else np.zeros(0, bool)
            gt, ignore = truth.of(key)
            outcome = match_image(boxes[mine], scores[mine], gt, ignore, self.iou_threshold)
            self._scores.setdefault(key, []).append(np.asarray(scores[mine], np.float64))
            self._outcomes.setdefault(key, []).append(outcome)
            self._gt[key] = self._gt.get(key, 0) + len(gt)

    def result(self, conf_threshold: float, names: dict | None = None) -> dict:
        """{precision, recall, ap50, per_class: {name: {...}}, ...}; NaN where undefined (no ground truth,
        no detections) is None, so the result is valid JSON."""
        per_class, aps = {}, []
        total_tp = total_fp = total_gt = 0
        for key in sorted(self._gt, key=lambda k: (str(type(k)), k)):  # ids in order, then names
            scores, outcomes = np.concatenate(self._scores[key]), np.concatenate(self._outcomes[key])
            at = outcomes[scores >= conf_threshold]
            tp, fp, gt = int((at == 1).sum()), int((at == 0).sum()), self._gt[key]
            if not gt and not tp + fp:
                continue  # nothing to score: no ground truth, and only detections below the threshold
            ap = average_precision(scores, outcomes, gt)
            if gt:
                aps.append(ap)
            total_tp, total_fp, total_gt = total_tp + tp, total_fp + fp, total_gt + gt
            name = (names or {}).get(key, str(key))
            per_class[name] = {
                "gt": gt,
                "tp": tp,
                "fp": fp,
                "precision": _ratio(tp, tp + fp),
                "recall": _ratio(tp, gt),
                "ap50": None if np.isnan(ap) else round(ap, 4),
            }
        return {
            "precision": _ratio(total_tp, total_tp + total_fp),
            "recall": _ratio(total_tp, total_gt),
            "ap50": round(float(np.mean(aps)), 4) if aps else None,
            "per_class": per_class,
            "images": self.images,
            "gt": total_gt,
            "tp": total_tp,
            "fp": total_fp,
            "conf_threshold": conf_threshold,
            "iou_threshold": self.iou_threshold,
        }


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None
