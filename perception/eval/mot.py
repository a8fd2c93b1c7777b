"""MOTChallenge sequences: read detections and ground truth, write results, score CLEAR-MOT and ID metrics.

Scoring uses py-motmetrics' accumulator and metric definitions with IoU distances computed here
(motmetrics 1.4's own IoU helper calls `np.asfarray`, which NumPy 2 removed). Where the ground truth has
MOT16/17's class and visibility columns, the MOTChallenge devkit's rules apply: only pedestrians marked
`consider` are scored, and hypotheses matching a distractor (person on vehicle, static person,
distractor, reflection) are neither counted right nor wrong.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.core.types import Detections, Frame
from perception.output.sinks import mot_rows_text
from perception.runtime.processor import build_processor
from perception.sources.files import image_files
from perception.track.tracker import iou_matrix

MOT_PEDESTRIAN = 1
MOT_DISTRACTORS = (2, 7, 8, 12)  # person on vehicle, static person, distractor, reflection
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class SequenceInfo:
    name: str
    fps: float
    length: int
    image_dir: Path
    width: int  # frame size, 0 where seqinfo.ini does not say
    height: int


def read_seqinfo(seq_dir: Path, default_fps: float = 25.0) -> SequenceInfo:
    ini = seq_dir / "seqinfo.ini"
    parser = configparser.ConfigParser()
    if ini.is_file():
        parser.read(ini)
    section = parser["Sequence"] if parser.has_section("Sequence") else {}
    return SequenceInfo(
        name=section.get("name", seq_dir.name),
        fps=float(section.get("frameRate", default_fps)),
        length=int(section.get("seqLength", 0)),
        image_dir=seq_dir / section.get("imDir", "img1"),
        width=int(section.get("imWidth", 0)),
        height=int(section.get("imHeight", 0)),
    )


def _load_rows(path: Path, min_cols: int) -> np.ndarray:
    if not path.is_file():
        raise PerceptionError(f"file not found: {path}")
    try:
        rows = np.loadtxt(path, delimiter=",", ndmin=2)
    except ValueError as exc:
        raise PerceptionError(f"{path}: not a MOTChallenge text file ({exc})") from None
    if rows.size and rows.shape[1] < min_cols:
        raise PerceptionError(f"{path}: expected at least {min_cols} comma-separated columns")
    return rows.reshape(-1, max(rows.shape[1], min_cols)) if rows.size else np.zeros((0, min_cols))


def read_detections(path: Path) -> dict[int, Detections]:
    """det.txt (`frame,-1,x,y,w,h,score,...`) as Detections per frame; all are pedestrians (label 0)."""
    rows = _load_rows(path, 7)
    out: dict[int, Detections] = {}
    frames = rows[:, 0].astype(np.int64)
    for frame in np.unique(frames):
        r = rows[frames == frame]
        boxes = np.concatenate((r[:, 2:4], r[:, 2:4] + r[:, 4:6]), axis=1).astype(np.float32)
        n = len(r)
        out[int(frame)] = Detections(
            boxes, r[:, 6].astype(np.float32), np.zeros(n, np.int32), np.zeros(n, np.int32)
        )
    return out


def write_results(path: Path, rows: np.ndarray) -> None:
    """A MOTChallenge result file (`frame,id,x,y,w,h,score,-1,-1,-1`) from rows (frame, id, x1..y2, score)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(mot_rows_text(rows))


def read_results(path: Path) -> np.ndarray:
    """A result file back as rows (frame, id, x1, y1, x2, y2, score)."""
    rows = _load_rows(path, 7)
    return np.column_stack((rows[:, :4], rows[:, 2:4] + rows[:, 4:6], rows[:, 6]))


def track_sequence(
    detections: dict[int, Detections], frames: np.ndarray, info: SequenceInfo, cfg: Config | None = None
) -> np.ndarray:
    """Run the frame processor (tracking only) over `frames` (a subset simulates dropped frames: timestamps
    stay true) and return result rows (frame, id, x1, y1, x2, y2, score).

    Public detections come without images: each frame is a blank of the sequence's size (no memory: a
    broadcast view), which is all tracking needs."""
    processor = build_processor(cfg, threats=False)
    h, w = (info.height, info.width) if info.width and info.height else (1080, 1920)
    blank = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (h, w, 3))
    empty = Detections.empty()
    out = []
    for frame in frames:
        index = int(frame) - 1
        result = processor.step(Frame(blank, index, 0, index / info.fps), detections.get(int(frame), empty))
        tracks = result.tracks
        if len(tracks):
            out.append(
                np.column_stack((np.full(len(tracks), frame), tracks.ids, tracks.boxes_xyxy, tracks.scores))
            )
    return np.concatenate(out) if out else np.zeros((0, 7))


@dataclass(frozen=True)
class GroundTruth:
    frames: np.ndarray  # (N,) frame numbers
    ids: np.ndarray  # (N,)
    boxes_xyxy: np.ndarray  # (N, 4)
    scored: np.ndarray  # (N,) bool: counts for the metrics
    distractor: np.ndarray  # (N,) bool: a match here removes the hypothesis from scoring
    classes: np.ndarray  # (N,) MOT class, 1 where the file has none
    visibility: np.ndarray  # (N,) 1 where the file has none


def read_ground_truth(path: Path) -> GroundTruth:
    """gt.txt in MOT15 (`frame,id,x,y,w,h,conf,...`) or MOT16/17 (`...,consider,class,visibility`) form."""
    rows = _load_rows(path, 6)
    boxes = np.concatenate((rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]), axis=1)
    n = len(rows)
    has_classes = rows.shape[1] == 9
    if has_classes:
        consider, classes, visibility = rows[:, 6] > 0, rows[:, 7].astype(np.int64), rows[:, 8]
        scored = consider & (classes == MOT_PEDESTRIAN)
        distractor = np.isin(classes, MOT_DISTRACTORS)
    else:  # MOT15: every box is a pedestrian to find
        classes, visibility = np.ones(n, np.int64), np.ones(n)
        scored, distractor = np.ones(n, bool), np.zeros(n, bool)
    return GroundTruth(
        rows[:, 0].astype(np.int64),
        rows[:, 1].astype(np.int64),
        boxes,
        scored,
        distractor,
        classes,
        visibility,
    )


def _import_motmetrics():
    try:
        import motmetrics
    except ImportError:
        raise PerceptionError("scoring needs py-motmetrics: pip install motmetrics") from None
    return motmetrics


def evaluate(gt: GroundTruth, results: np.ndarray, frames: np.ndarray | None = None) -> dict[str, float]:
    """CLEAR-MOT and identity metrics at IoU 0.5 over `frames` (default: every frame of the ground truth).

    results: rows (frame, id, x1, y1, x2, y2[, score]).
    """
    from scipy.optimize import linear_sum_assignment

    mm = _import_motmetrics()
    acc = mm.MOTAccumulator(auto_id=False)
    frames = np.unique(gt.frames) if frames is None else np.asarray(frames)
    res_frames = results[:, 0].astype(np.int64)
    for frame in frames:
        g = np.flatnonzero(gt.frames == frame)
        h = np.flatnonzero(res_frames == frame)
        hyp_boxes = results[h, 2:6]
        # Devkit preprocessing: drop hypotheses that best match a distractor.
        ignorable = g[gt.distractor[g] | gt.scored[g]]
        if len(ignorable) and len(h) and gt.distractor[g].any():
            iou = iou_matrix(gt.boxes_xyxy[ignorable], hyp_boxes)
            rows, cols = linear_sum_assignment(-iou)
            hit = iou[rows, cols] >= IOU_THRESHOLD
            drop = cols[hit & gt.distractor[ignorable[rows]]]
            keep = np.setdiff1d(np.arange(len(h)), drop)
            h, hyp_boxes = h[keep], hyp_boxes[keep]
        g = g[gt.scored[g]]
        iou = iou_matrix(gt.boxes_xyxy[g], hyp_boxes)
        dist = np.where(iou >= IOU_THRESHOLD, 1.0 - iou, np.nan)
        acc.update(gt.ids[g].tolist(), results[h, 1].astype(np.int64).tolist(), dist, frameid=int(frame))
    names = [
        "mota",
        "idf1",
        "motp",
        "num_false_positives",
        "num_misses",
        "num_switches",
        "precision",
        "recall",
        "idp",
        "idr",
        "num_frames",
        "num_objects",
        "mostly_tracked",
        "mostly_lost",
        "num_fragmentations",
    ]
    summary = mm.metrics.create().compute(acc, metrics=names, name="seq")
    out = {name: float(summary[name].iloc[0]) for name in names}
    out["motp"] = (
        1.0 - out["motp"] if not np.isnan(out["motp"]) else out["motp"]
    )  # as overlap, like the devkit
    return {
        "mota": out["mota"],
        "idf1": out["idf1"],
        "motp": out["motp"],
        "fp": int(out["num_false_positives"]),
        "fn": int(out["num_misses"]),
        "id_switches": int(out["num_switches"]),
        "precision": out["precision"],
        "recall": out["recall"],
        "idp": out["idp"],
        "idr": out["idr"],
        "mostly_tracked": int(out["mostly_tracked"]),
        "mostly_lost": int(out["mostly_lost"]),
        "fragmentations": int(out["num_fragmentations"]),
        "frames": int(out["num_frames"]),
        "gt_boxes": int(out["num_objects"]),
    }


def detect_sequence(image_dir: Path, detector, label_id: int) -> dict[int, Detections]:
    """Run a detector over a sequence's images (named by frame number) keeping one driving label."""
    import cv2

    images = image_files(image_dir)
    if not images:
        raise PerceptionError(f"no images in {image_dir}")
    out = {}
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise PerceptionError(f"cannot read image {path}")
        dets = detector.detect(image)
        out[int(path.stem)] = dets.subset(np.flatnonzero(dets.label_ids == label_id))
    return out
