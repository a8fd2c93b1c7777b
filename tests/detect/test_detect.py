"""Detection stage on real models and real images: YOLOX-Nano ONNX, real Ultralytics-layout ONNX graphs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.detect import create_detector
from perception.detect.decode import nms_by_label
from perception.detect.labels import COCO_NAMES
from perception.detect.preprocess import INPUT_FORMATS, Letterbox
from perception.track.tracker import iou_matrix as track_iou
from tests.conftest import MOT17_13, STILLS, YOLOX_ONNX
from tests.helpers import constant_output_model, ultra_output, with_detector

KIND = "unit"


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU: the tracker's own (checked value by value in test_track)."""
    return track_iou(np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4))


@pytest.fixture(scope="module")
def yolox(cfg: Config):
    return create_detector(YOLOX_ONNX, cfg)


# ---------------------------------------------------------------- YOLOX-Nano on real images


@pytest.mark.integration
def test_yolox_finds_vehicles_on_highway_frame(yolox, cfg: Config, highway_frame: np.ndarray) -> None:
    assert yolox.layout == "yolox"
    assert yolox.input_hw == tuple(cfg.detector.input_size)
    assert yolox.class_names == list(COCO_NAMES)

    det = yolox.detect(highway_frame)
    h, w = highway_frame.shape[:2]
    assert len(det) >= 4
    assert det.boxes_xyxy.shape == (len(det), 4)
    assert det.boxes_xyxy.dtype == np.float32 and det.scores.dtype == np.float32
    assert det.class_ids.dtype == np.int32 and det.label_ids.dtype == np.int32

    labels = [cfg.labels[i] for i in det.label_ids]
    assert labels.count("vehicle") >= 4
    assert {yolox.class_names[c] for c in det.class_ids} <= {"car", "bus", "truck", "train"}

    boxes = det.boxes_xyxy
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
    assert np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert np.all(det.scores > cfg.detector.conf_threshold) and np.all(det.scores <= 1.0)
    assert np.all(np.diff(det.scores) <= 0), "detections are not sorted best first"
    # The cars are on the road, in the lower half of this frame, and the best one is confident.
    assert det.scores[0] > 0.8
    centres_y = (boxes[:, 1] + boxes[:, 3]) / 2
    assert np.all(centres_y > h * 0.45)


@pytest.mark.integration
def test_yolox_detection_is_deterministic_across_frame_sizes(yolox, highway_frame: np.ndarray) -> None:
    """The letterbox buffers are reused; switching frame size and back must give the same result."""
    first = yolox.detect(highway_frame)
    yolox.detect(cv2.imread(str(STILLS / "test1.jpg")))  # 1280x720 refits the letterbox
    again = yolox.detect(highway_frame)
    np.testing.assert_array_equal(first.boxes_xyxy, again.boxes_xyxy)
    np.testing.assert_array_equal(first.scores, again.scores)


@pytest.mark.integration
@pytest.mark.parametrize("name", ["highway", "test4.jpg", "test5.jpg"])
def test_boxes_map_back_through_padding(yolox, highway_frame: np.ndarray, name: str) -> None:
    image = highway_frame if name == "highway" else cv2.imread(str(STILLS / name))
    base = yolox.detect(image)
    confident = base.boxes_xyxy[base.scores > 0.8]
    assert len(confident) >= 1

    padded = cv2.copyMakeBorder(image, 100, 0, 100, 0, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    shifted = yolox.detect(padded)
    back = shifted.boxes_xyxy - np.array([100, 100, 100, 100], np.float32)
    best = iou_matrix(confident, back).max(1)
    assert np.all(best > 0.9), best


@pytest.mark.integration
@pytest.mark.parametrize("name", ["highway", "test1.jpg"])
def test_boxes_map_back_through_scaling(yolox, highway_frame: np.ndarray, name: str) -> None:
    image = highway_frame if name == "highway" else cv2.imread(str(STILLS / name))
    base = yolox.detect(image)
    big = yolox.detect(cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR))
    h, w = image.shape[:2]
    assert np.all(big.boxes_xyxy[:, 2] <= 2 * w) and np.all(big.boxes_xyxy[:, 3] <= 2 * h)
    confident = base.boxes_xyxy[base.scores > 0.6]
    assert len(confident) >= 2
    best = iou_matrix(confident, big.boxes_xyxy / 2).max(1)
    assert np.all(best > 0.95), best


@pytest.mark.integration
@pytest.mark.parametrize("input_size", [(384, 640), (416, 416), (640, 640)])
def test_rectangular_and_square_input_sizes(
    yolox, cfg: Config, highway_frame: np.ndarray, input_size: tuple[int, int]
) -> None:
    detector = create_detector(YOLOX_ONNX, with_detector(cfg, input_size=input_size))
    assert detector.input_hw == input_size
    assert detector.layout == "yolox"
    det = detector.detect(highway_frame)

    reference = yolox.detect(highway_frame)
    big = reference.boxes_xyxy[reference.scores > 0.6]
    assert len(big) == 2  # the car at the left edge and the one beside it
    overlap = iou_matrix(big, det.boxes_xyxy)
    assert np.all(overlap.max(1) > 0.85), overlap
    matched = overlap.argmax(1)
    assert all(cfg.labels[det.label_ids[i]] == "vehicle" for i in matched)
    assert np.all(det.scores[matched] > 0.6)


@pytest.mark.integration
def test_mot17_13_recall_of_large_objects(yolox, cfg: Config) -> None:
    image = cv2.imread(str(sorted((MOT17_13 / "img1").glob("*.jpg"))[0]))
    assert image.shape == (1080, 1920, 3)
    gt = np.loadtxt(MOT17_13 / "gt" / "gt.txt", delimiter=",", ndmin=2)
    rows = gt[(gt[:, 0] == 1) & np.isin(gt[:, 7], (1, 3)) & (gt[:, 8] > 0.3) & (gt[:, 5] > 100)]
    assert len(rows) >= 4
    # MOT boxes are 1-based top-left + size.
    gt_boxes = np.c_[rows[:, 2] - 1, rows[:, 3] - 1, rows[:, 2] - 1 + rows[:, 4], rows[:, 3] - 1 + rows[:, 5]]
    gt_labels = np.where(rows[:, 7] == 1, cfg.labels.index("pedestrian"), cfg.labels.index("vehicle"))

    det = yolox.detect(image)
    assert len(det) > 0
    overlap = iou_matrix(gt_boxes, det.boxes_xyxy)
    same_label = gt_labels[:, None] == det.label_ids[None, :]
    recalled = int(np.sum((overlap * same_label).max(1) >= 0.5))
    assert recalled >= (len(rows) + 1) // 2, f"recalled {recalled} of {len(rows)} large gt boxes"


# ---------------------------------------------------------------- taxonomy


@pytest.mark.integration
def test_taxonomy_drops_classes_outside_config(cfg: Config) -> None:
    cars_only = cfg.model_copy(update={"classes": {"vehicle": ["car"]}})
    detector = create_detector(YOLOX_ONNX, cars_only)
    image = cv2.imread(str(sorted((MOT17_13 / "img1").glob("*.jpg"))[0]))
    det = detector.detect(image)
    assert len(det) >= 1
    assert np.all(det.label_ids == 0)
    assert {detector.class_names[c] for c in det.class_ids} == {"car"}
    # The full taxonomy sees the people of that street too, and the same cars.
    full = create_detector(YOLOX_ONNX, cfg).detect(image)
    assert np.sum(full.label_ids == cfg.labels.index("pedestrian")) >= 5
    full_cars = full.boxes_xyxy[full.class_ids == COCO_NAMES.index("car")]
    assert len(full_cars) == len(det)
    assert np.all(iou_matrix(det.boxes_xyxy, full_cars).max(1) > 0.99)


@pytest.mark.integration
def test_taxonomy_unknown_class_name_is_refused(cfg: Config) -> None:
    bad = cfg.model_copy(update={"classes": {"vehicle": ["car", "hovercraft"]}})
    with pytest.raises(PerceptionError, match="hovercraft"):
        create_detector(YOLOX_ONNX, bad)


# ---------------------------------------------------------------- Ultralytics layout, real ONNX graphs


PERSON, CAR, BUS, TRUCK, TIE = (COCO_NAMES.index(n) for n in ("person", "car", "bus", "truck", "tie"))


@pytest.fixture(scope="module")
def ultra_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    entries = [
        (200.0, 300.0, 50.0, 120.0, PERSON, 0.75),  # person
        (400.0, 320.0, 160.0, 80.0, CAR, 0.85),  # car
        (405.0, 322.0, 160.0, 80.0, CAR, 0.60),  # duplicate car: NMS removes it
        (402.0, 318.0, 150.0, 84.0, TRUCK, 0.55),  # truck on the same vehicle: same label, NMS removes it
        (500.0, 400.0, 100.0, 100.0, BUS, 0.20),  # below conf_threshold 0.3 (ultra_cfg)
        (100.0, 400.0, 40.0, 40.0, TIE, 0.95),  # confident, but 'tie' is in no label of the taxonomy
        (600.0, 150.0, 40.0, 40.0, PERSON, 0.40),  # reaches into the top padding: clipped to the frame
    ]
    path = tmp_path_factory.mktemp("ultra") / "yolo_constant.onnx"
    return constant_output_model(path, ultra_output(entries))


@pytest.fixture
def ultra_cfg(cfg: Config) -> Config:
    """The default config's taxonomy with the thresholds the constant model was written for."""
    return with_detector(cfg, layout="auto", conf_threshold=0.3, nms_iou_threshold=0.5, max_detections=300)


def test_ultralytics_layout_decodes_and_maps_back(ultra_model: Path, ultra_cfg: Config) -> None:
    cfg = ultra_cfg
    detector = create_detector(ultra_model, cfg)
    assert detector.layout == "ultralytics"
    assert detector.input_hw == (640, 640)  # fixed-size model wins over cfg input_size
    assert detector.class_names == list(COCO_NAMES)

    frame = np.full((720, 1280, 3), 60, np.uint8)
    det = detector.detect(frame)

    # 1280x720 into 640x640: ratio = min(640/720, 640/1280) = 0.5, resized 640x360,
    # centre padding: pad_y = (640 - 360) // 2 = 140, pad_x = 0.  frame = (input - pad) / 0.5
    # car    cx,cy,w,h 400,320,160,80 -> input 320,280,480,360 -> frame 640,280,960,440
    # person 200,300,50,120           -> input 175,240,225,360 -> frame 350,200,450,440
    # person 600,150,40,40            -> input 580,130,620,170 -> frame 1160,-20,1240,60 -> clipped y 0
    expected_boxes = np.array(
        [[640, 280, 960, 440], [350, 200, 450, 440], [1160, 0, 1240, 60]],
        np.float32,
    )
    np.testing.assert_allclose(det.boxes_xyxy, expected_boxes, atol=1e-3)
    np.testing.assert_allclose(det.scores, [0.85, 0.75, 0.40], atol=1e-6)
    np.testing.assert_array_equal(det.class_ids, [CAR, PERSON, PERSON])
    labels = cfg.labels
    np.testing.assert_array_equal(
        det.label_ids, [labels.index("vehicle"), labels.index("pedestrian"), labels.index("pedestrian")]
    )


def test_ultralytics_layout_square_and_tall_frames(ultra_model: Path, ultra_cfg: Config) -> None:
    detector = create_detector(ultra_model, ultra_cfg)
    # A square 640x640 frame: ratio 1, no padding, boxes are the input pixels themselves.
    det = detector.detect(np.zeros((640, 640, 3), np.uint8))
    np.testing.assert_allclose(det.boxes_xyxy[:2], [[320, 280, 480, 360], [175, 240, 225, 360]], atol=1e-3)
    # A tall 1280x800 (h x w) frame: ratio = min(640/1280, 640/800) = 0.5, resized 400 wide,
    # pad_x = (640 - 400) // 2 = 120, pad_y = 0; car input 320,280,480,360 -> frame 400,560,720,720.
    det = detector.detect(np.zeros((1280, 800, 3), np.uint8))
    np.testing.assert_allclose(det.boxes_xyxy[0], [400, 560, 720, 720], atol=1e-3)
    # person input 175,240,225,360 -> frame 110,480,210,720
    np.testing.assert_allclose(det.boxes_xyxy[1], [110, 480, 210, 720], atol=1e-3)
    # The third box lies wholly in the horizontal padding here: empty once clipped, so it is dropped.
    assert len(det) == 2
    assert np.all(det.boxes_xyxy[:, [0, 2]] <= 800) and np.all(det.boxes_xyxy[:, [1, 3]] <= 1280)


def test_ultralytics_class_names_come_from_metadata(tmp_path: Path, cfg: Config) -> None:
    names = list(COCO_NAMES)
    names[79] = "scooter"  # a renamed class proves the names are read, not assumed to be COCO
    raw = ultra_output([(320.0, 320.0, 64.0, 64.0, 79, 0.9)])
    path = constant_output_model(tmp_path / "named.onnx", raw, names=str(dict(enumerate(names))))
    scooters = cfg.model_copy(update={"classes": {"vehicle": ["car"], "micromobility": ["scooter"]}})
    detector = create_detector(path, scooters)
    assert detector.class_names == names
    det = detector.detect(np.zeros((640, 640, 3), np.uint8))
    np.testing.assert_array_equal(det.class_ids, [79])
    np.testing.assert_array_equal(det.label_ids, [1])
    np.testing.assert_allclose(det.boxes_xyxy, [[288, 288, 352, 352]], atol=1e-3)


def test_ultralytics_without_metadata_falls_back_to_coco(tmp_path: Path, cfg: Config) -> None:
    raw = ultra_output([(320.0, 320.0, 64.0, 64.0, CAR, 0.9)])
    detector = create_detector(constant_output_model(tmp_path / "plain.onnx", raw, names=None), cfg)
    assert detector.layout == "ultralytics"
    assert detector.class_names == list(COCO_NAMES)


# ---------------------------------------------------------------- bad models


def test_output_with_too_few_columns_is_refused(tmp_path: Path, cfg: Config) -> None:
    path = constant_output_model(tmp_path / "odd.onnx", np.zeros((1, 7, 3), np.float32), names=None)
    with pytest.raises(PerceptionError, match=r"unsupported model output shape \[1, 7, 3\]"):
        create_detector(path, cfg)


def test_two_dimensional_output_is_refused(tmp_path: Path, cfg: Config) -> None:
    path = constant_output_model(tmp_path / "flat.onnx", np.zeros((84, 8400), np.float32), names=None)
    with pytest.raises(PerceptionError, match=r"\[84, 8400\].*expected 3 dimensions"):
        create_detector(path, cfg)


def test_forced_yolox_layout_on_ultralytics_output_is_refused(ultra_model: Path, ultra_cfg: Config) -> None:
    with pytest.raises(PerceptionError, match=r"not a YOLOX raw head.*expected N x 8400 x"):
        create_detector(ultra_model, with_detector(ultra_cfg, layout="yolox"))


def test_non_onnx_file_is_refused(tmp_path: Path, cfg: Config) -> None:
    path = tmp_path / "x.onnx"
    path.write_text("this is not a model\n")
    with pytest.raises(PerceptionError, match="cannot load model") as info:
        create_detector(path, cfg)
    assert str(path) in str(info.value)


def test_missing_model_is_refused(tmp_path: Path, cfg: Config) -> None:
    with pytest.raises(PerceptionError, match="model not found"):
        create_detector(tmp_path / "nowhere.onnx", cfg)


# ---------------------------------------------------------------- NMS


def test_nms_keeps_overlapping_boxes_of_different_labels() -> None:
    boxes = np.array([[0, 0, 100, 100], [10, 10, 110, 110]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    keep = nms_by_label(boxes, scores, np.array([0, 1], np.int32), 0.5, 300)
    np.testing.assert_array_equal(keep, [0, 1])


def test_nms_removes_lower_score_of_same_label() -> None:
    # IoU of the first two = 8100 / 11900 = 0.68 > 0.5; the third one is far away.
    boxes = np.array([[10, 10, 110, 110], [0, 0, 100, 100], [300, 300, 400, 400]], np.float32)
    scores = np.array([0.7, 0.9, 0.8], np.float32)
    keep = nms_by_label(boxes, scores, np.array([2, 2, 2], np.int32), 0.5, 300)
    np.testing.assert_array_equal(keep, [1, 2])
    # below the IoU threshold both survive
    keep = nms_by_label(boxes, scores, np.array([2, 2, 2], np.int32), 0.7, 300)
    np.testing.assert_array_equal(keep, [1, 2, 0])


def test_nms_caps_at_max_detections() -> None:
    boxes = np.array([[i * 50, 0, i * 50 + 40, 40] for i in range(6)], np.float32)
    scores = np.array([0.4, 0.9, 0.5, 0.8, 0.6, 0.7], np.float32)
    keep = nms_by_label(boxes, scores, np.zeros(6, np.int32), 0.5, 3)
    np.testing.assert_array_equal(keep, [1, 3, 5])
    assert len(nms_by_label(boxes[:0], scores[:0], np.zeros(0, np.int32), 0.5, 3)) == 0


# ---------------------------------------------------------------- letterbox


@pytest.fixture(scope="module")
def frame_540() -> np.ndarray:
    image = cv2.imread(str(STILLS / "solidWhiteRight.jpg"))
    assert image.shape == (540, 960, 3)
    return image


@pytest.mark.integration
def test_letterbox_yolox_pads_bottom_right_bgr(frame_540: np.ndarray) -> None:
    lb = Letterbox((384, 640), INPUT_FORMATS["yolox"])
    tensor = lb(frame_540)
    assert tensor.shape == (1, 3, 384, 640) and tensor.dtype == np.float32
    assert lb.ratio == pytest.approx(640 / 960)
    assert lb.offset_xy == (0, 0)
    # 540 * 2/3 = 360 rows of image, 24 rows of padding at the bottom
    assert np.all(tensor[0, :, 360:, :] == 114)
    expected = cv2.resize(frame_540, (640, 360), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(tensor[0, :, :360, :], expected.transpose(2, 0, 1).astype(np.float32))
    # frame pixels back: input (64, 30, 640, 360) -> frame (96, 45, 960, 540)
    back = lb.to_frame(np.array([[64, 30, 640, 360]], np.float32))
    np.testing.assert_allclose(back, [[96, 45, 960, 540]], atol=1e-3)


@pytest.mark.integration
@pytest.mark.parametrize("layout", ["yolox", "ultralytics"])
def test_letterbox_reused_across_frame_sizes_equals_a_fresh_one(frame_540: np.ndarray, layout: str) -> None:
    """Only the rows the image covers are converted per frame; after frames of other shapes (a portrait one
    pads columns, a KITTI one leaves more padding rows) every tensor equals a fresh letterbox's."""
    kitti = cv2.imread(str(STILLS.parent.parent / "kitti" / "image_2" / "000000.png"))
    shapes = [
        frame_540,
        np.ascontiguousarray(frame_540.transpose(1, 0, 2)),
        kitti,
        255 - frame_540,
        frame_540,
    ]
    reused = Letterbox((640, 640), INPUT_FORMATS[layout])
    for image in shapes:
        fresh = Letterbox((640, 640), INPUT_FORMATS[layout])(image)
        np.testing.assert_array_equal(reused(image), fresh)


@pytest.mark.integration
def test_letterbox_ultralytics_pads_centred_rgb_unit(frame_540: np.ndarray) -> None:
    lb = Letterbox((384, 640), INPUT_FORMATS["ultralytics"])
    tensor = lb(frame_540)
    assert lb.offset_xy == (0, 12)  # (384 - 360) // 2
    np.testing.assert_allclose(tensor[0, :, :12, :], 114 / 255, atol=1e-6)
    np.testing.assert_allclose(tensor[0, :, 372:, :], 114 / 255, atol=1e-6)
    rgb = cv2.resize(frame_540, (640, 360), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    np.testing.assert_allclose(
        tensor[0, :, 12:372, :], rgb.transpose(2, 0, 1).astype(np.float32) / 255, atol=1e-6
    )
    # a second, different frame of the same size overwrites the image area and leaves the padding
    inverted = 255 - frame_540
    tensor = lb(inverted)
    np.testing.assert_allclose(tensor[0, :, :12, :], 114 / 255, atol=1e-6)
    rgb = cv2.resize(inverted, (640, 360), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    np.testing.assert_allclose(
        tensor[0, :, 12:372, :], rgb.transpose(2, 0, 1).astype(np.float32) / 255, atol=1e-6
    )
    back = lb.to_frame(np.array([[64, 42, 640, 372]], np.float32))
    np.testing.assert_allclose(back, [[96, 45, 960, 540]], atol=1e-3)


@pytest.mark.integration
def test_a_batch_of_frames_of_several_sizes_detects_as_each_alone(yolox, highway_frame: np.ndarray) -> None:
    """Frames of several streams in one inference (YOLOX's batch axis): each frame letterboxed into its own
    row with its own mapping back, so every result equals that frame's own detect()."""
    frames = [highway_frame, cv2.resize(highway_frame, (640, 360)), highway_frame[:, ::-1].copy()]
    assert yolox.max_batch >= len(frames)
    batched = yolox.detect_batch(frames)
    for frame, got in zip(frames, batched, strict=True):
        want = yolox.detect(frame)
        assert len(want) > 0 and len(got) == len(want)
        np.testing.assert_allclose(got.boxes_xyxy, want.boxes_xyxy, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
        np.testing.assert_array_equal(got.label_ids, want.label_ids)
