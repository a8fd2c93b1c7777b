"""Extra detectors (config `extra_detectors`): the entry's shape validated at load with one-line errors
naming the key, the builder on the real GTSDB sign model beside YOLOX-Nano, labels and class names merged
into the run's, and `perception detect` running both."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.core.config import Config, load_config
from perception.core.errors import PerceptionError
from perception.core.types import Detections
from perception.detect import create_detector
from perception.detect.extra import create_extra_detectors, merge_detections, run_class_names
from tests.conftest import ASSETS, YOLOX_ONNX
from tests.helpers import read_events, run_cli

KIND = "integration"

GTSDB_ONNX = ASSETS / "models" / "gtsdb_yolov5n_640.onnx"
SIGN_IMAGE = ASSETS / "images" / "gtsdb" / "00000.jpg"  # a "priority at next intersection" sign, class 11


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "extra.yaml"
    path.write_text(text)
    return path


ENTRY = f"extra_detectors:\n  - model: {GTSDB_ONNX}\n"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        (ENTRY, "extra_detectors[0].classes: Field required"),
        (
            "extra_detectors:\n  - classes: {traffic_sign: ['*']}\n",
            "extra_detectors[0].model: Field required",
        ),
        (
            ENTRY + "    classes: {traffic_sign: ['*']}\n    every_n_frames: 0\n",
            "extra_detectors[0].every_n_frames: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            ENTRY + "    classes: {traffic_sign: ['*']}\n    confidence: 0.3\n",
            "unknown config key: extra_detectors[0].confidence",
        ),
        (
            ENTRY + "    classes: [traffic_sign]\n",
            "extra_detectors[0].classes: Input should be an object",
        ),
        (ENTRY + "    classes: {}\n", "extra_detectors[0].classes: at least one label is needed"),
        (
            ENTRY + "    classes: {a: ['*'], b: ['*']}\n",
            "extra_detectors[0].classes: class '*' is listed under both 'a' and 'b'",
        ),
        (
            ENTRY + "    classes: {traffic_sign: ['*']}\n    input_size: [100, 640]\n",
            "extra_detectors[0].input_size: height and width must be multiples of 32, got [100, 640]",
        ),
        (f"extra_detectors:\n  model: {GTSDB_ONNX}\n", "extra_detectors: Input should be a valid array"),
    ],
)
def test_malformed_entry_is_one_line_naming_the_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = config(tmp_path, yaml_text)
    with pytest.raises(PerceptionError) as info:
        load_config(path)
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith(f"config {path}: {message}"), text


@pytest.mark.unit
def test_malformed_entry_from_the_command_line(tmp_path: Path) -> None:
    path = config(tmp_path, ENTRY + "    classes: {traffic_sign: ['*']}\n    every_n_frame: 2\n")
    proc = run_cli("detect", SIGN_IMAGE, "--model", YOLOX_ONNX, "--config", path)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip() == f"error: config {path}: unknown config key: extra_detectors[0].every_n_frame"
    )


def test_a_class_the_model_lacks_names_the_entry(tmp_path: Path) -> None:
    cfg = load_config(config(tmp_path, ENTRY + "    classes: {traffic_sign: ['stop sign']}\n"))
    main = create_detector(YOLOX_ONNX, cfg)
    with pytest.raises(PerceptionError) as info:
        create_extra_detectors(cfg, main)
    assert str(info.value).startswith(
        "extra_detectors[0].classes.traffic_sign: 'stop sign' is not a class of the model (its classes: "
    )
    missing = load_config(
        config(tmp_path, "extra_detectors:\n  - {model: nowhere.onnx, classes: {s: ['*']}}\n")
    )
    with pytest.raises(PerceptionError, match=r"^extra_detectors\[0\] \(nowhere.onnx\): model not found"):
        create_extra_detectors(missing, main)


@pytest.fixture(scope="module")
def sign_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, object, list]:
    text = (
        f"extra_detectors:\n  - model: {GTSDB_ONNX}\n"
        "    classes: {speed_limit: ['speed limit 50', 'speed limit 70'], traffic_sign: ['*']}\n"
        "    backend: openvino\n    conf_threshold: 0.3\n    every_n_frames: 3\n"
    )
    cfg = load_config(config(tmp_path_factory.mktemp("extra"), text))
    main = create_detector(YOLOX_ONNX, cfg)
    return cfg, main, create_extra_detectors(cfg, main)


def test_builder_maps_labels_and_classes_into_the_run(sign_run: tuple) -> None:
    cfg, main, extras = sign_run
    (extra,) = extras
    assert cfg.labels[-1] == "speed_limit"  # a label the main taxonomy lacks is appended
    assert extra.detector.backend == "openvino" and extra.detector.cfg.conf_threshold == 0.3
    assert extra.detector.layout == "yolov5" and extra.every_n_frames == 3
    assert [extra.due(i) for i in range(7)] == [True, False, False, True, False, False, True]
    np.testing.assert_array_equal(
        extra.label_map, [cfg.labels.index("speed_limit"), cfg.labels.index("traffic_sign")]
    )
    assert extra.class_offset == 80
    names = run_class_names(main, extras)
    assert len(names) == 80 + 43 and names[80 + 2] == "speed limit 50" and names[0] == "person"

    image = cv2.imread(str(SIGN_IMAGE))
    own, signs = main.detect(image), extra.detect(image)
    assert len(signs) >= 1 and np.all(signs.scores > 0.3)
    best = int(np.argmax(signs.scores))
    assert names[signs.class_ids[best]] == "priority at next intersection"
    assert cfg.labels[signs.label_ids[best]] == "traffic_sign"
    merged = merge_detections([own, signs])
    assert len(merged) == len(own) + len(signs) and np.all(np.diff(merged.scores) <= 0)
    assert set(merged.class_ids.tolist()) == set(own.class_ids.tolist()) | set(signs.class_ids.tolist())
    twin = extra.fork()
    np.testing.assert_array_equal(twin.detect(image).boxes_xyxy, signs.boxes_xyxy)


@pytest.mark.unit
def test_merge_of_nothing_and_of_one() -> None:
    one = Detections(
        np.ones((1, 4), np.float32), np.ones(1, np.float32), np.zeros(1, np.int32), np.zeros(1, np.int32)
    )
    assert len(merge_detections([])) == 0
    assert merge_detections([Detections.empty(), one]) is one


def test_detect_command_runs_the_extra_detector(tmp_path: Path) -> None:
    path = config(tmp_path, ENTRY + "    classes: {traffic_sign: ['*']}\n")
    proc = run_cli("detect", SIGN_IMAGE, "--model", YOLOX_ONNX, "--config", path, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "perception: extra_detectors[0] gtsdb_yolov5n_640.onnx: layout yolov5" in proc.stderr
    rows = [line.split(None, 1) for line in proc.stdout.splitlines() if line.startswith(" ")]
    assert any(
        label == "traffic_sign" and rest.startswith("priority at next intersection") for label, rest in rows
    )
    assert any(label == "vehicle" for label, _ in rows)
    drawn = cv2.imread(str(tmp_path / "out" / SIGN_IMAGE.name))
    assert not np.array_equal(drawn[405:450, 770:820], cv2.imread(str(SIGN_IMAGE))[405:450, 770:820])


def test_run_with_a_sign_detector_every_second_frame(tmp_path: Path) -> None:
    """`perception run`, YOLOX-Nano and the GTSDB sign model (every 2nd frame) on a clip of real GTSDB scenes:
    sign tracks carry the sign model's own class names, are reported on every frame (carried between the
    frames the sign model skips) with one ID per scene, and each frame's latency names both detectors."""
    images = sorted((ASSETS / "images" / "gtsdb").glob("*.jpg"))[:3]
    clip = tmp_path / "clip"
    clip.mkdir()
    per_scene = 6
    for k, src in enumerate(images):
        for j in range(per_scene):
            (clip / f"{k * per_scene + j:04d}.jpg").symlink_to(src)
    cfg = config(
        tmp_path,
        f"extra_detectors:\n  - model: {GTSDB_ONNX}\n    classes: {{traffic_sign: ['*']}}\n"
        "    every_n_frames: 2\n",
    )
    out = tmp_path / "out"
    proc = run_cli("run", clip, "--model", YOLOX_ONNX, "--out", out, "--config", cfg, "--fps", "10")
    assert proc.returncode == 0, proc.stderr
    assert "gtsdb_yolov5n_640.onnx" in proc.stderr and "every 2 frames" in proc.stderr
    frames = [e for e in read_events(out / "events.jsonl") if e["type"] == "frame"]
    assert len(frames) == len(images) * per_scene
    gtsdb_names = set(onnx_metadata_names(GTSDB_ONNX))
    for f in frames:
        assert "detect:gtsdb_yolov5n_640" in f["latency_ms"] or f["frame"] % 2
        signs = [t for t in f["tracks"] if t["label"] == "traffic_sign" and t["class"] in gtsdb_names]
        if f["frame"] % per_scene >= 2:  # once confirmed, on every frame, skipped ones included
            assert signs, f["frame"]
    names = {t["class"] for f in frames for t in f["tracks"] if t["label"] == "traffic_sign"}
    assert names & gtsdb_names  # the model's own names ("priority at next intersection", ...)


def onnx_metadata_names(path: Path) -> list[str]:
    from perception.detect.labels import class_names_from
    from perception.detect.runtimes.onnxruntime import onnx_metadata

    return class_names_from(onnx_metadata(path).get("names"), 43)
