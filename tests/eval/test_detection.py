"""`perception eval-det` and its scoring (perception/eval/detection.py): AP and matching on hand-made cases,
the GTSDB, YOLO and KITTI readers on the shared real data, the command's JSON, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception.core.boxes import match_image
from perception.core.errors import PerceptionError
from perception.eval.detection import (
    GroundTruth,
    ImageTruth,
    average_precision,
    read_gtsdb,
    read_kitti,
)
from tests.conftest import ASSETS, REPO, YOLOX_ONNX

KIND = "integration"

GTSDB = ASSETS / "images" / "gtsdb"
GTSDB_ONNX = ASSETS / "models" / "gtsdb_yolov5n_640.onnx"
KITTI = ASSETS / "kitti"


def eval_det(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", "eval-det", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PERCEPTION_ASSETS": str(ASSETS)},
    )


# ---------------------------------------------------------------- scoring on hand-made cases


@pytest.mark.unit
def test_average_precision_is_the_area_under_the_precision_envelope() -> None:
    assert average_precision(np.array([0.9, 0.8]), np.array([1, 1]), 2) == pytest.approx(1.0)
    # TP, FP, TP for 2 boxes: recall 0.5 at precision 1, recall 1 at precision 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1]), 2) == pytest.approx(0.5 + 1 / 3)
    # FP first: the envelope at recall 0.5 is 1/2 (then 2/3 at recall 1 lifts it): 0.5 * 2/3 + 0.5 * 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7]), np.array([0, 1, 1]), 2) == pytest.approx(2 / 3)
    # a missed box caps recall; ignored detections do not count
    assert average_precision(np.array([0.9, 0.5]), np.array([1, -1]), 2) == pytest.approx(0.5)
    assert average_precision(np.zeros(0), np.zeros(0, np.int8), 3) == 0.0
    assert np.isnan(average_precision(np.array([0.9]), np.array([0]), 0))


@pytest.mark.unit
def test_matching_is_greedy_by_score_one_detection_per_box() -> None:
    gt = np.array([[0, 0, 100, 100], [200, 0, 300, 100]], float)
    ignore = np.array([[500, 0, 600, 100]], float)
    boxes = np.array(
        [
            [5, 5, 105, 105],  # second-best duplicate of box 0: false positive
            [0, 0, 100, 100],  # best: takes box 0
            [210, 0, 310, 100],  # box 1
            [520, 10, 580, 90],  # inside the ignored region: neither
            [800, 0, 900, 100],  # nowhere: false positive
        ],
        float,
    )
    scores = np.array([0.8, 0.9, 0.7, 0.95, 0.6])
    np.testing.assert_array_equal(match_image(boxes, scores, gt, ignore), [0, 1, 1, -1, 0])
    np.testing.assert_array_equal(match_image(boxes[:0], scores[:0], gt, ignore), [])
    np.testing.assert_array_equal(match_image(boxes, scores, gt[:0], ignore[:0]), [0, 0, 0, 0, 0])


# ---------------------------------------------------------------- ground-truth readers


def test_gtsdb_reader_matches_images_by_stem() -> None:
    truth = read_gtsdb(GTSDB / "gt.txt")
    assert len(truth) == len(list(GTSDB.glob("*.jpg")))  # every .ppm line names a shared .jpg by stem
    first = truth["00000"]
    np.testing.assert_array_equal(first.boxes, [[774, 411, 816, 447]])  # inclusive bounds, +1 at the end
    assert first.classes == [11]
    assert sum(len(t.classes) for t in truth.values()) == 59


@pytest.mark.unit
def test_malformed_ground_truth_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "gt.txt"
    bad.write_text("00000.ppm;774;411;815;446;11\n00001.ppm;1;2;three;4;5\n")
    with pytest.raises(PerceptionError, match=r"gt.txt line 2: expected NAME;left;top;right;bottom;class_id"):
        read_gtsdb(bad)
    with pytest.raises(PerceptionError, match="ground truth not found"):
        read_gtsdb(tmp_path / "none.txt")


def test_kitti_reader_scores_moderate_boxes_and_ignores_the_rest() -> None:
    truth = read_kitti(KITTI / "label_2", ["000000", "000001", "000002"])
    assert truth["000000"].classes == ["pedestrian"]
    # 000001: the truck (33 px high) is scored; the car (22 px) is below KITTI's moderate height, the
    # cyclist too occluded: ignored, as are the four DontCare regions
    assert truth["000001"].classes == ["vehicle"]
    scored, ignored = truth["000001"].of("vehicle")
    assert len(scored) == 1 and len(ignored) == 1 + 4
    assert len(truth["000001"].of("cyclist")[1]) == 1 + 4
    assert truth["000002"].classes == ["vehicle"]  # the car; the trailer is Misc: ignored for vehicles


# ---------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def gtsdb_scores() -> dict:
    proc = eval_det(GTSDB, "--gt", GTSDB / "gt.txt", "--format", "gtsdb", "--model", GTSDB_ONNX, "--json")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip().splitlines()) == 1
    return json.loads(proc.stdout)


def test_eval_det_gtsdb_json(gtsdb_scores: dict) -> None:
    result = gtsdb_scores
    assert {"precision", "recall", "ap50", "per_class"} <= set(result)
    assert result["images"] == 40 and result["gt"] == 59
    # Training images of that model (they test function, not accuracy): most signs found, in the right class.
    assert result["recall"] >= 0.8 and result["precision"] >= 0.7 and result["ap50"] >= 0.7
    per_class = result["per_class"]
    assert per_class["keep right"]["gt"] == 5 and per_class["keep right"]["recall"] == 1.0
    # the model names classes 9 and 10 both "no overtaking": reported apart, by id
    assert per_class["no overtaking [10]"]["gt"] == 8 and per_class["no overtaking [9]"]["gt"] == 1
    assert sum(m["gt"] for m in per_class.values()) == 59
    assert result["tp"] == sum(m["tp"] for m in per_class.values())


def test_eval_det_yolo_labels_score_the_same(tmp_path: Path, gtsdb_scores: dict) -> None:
    """The same ground truth written as YOLO labels (normalised centre and size) scores the same."""
    labels = tmp_path / "labels"
    labels.mkdir()
    w, h = 1360, 800
    for stem, image in read_gtsdb(GTSDB / "gt.txt").items():
        lines = [
            f"{c} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}"
            for (x1, y1, x2, y2), c in zip(image.boxes.tolist(), image.classes, strict=True)
        ]
        (labels / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    proc = eval_det(GTSDB, "--gt", labels, "--format", "yolo", "--model", GTSDB_ONNX, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for key in ("precision", "recall", "ap50", "gt", "tp", "fp"):
        assert result[key] == pytest.approx(gtsdb_scores[key], abs=1e-4), key


def test_eval_det_kitti_table(tmp_path: Path) -> None:
    proc = eval_det(KITTI / "image_2", "--gt", KITTI / "label_2", "--format", "kitti", "--model", YOLOX_ONNX)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[2:]}
    assert rows["pedestrian"][1:3] == ["1", "1"] and rows["vehicle"][1] == "2"
    assert "traffic_light" not in rows  # KITTI does not annotate it: not scored
    assert "all" in rows


def test_eval_det_errors_are_one_line(tmp_path: Path) -> None:
    proc = eval_det(GTSDB, "--gt", tmp_path / "gt.txt", "--format", "gtsdb", "--model", GTSDB_ONNX)
    assert (proc.returncode, proc.stderr.strip()) == (
        1,
        f"error: ground truth not found: {tmp_path / 'gt.txt'}",
    )
    foreign = tmp_path / "gt.txt"
    foreign.write_text("00000.ppm;774;411;815;446;57\n")  # class 57: the sign model has 43
    proc = eval_det(GTSDB, "--gt", foreign, "--format", "gtsdb", "--model", GTSDB_ONNX)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: ground truth {foreign}: class 57 of 00000.jpg is not a class of the model (43 classes)"
    )


def test_ground_truth_for_a_list_of_images() -> None:
    truth = GroundTruth(GTSDB / "gt.txt", "gtsdb", sorted(GTSDB.glob("*.jpg")))
    assert truth.image(GTSDB / "00000.jpg", (800, 1360)).classes == [11]
    assert truth.image(GTSDB / "99999.jpg", (800, 1360)).classes == []  # GTSDB lists every sign
    assert isinstance(truth.image(GTSDB / "00015.jpg", (800, 1360)), ImageTruth)
