"""The accuracy check reduced precision (bf16, fp16, INT8) must pass before it is used: recall on real frames
within one point of the FP32 model's on the same frames.

Frames come from a video (sampled evenly), an image folder, or MOTChallenge sequences. Where the frames
have ground truth (a MOT sequence's gt/gt.txt: pedestrians and cars at visibility >= 0.5, as
benchmarks/detector_accuracy.py scores them), recall is against it, for the FP32 model and the candidate
alike.
Elsewhere the FP32 model's own confident detections are the reference (score >= the tracker's
`new_track_score_threshold`: the objects that start tracks) and recall is the share the candidate still finds
at the pipeline's `conf_threshold`, IoU >= 0.5, per driving label; FP32's recall is 1 by construction.
Scoring is perception.eval.detection's matching (greedy by score, one detection per reference box).
"""

from __future__ import annotations

import configparser
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.core.boxes import match_image
from perception.core.errors import PerceptionError
from perception.core.types import Detections
from perception.sources.files import IMAGE_SUFFIXES

MAX_RECALL_DROP = 0.01  # one point
VIDEO_SPAN = 750  # frames of a video sampled from (30 s at 25 fps)
IOU_THRESHOLD = 0.5
MOT_VISIBILITY = 0.5
MOT_PEDESTRIAN, MOT_CAR = 1, 3
MOT_PERSON_DISTRACTORS = (2, 7, 8, 12)


@dataclass
class Truth:
    """One frame's ground truth per driving label: scored boxes and ignored regions, (N, 4) xyxy."""

    boxes: dict[str, np.ndarray]
    ignore: dict[str, np.ndarray]


@dataclass
class CheckFrame:
    name: str
    image: np.ndarray
    truth: Truth | None = None


def _evenly(count: int, keep: int) -> list[int]:
    if count <= keep:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, keep).round().astype(int).tolist()))


def _mot_truth(image: Path, cache: dict[Path, np.ndarray | None]) -> Truth | None:
    """A MOTChallenge frame's ground truth (SEQ/img1/000001.jpg with SEQ/gt/gt.txt), or None."""
    seq = image.parent.parent
    if seq not in cache:
        gt_file = seq / "gt" / "gt.txt"
        ini = configparser.ConfigParser()
        ok = gt_file.is_file() and (seq / "seqinfo.ini").is_file()
        if ok:
            ini.read(seq / "seqinfo.ini")
            ok = (
                image.parent.name == ini["Sequence"].get("imDir", "img1")
                if ini.has_section("Sequence")
                else False
            )
        cache[seq] = np.loadtxt(gt_file, delimiter=",", ndmin=2) if ok else None
    gt = cache[seq]
    if gt is None or not image.stem.isdigit() or gt.shape[1] < 9:
        return None
    rows = gt[gt[:, 0] == int(image.stem)]
    cls, consider, vis = rows[:, 7], rows[:, 6] > 0, rows[:, 8]
    x, y, w, h = rows[:, 2] - 1, rows[:, 3] - 1, rows[:, 4], rows[:, 5]  # 1-based top-left + size
    boxes = np.c_[x, y, x + w, y + h]
    ped = (cls == MOT_PEDESTRIAN) & consider & (vis >= MOT_VISIBILITY)
    car = (cls == MOT_CAR) & (vis >= MOT_VISIBILITY)
    return Truth(
        {"pedestrian": boxes[ped], "vehicle": boxes[car]},
        {
            "pedestrian": boxes[((cls == MOT_PEDESTRIAN) & ~ped) | np.isin(cls, MOT_PERSON_DISTRACTORS)],
            "vehicle": boxes[(cls == MOT_CAR) & ~car],
        },
    )


def load_frames(source: str | Path, max_frames: int) -> list[CheckFrame]:
    """Up to `max_frames` real frames, spread evenly over a video or an image folder (searched recursively,
    in name order); MOT frames carry their ground truth. An unreadable source is an error."""
    path = Path(source)
    if not path.exists():
        raise PerceptionError(f"frames not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise PerceptionError(f"no images in {path}")
        cache: dict[Path, np.ndarray | None] = {}
        frames = []
        for i in _evenly(len(files), max_frames):
            image = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if image is None:
                raise PerceptionError(f"cannot read image {files[i]}")
            frames.append(CheckFrame(str(files[i].relative_to(path)), image, _mot_truth(files[i], cache)))
        return frames
    cap = cv2.VideoCapture(str(path))
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        if count <= 0:
            raise PerceptionError(f"{path} is neither an image folder nor a readable video")
        # From the first VIDEO_SPAN frames only: reaching far into a long video would decode all of it.
        wanted, frames, index = _evenly(min(count, VIDEO_SPAN), max_frames), [], 0
        for target in wanted:
            while index < target:
                if not cap.grab():
                    return frames
                index += 1
            ok, image = cap.read()
            index += 1
            if not ok:
                break
            frames.append(CheckFrame(f"{path.name}#{target}", image))
    finally:
        cap.release()
    if not frames:
        raise PerceptionError(f"no frame could be read from {path}")
    return frames


@dataclass
class RecallCheck:
    """A candidate's recall against the reference, beside the FP32 model's on the same frames."""

    reference: str  # "ground truth" or "fp32 detections"
    frames: int
    boxes: int  # reference boxes scored
    fp32_recall: float
    recall: float
    max_drop: float = MAX_RECALL_DROP

    @property
    def drop(self) -> float:
        return self.fp32_recall - self.recall

    @property
    def passed(self) -> bool:
        return self.boxes > 0 and self.drop <= self.max_drop + 1e-9

    def describe(self) -> str:
        return (
            f"recall {self.recall:.3f} vs fp32 {self.fp32_recall:.3f} ({-100 * self.drop:+.1f} points) "
            f"against {self.reference}, {self.boxes} boxes on {self.frames} frames"
        )

    def as_dict(self) -> dict:
        return {
            "reference": self.reference,
            "frames": self.frames,
            "boxes": self.boxes,
            "fp32_recall": self.fp32_recall,
            "recall": self.recall,
            "drop": self.drop,
            "passed": self.passed,
        }


def _hits(det: Detections, labels: Sequence[str], truth: Truth, conf: float) -> tuple[int, int]:
    """(matched, scored) reference boxes of one frame."""
    names = np.asarray(labels, dtype=object)[det.label_ids] if len(det.label_ids) else np.zeros(0, object)
    keep = det.scores >= conf
    hits = total = 0
    for label, gt in truth.boxes.items():
        mine = keep & (names == label)
        ignore = truth.ignore.get(label, np.zeros((0, 4)))
        outcome = match_image(det.boxes_xyxy[mine], det.scores[mine], gt, ignore, IOU_THRESHOLD)
        hits += int((outcome == 1).sum())
        total += len(gt)
    return hits, total


def _pseudo_truth(det: Detections, labels: Sequence[str], min_score: float) -> Truth:
    confident = det.scores >= min_score
    names = [labels[i] for i in det.label_ids]
    boxes = {
        label: det.boxes_xyxy[confident & np.array([n == label for n in names], bool).reshape(-1)]
        for label in set(names)
    }
    return Truth(boxes, {})


def check_recall(
    frames: Sequence[CheckFrame],
    fp32: Sequence[Detections],
    candidate: Sequence[Detections],
    labels: Sequence[str],
    conf_threshold: float,
    reference_score: float,
    max_drop: float = MAX_RECALL_DROP,
) -> RecallCheck:
    """The candidate's recall beside FP32's, on the same frames: against ground truth where every frame has
    it, else against FP32's detections scoring at least `reference_score`."""
    with_truth = bool(frames) and all(f.truth is not None for f in frames)
    fp32_hits = hits = total = 0
    for frame, ref_det, det in zip(frames, fp32, candidate, strict=True):
        truth = frame.truth if with_truth else _pseudo_truth(ref_det, labels, reference_score)
        h, n = _hits(det, labels, truth, conf_threshold)
        hits, total = hits + h, total + n
        fp32_hits += _hits(ref_det, labels, truth, conf_threshold)[0]
    reference = "ground truth" if with_truth else f"fp32 detections scoring >= {reference_score:g}"
    return RecallCheck(
        reference,
        len(frames),
        total,
        fp32_hits / total if total else 0.0,
        hits / total if total else 0.0,
        max_drop,
    )
