"""Every output layout a user brings, on the real shared models: YOLOX raw heads, YOLOv5 (a GTSDB sign
detector with its own 43 class names), YOLOv8/YOLO11 and YOLO26's end-to-end head; the layout recognised
from metadata, shape and values and said at load; the taxonomy over a model's own names."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.detect import create_detector
from perception.detect.decode import choose_layout, decode_end2end, yolox_anchors
from perception.detect.labels import COCO_NAMES, Taxonomy
from perception.detect.metadata import ModelMetadata
from perception.track.tracker import iou_matrix
from tests.conftest import ASSETS, YOLOX_ONNX
from tests.helpers import with_detector

KIND = "integration"

MODELS = ASSETS / "models"
YOLO26 = MODELS / "yolo26n_int8.onnx"
YOLO11_IR = MODELS / "yolo11n_int8_openvino_model"
GTSDB_ONNX = MODELS / "gtsdb_yolov5n_640.onnx"
GTSDB = ASSETS / "images" / "gtsdb"
SIGNS = {"traffic_sign": ["*"]}


def gtsdb_truth() -> dict[str, list[tuple[list[int], int]]]:
    truth: dict[str, list] = {}
    for line in (GTSDB / "gt.txt").read_text().splitlines():
        name, *values = line.split(";")
        truth.setdefault(Path(name).stem, []).append(([int(v) for v in values[:4]], int(values[4])))
    return truth


def with_classes(cfg: Config, classes: dict[str, list[str]], **detector: object) -> Config:
    return with_detector(cfg, **detector).model_copy(update={"classes": classes})


# ---------------------------------------------------------------- each layout, real models


def test_yolov5_sign_detector_with_its_own_names(cfg: Config) -> None:
    detector = create_detector(GTSDB_ONNX, with_classes(cfg, SIGNS, backend="onnxruntime"))
    assert detector.layout == "yolov5" and detector.input_hw == (640, 640)
    assert "YOLOv5-style metadata" in detector.layout_reason
    assert len(detector.class_names) == 43 and detector.class_names[2] == "speed limit 50"
    assert "person" not in detector.class_names  # not assumed to be COCO
    assert detector.dropped_classes == [] and detector.labels == ["traffic_sign"]
    truth = gtsdb_truth()
    found = total = 0
    for stem in ("00000", "00045", "00121"):
        det = detector.detect(cv2.imread(str(GTSDB / f"{stem}.jpg")))
        for (left, top, right, bottom), class_id in truth[stem]:
            total += 1
            overlap = iou_matrix(np.array([[left, top, right + 1, bottom + 1]]), det.boxes_xyxy)[0]
            hit = (overlap >= 0.5) & (det.class_ids == class_id)
            found += bool(hit.any())
    assert total >= 3 and found == total  # the right sign, in the right place


def test_yolox_raw_head_is_told_by_its_grid_offsets(cfg: Config) -> None:
    detector = create_detector(YOLOX_ONNX, cfg)
    assert detector.layout == "yolox"
    assert "no metadata" in detector.layout_reason and "grid offsets" in detector.layout_reason


@pytest.mark.parametrize(("model", "backend"), [(YOLO26, "onnxruntime"), (YOLO26, "openvino")])
def test_end_to_end_head(cfg: Config, model: Path, backend: str, highway_frame: np.ndarray) -> None:
    detector = create_detector(model, with_detector(cfg, backend=backend, precision="fp32"))
    assert detector.layout == "end2end" and "end2end is true" in detector.layout_reason
    assert detector.class_names == list(COCO_NAMES)  # from the metadata
    det = detector.detect(highway_frame)
    vehicles = det.label_ids == cfg.labels.index("vehicle")
    assert vehicles.sum() >= 3 and det.scores[vehicles].max() > 0.7
    assert np.all(np.diff(det.scores) <= 0)
    h, w = highway_frame.shape[:2]
    assert np.all(det.boxes_xyxy[:, [0, 2]] <= w) and np.all(det.boxes_xyxy[:, [1, 3]] <= h)
    assert np.all(det.boxes_xyxy[:, 2:] > det.boxes_xyxy[:, :2])


def test_yolo11_ir_layout_and_names_from_metadata_yaml(cfg: Config) -> None:
    detector = create_detector(YOLO11_IR, with_detector(cfg, precision="fp32"))  # auto: OpenVINO
    assert detector.backend == "openvino" and detector.layout == "ultralytics"
    assert "Ultralytics metadata" in detector.layout_reason
    assert detector.class_names == list(COCO_NAMES)


# ---------------------------------------------------------------- YOLOv5 or YOLOX: never silently


def _without_metadata(src: Path, dst: Path, props: dict[str, str] | None = None) -> Path:
    model = onnx.load(str(src))
    del model.metadata_props[:]
    if props:
        onnx.helper.set_model_props(model, props)
    onnx.save(model, str(dst))
    return dst


def test_yolov5_without_metadata_is_told_by_pixel_boxes(tmp_path: Path, cfg: Config) -> None:
    bare = _without_metadata(GTSDB_ONNX, tmp_path / "signs.onnx")
    named = create_detector(GTSDB_ONNX, with_classes(cfg, SIGNS, backend="onnxruntime"))
    detector = create_detector(bare, with_classes(cfg, SIGNS, backend="onnxruntime"))
    assert detector.layout == "yolov5"
    assert "no metadata" in detector.layout_reason and "input pixels" in detector.layout_reason
    assert detector.class_names == [f"class{i}" for i in range(43)]  # no names stored: none invented
    image = cv2.imread(str(GTSDB / "00000.jpg"))
    a, b = named.detect(image), detector.detect(image)
    np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


def test_contradicting_evidence_is_an_error(tmp_path: Path, cfg: Config) -> None:
    # YOLOX's raw head under YOLOv5-style metadata: the metadata says YOLOv5, the values say grid offsets.
    odd = _without_metadata(
        YOLOX_ONNX, tmp_path / "odd.onnx", {"stride": "32", "names": str(list(COCO_NAMES))}
    )
    with pytest.raises(PerceptionError, match=r"cannot tell which.*set detector\.layout") as info:
        create_detector(odd, cfg)
    assert "\n" not in str(info.value)
    forced = create_detector(odd, with_detector(cfg, layout="yolox"))  # the user's word settles it
    assert forced.layout == "yolox" and forced.layout_reason == "set by detector.layout"


def _raw(rows: int, cols: int, xy_scale: float) -> np.ndarray:
    raw = np.zeros((1, rows, cols), np.float32)
    raw[0, :, :2] = np.linspace(0, xy_scale, rows)[:, None]
    return raw


@pytest.mark.unit
def test_layout_rules_on_output_arrays() -> None:
    none = ModelMetadata.parse({})
    hw = (640, 640)
    grid = yolox_anchors(hw)
    assert grid == 8400
    assert choose_layout(np.zeros((1, 84, 8400)), hw, none)[0] == "ultralytics"
    assert choose_layout(np.zeros((1, 300, 6)), hw, none)[0] == "end2end"  # 300 is no anchor count
    assert choose_layout(_raw(3 * grid, 85, 630.0), hw, none)[0] == "yolov5"
    assert choose_layout(_raw(grid, 85, 3.0), hw, none)[0] == "yolox"
    assert choose_layout(_raw(grid, 6, 3.0), hw, none)[0] == "yolox"  # one class: 6 columns, a real grid
    end2end = ModelMetadata.parse({"end2end": "True", "author": "Ultralytics"})
    assert choose_layout(np.zeros((1, 300, 6)), hw, end2end) == (
        "end2end",
        end2end.describe() + ": end2end is true",
    )
    assert choose_layout(np.zeros((1, 84, 8400)), hw, none, recorded="end2end")[0] == "end2end"
    with pytest.raises(PerceptionError, match="cannot tell which"):
        choose_layout(_raw(grid, 85, 200.0), hw, none)  # neither pixels across the input nor grid offsets
    with pytest.raises(PerceptionError, match="task 'segment'"):
        choose_layout(np.zeros((1, 116, 8400)), hw, ModelMetadata.parse({"task": "segment"}))
    with pytest.raises(PerceptionError, match="too few columns"):
        choose_layout(np.zeros((1, 300, 5)), hw, none)


@pytest.mark.unit
def test_end_to_end_class_ids_beyond_the_names_are_dropped() -> None:
    raw = np.array([[0, 0, 10, 10, 0.9, 2], [0, 0, 10, 10, 0.8, 80], [0, 0, 5, 5, 0.1, 1]], np.float32)
    boxes, scores, class_ids = decode_end2end(raw, 0.15, 80)
    np.testing.assert_array_equal(class_ids, [2])
    np.testing.assert_allclose(scores, [0.9])


@pytest.mark.unit
def test_metadata_values_as_onnx_stores_them() -> None:
    meta = ModelMetadata.parse(
        {"author": "Ultralytics", "stride": "32", "imgsz": "[640, 640]", "end2end": "True", "task": "detect"}
    )
    assert (meta.producer, meta.stride, meta.imgsz, meta.end2end, meta.task) == (
        "ultralytics",
        32,
        (640, 640),
        True,
        "detect",
    )
    assert ModelMetadata.parse({"stride": "32", "names": "{0: 'stop'}"}).producer == "yolov5"
    assert ModelMetadata.parse({"names": "{0: 'stop'}"}).producer == ""


# ---------------------------------------------------------------- taxonomy over the model's own names


@pytest.mark.unit
def test_taxonomy_star_takes_every_class_no_other_label_names() -> None:
    names = ["speed limit 30", "speed limit 50", "no overtaking", "no overtaking", "stop"]
    tax = Taxonomy({"speed_limit": ["speed limit 30", "speed limit 50"], "traffic_sign": ["*"]}, names)
    np.testing.assert_array_equal(tax.lut, [0, 0, 1, 1, 1])
    assert tax.dropped == []
    # a name the export repeats maps every class that carries it
    tax = Taxonomy({"overtaking": ["no overtaking"]}, names)
    np.testing.assert_array_equal(tax.lut, [-1, -1, 0, 0, -1])
    assert tax.dropped == ["speed limit 30", "speed limit 50", "stop"]


def test_default_taxonomy_on_a_sign_model_names_the_problem(cfg: Config) -> None:
    with pytest.raises(PerceptionError) as info:
        create_detector(GTSDB_ONNX, with_detector(cfg, backend="onnxruntime"))
    message = str(info.value)
    assert message.startswith("config classes.pedestrian: 'person' is not a class of the model")
    assert "speed limit 20" in message and "... (43 classes)" in message


def test_dropped_classes_are_listed_once(cfg: Config) -> None:
    detector = create_detector(YOLO26, with_detector(cfg, backend="onnxruntime"))
    kept = {name for names in cfg.classes.values() for name in names}
    assert set(detector.dropped_classes) == set(COCO_NAMES) - kept
    assert "toothbrush" in detector.dropped_classes and "person" not in detector.dropped_classes
