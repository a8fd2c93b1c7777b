"""Detector backends on the real shared models and real frames: ONNX Runtime, OpenVINO and Ultralytics give
the same boxes; backend choice, OpenVINO settings, Ultralytics offline behaviour and export, `perception
detect`. (TensorRT, which needs an NVIDIA GPU, is in tensorrt/test_tensorrt.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.core.config import Config, load_config
from perception.core.errors import PerceptionError
from perception.detect import create_detector, resolve_backend
from perception.detect.labels import COCO_NAMES
from perception.detect.tensorrt.gpu import tensorrt_available
from perception.track.tracker import iou_matrix
from tests.conftest import ASSETS, HIGHWAY_CLIP, MOT17_13, REPO, STILLS, YOLOX_ONNX
from tests.helpers import assert_parity, constant_output_model, ultra_output, with_detector

KIND = "integration"

YOLOV8_IR = ASSETS / "models" / "yolov8n_int8_openvino_model"
KITTI_IMAGES = ASSETS / "kitti" / "image_2"

ON_GPU = tensorrt_available()


def _clip_frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


@pytest.fixture(scope="module")
def real_frames() -> dict[str, np.ndarray]:
    """Dashcam frames of two sizes, a 1080p street with many pedestrians and cars, a wide KITTI frame."""
    frames = {f"highway#{i}": _clip_frame(i) for i in (0, 100, 200)}
    for name in ("test1.jpg", "solidWhiteRight.jpg"):
        frames[name] = cv2.imread(str(STILLS / name))
    frames["MOT17-13#1"] = cv2.imread(str(MOT17_13 / "img1" / "000001.jpg"))
    frames["kitti/000001"] = cv2.imread(str(KITTI_IMAGES / "000001.png"))
    assert all(f is not None for f in frames.values())
    return frames


def with_backend(cfg: Config, backend: str, **update: object) -> Config:
    return with_detector(cfg, backend=backend, **update)


# ---------------------------------------------------------------- parity on real frames


@pytest.mark.parametrize("input_size", [(448, 800), (384, 640)])
def test_onnxruntime_and_openvino_agree_on_yolox(
    cfg: Config, real_frames: dict[str, np.ndarray], input_size: tuple[int, int]
) -> None:
    # Both in fp32: OpenVINO's own default is bf16 on CPUs that have it (AVX512-BF16, AMX), which moves
    # boxes by more than the parity tolerance; this compares the runtimes, not the precisions.
    ort = create_detector(YOLOX_ONNX, with_backend(cfg, "onnxruntime", input_size=input_size))
    ov = create_detector(YOLOX_ONNX, with_backend(cfg, "openvino", input_size=input_size, precision="fp32"))
    assert (ort.backend, ov.backend) == ("onnxruntime", "openvino")
    assert ov.input_hw == ort.input_hw == input_size and ov.layout == ort.layout == "yolox"
    assert ov.class_names == ort.class_names == list(COCO_NAMES)
    matched = 0
    for name, image in real_frames.items():
        a, b = ort.detect(image), ov.detect(image)
        assert len(a) > 0, name
        matched += assert_parity(a, b, cfg.detector.conf_threshold)
    assert matched >= 60  # not a vacuous comparison: cars, trucks and many pedestrians


def test_openvino_and_ultralytics_agree_on_yolov8n_int8(
    cfg: Config, real_frames: dict[str, np.ndarray]
) -> None:
    # Ultralytics compiles the IR with OpenVINO's default precision (bf16 on CPUs that have it); ours is
    # left at `auto`, the same default, so both run the same arithmetic on any CPU.
    ov = create_detector(YOLOV8_IR, with_backend(cfg, "openvino", precision="auto"))
    ultra = create_detector(YOLOV8_IR, with_backend(cfg, "ultralytics"))
    assert (ov.backend, ultra.backend) == ("openvino", "ultralytics")
    assert ov.input_hw == ultra.input_hw == (640, 640)  # the IR's fixed size wins over config input_size
    assert ov.layout == ultra.layout == "ultralytics"
    assert ov.class_names == ultra.class_names == list(COCO_NAMES)  # from metadata.yaml
    matched = 0
    for name, image in real_frames.items():
        a, b = ov.detect(image), ultra.detect(image)
        assert len(a) > 0, name
        for det in (a, b):
            assert det.boxes_xyxy.dtype == np.float32 and det.scores.dtype == np.float32
            assert det.class_ids.dtype == np.int32 and det.label_ids.dtype == np.int32
            assert np.all(np.diff(det.scores) <= 0)
        matched += assert_parity(a, b, cfg.detector.conf_threshold)
    assert matched >= 40


def test_yolov8n_int8_finds_the_highway_cars(cfg: Config, highway_frame: np.ndarray) -> None:
    det = create_detector(YOLOV8_IR, cfg).detect(highway_frame)  # auto: OpenVINO for an IR folder
    vehicles = det.label_ids == cfg.labels.index("vehicle")
    assert vehicles.sum() >= 3 and det.scores[vehicles].max() > 0.8
    h, w = highway_frame.shape[:2]
    assert np.all(det.boxes_xyxy >= 0) and np.all(det.boxes_xyxy[:, [0, 2]] <= w)
    assert np.all(det.boxes_xyxy[:, [1, 3]] <= h)


# ---------------------------------------------------------------- backend choice


def test_auto_backend_by_model_format(tmp_path: Path) -> None:
    engine = tmp_path / "yolo11n.engine"
    engine.write_bytes(b"\0")
    assert resolve_backend(YOLOX_ONNX, "auto") == ("tensorrt" if ON_GPU else "onnxruntime")
    assert resolve_backend(YOLOV8_IR, "auto") == "openvino"
    assert resolve_backend(YOLOV8_IR / "yolov8n.xml", "auto") == "openvino"
    assert resolve_backend("yolo11n.pt", "auto") == "ultralytics"
    assert resolve_backend(engine, "auto") == "tensorrt"
    assert resolve_backend(tmp_path / "model.plan", "auto") == "tensorrt"
    for backend in ("onnxruntime", "openvino", "tensorrt", "ultralytics"):
        assert resolve_backend(YOLOX_ONNX, backend) == backend


def test_default_config_picks_auto(cfg: Config) -> None:
    assert cfg.detector.backend == "auto"
    detector = create_detector(YOLOX_ONNX, cfg)
    assert detector.backend == ("tensorrt" if ON_GPU else "onnxruntime")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("yaml_text", "needles"),
    [
        ("detector:\n  backend: tflite\n", ["detector.backend", "tflite"]),
        ("detector:\n  openvino_hint: FAST\n", ["detector.openvino_hint", "FAST"]),
        ("detector:\n  openvino_threads: -1\n", ["detector.openvino_threads"]),
        ("tensorrt:\n  precision: int4\n", ["tensorrt.precision", "int4"]),
        ("tensorrt:\n  calib_min_images: 600\n", ["calib_max_images (500)", "calib_min_images (600)"]),
        ("tensorrt:\n  engine_folder: x\n", ["unknown config key", "tensorrt.engine_folder"]),
    ],
)
def test_backend_settings_are_validated(tmp_path: Path, yaml_text: str, needles: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text)
    with pytest.raises(PerceptionError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


# ---------------------------------------------------------------- OpenVINO


def test_openvino_settings_reach_the_compiled_model(cfg: Config, highway_frame: np.ndarray) -> None:
    latency = create_detector(YOLOX_ONNX, with_backend(cfg, "openvino"))
    assert latency.compiled.get_property("PERFORMANCE_HINT") == "LATENCY"
    throughput = create_detector(
        YOLOX_ONNX, with_backend(cfg, "openvino", openvino_hint="THROUGHPUT", openvino_threads=1)
    )
    assert throughput.compiled.get_property("PERFORMANCE_HINT") == "THROUGHPUT"
    assert throughput.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert_parity(
        latency.detect(highway_frame), throughput.detect(highway_frame), cfg.detector.conf_threshold
    )


def test_openvino_reads_ir_by_folder_or_xml(cfg: Config, highway_frame: np.ndarray) -> None:
    by_folder = create_detector(YOLOV8_IR, with_backend(cfg, "openvino"))
    by_xml = create_detector(YOLOV8_IR / "yolov8n.xml", with_backend(cfg, "openvino"))
    a, b = by_folder.detect(highway_frame), by_xml.detect(highway_frame)
    np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
    assert by_xml.class_names == list(COCO_NAMES)


@pytest.mark.unit
def test_openvino_reads_class_names_from_onnx_metadata(tmp_path: Path, cfg: Config) -> None:
    names = list(COCO_NAMES)
    names[79] = "scooter"
    raw = ultra_output([(320.0, 320.0, 64.0, 64.0, 79, 0.9)])
    path = constant_output_model(tmp_path / "named.onnx", raw, names=str(dict(enumerate(names))))
    scooters = with_backend(cfg, "openvino").model_copy(
        update={"classes": {"vehicle": ["car"], "micromobility": ["scooter"]}}
    )
    detector = create_detector(path, scooters)
    assert detector.class_names == names and detector.layout == "ultralytics"
    det = detector.detect(np.zeros((640, 640, 3), np.uint8))
    np.testing.assert_array_equal(det.label_ids, [1])
    np.testing.assert_allclose(det.boxes_xyxy, [[288, 288, 352, 352]], atol=1e-3)


@pytest.mark.unit
def test_openvino_bad_models_are_refused(tmp_path: Path, cfg: Config) -> None:
    ov = with_backend(cfg, "openvino")
    with pytest.raises(PerceptionError, match="model not found"):
        create_detector(tmp_path / "nowhere.xml", ov)
    empty = tmp_path / "empty_model"
    empty.mkdir()
    with pytest.raises(PerceptionError, match="expected one OpenVINO .xml in the folder, found none"):
        create_detector(empty, ov)
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model\n")
    with pytest.raises(PerceptionError, match="cannot load model") as info:
        create_detector(junk, ov)
    assert "\n" not in str(info.value)
    with pytest.raises(PerceptionError, match=r"output \[1, 7, 3\]|unsupported model output shape"):
        create_detector(constant_output_model(tmp_path / "odd.onnx", np.zeros((1, 7, 3)), names=None), ov)


# ---------------------------------------------------------------- Ultralytics


def _run(*args: object, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "PERCEPTION_ASSETS": str(ASSETS), **(env or {})},
    )


@pytest.mark.unit
def test_ultralytics_is_imported_offline() -> None:
    """In a fresh process: after the backend imports Ultralytics, it believes it is offline (no AutoUpdate,
    no event reporting, no asset lookups) and will not pip-install anything."""
    code = (
        "from perception.detect.runtimes.ultralytics import load_ultralytics; load_ultralytics(); "
        "import os; from ultralytics.utils import ONLINE, AUTOINSTALL; "
        "print(ONLINE, AUTOINSTALL, os.environ['YOLO_OFFLINE'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "False", "1"]


def test_ultralytics_missing_model_messages(tmp_path: Path, cfg: Config) -> None:
    with pytest.raises(PerceptionError, match=r"^model not found: .*nothing\.pt$"):
        create_detector(tmp_path / "nothing.pt", cfg)
    # A released model name with no --model, offline: a clear error in one line, and no download attempt.
    image = STILLS / "test1.jpg"
    proc = _run(
        "-m", "perception.cli", "detect", image, "--out", tmp_path, env={"YOLO_OFFLINE": "1"}, cwd=tmp_path
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip() == "error: model not found: yolo11n.pt (offline: pass --model with a local file)"
    )


def test_ultralytics_refuses_a_foreign_onnx(cfg: Config) -> None:
    with pytest.raises(PerceptionError, match="not an Ultralytics export"):
        create_detector(YOLOX_ONNX, with_backend(cfg, "ultralytics"))


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real YOLOv8n .pt with COCO names and untrained weights, built offline from Ultralytics' config."""
    from perception.detect.runtimes.ultralytics import load_ultralytics

    ultralytics = load_ultralytics()
    model = ultralytics.YOLO("yolov8n.yaml", task="detect")
    model.model.names = dict(enumerate(COCO_NAMES))
    path = tmp_path_factory.mktemp("pt") / "tiny_yolov8n.pt"
    model.save(str(path))
    return path


def test_ultralytics_runs_a_pt_model(tiny_pt: Path, cfg: Config, highway_frame: np.ndarray) -> None:
    detector = create_detector(tiny_pt, cfg)  # auto: Ultralytics for .pt
    assert detector.backend == "ultralytics"
    assert detector.input_hw == tuple(cfg.detector.input_size)  # a .pt runs at the configured size
    assert detector.class_names == list(COCO_NAMES)
    det = detector.detect(highway_frame)  # untrained weights: what matters is the type and ranges
    assert det.boxes_xyxy.shape == (len(det), 4) and det.label_ids.dtype == np.int32
    assert np.all(det.scores > cfg.detector.conf_threshold)


def test_ultralytics_device_and_half_from_config(tiny_pt: Path, cfg: Config, highway_frame) -> None:
    """detector.ultralytics_device and precision fp16 reach Ultralytics' predictor (which runs half precision
    on a GPU only); bf16 and int8 on a float model are refused."""
    detector = create_detector(
        tiny_pt, with_backend(cfg, "ultralytics", ultralytics_device="cpu", precision="fp16")
    )

    def half(args) -> bool:  # Ultralytics 8.4 replaced `half` with `quantize`
        return getattr(args, "quantize", None) == 16 if hasattr(args, "quantize") else bool(args.half)

    args = detector.model.predictor.args
    assert half(args) and str(args.device) == "cpu"
    detector.detect(highway_frame)
    default = create_detector(tiny_pt, with_backend(cfg, "ultralytics"))
    assert not half(default.model.predictor.args)
    for precision, needle in (("bf16", "runs fp32 or fp16"), ("int8", "not quantized")):
        with pytest.raises(PerceptionError, match=needle):
            create_detector(tiny_pt, with_backend(cfg, "ultralytics", precision=precision))


def test_export_pt_to_onnx_then_onnxruntime(tiny_pt: Path, cfg: Config, highway_frame: np.ndarray) -> None:
    proc = _run("-m", "perception.cli", "export", tiny_pt, "--format", "onnx", "--imgsz", "320", "512")
    assert proc.returncode == 0, proc.stderr
    onnx_path = Path(proc.stdout.strip().splitlines()[-1])
    assert onnx_path == tiny_pt.with_suffix(".onnx") and onnx_path.is_file()
    detector = create_detector(onnx_path, cfg)
    assert detector.backend == ("tensorrt" if ON_GPU else "onnxruntime")
    assert detector.layout == "ultralytics" and detector.input_hw == (320, 512)
    assert detector.class_names == list(COCO_NAMES)  # Ultralytics wrote the names into the ONNX metadata
    detector.detect(highway_frame)


@pytest.mark.unit
def test_export_refuses_what_it_cannot_export(tmp_path: Path) -> None:
    proc = _run("-m", "perception.cli", "export", YOLOX_ONNX, "--format", "onnx")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: export starts from an Ultralytics .pt model")


# ---------------------------------------------------------------- perception detect, perception run --backend


def test_detect_command_prints_and_draws(tmp_path: Path) -> None:
    out = tmp_path / "drawn"
    proc = _run("-m", "perception.cli", "detect", STILLS, "--model", YOLOV8_IR, "--out", out)
    assert proc.returncode == 0, proc.stderr
    images = sorted(STILLS.glob("*.jpg"))
    headers = [line for line in proc.stdout.splitlines() if not line.startswith(" ")]
    assert [h.split()[0] for h in headers] == [p.name for p in images]
    assert "[openvino, ultralytics, 640x640]" in proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(" ")]
    assert len(rows) >= 12 and {r[0] for r in rows} >= {"vehicle"}
    for path in images:
        drawn = cv2.imread(str(out / path.name))
        original = cv2.imread(str(path))
        assert drawn.shape == original.shape
    # test1.jpg has confident cars: its drawing differs from the original
    assert not np.array_equal(cv2.imread(str(out / "test1.jpg")), cv2.imread(str(STILLS / "test1.jpg")))


def test_detect_command_backend_choice_and_errors(tmp_path: Path) -> None:
    image = STILLS / "test1.jpg"
    proc = _run(
        "-m",
        "perception.cli",
        "detect",
        image,
        "--model",
        YOLOX_ONNX,
        "--backend",
        "openvino",
        "--out",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "[openvino, yolox, 448x800]" in proc.stderr
    proc = _run("-m", "perception.cli", "detect", tmp_path / "none.jpg", "--model", YOLOX_ONNX)
    assert (proc.returncode, proc.stderr.strip()) == (1, f"error: not found: {tmp_path / 'none.jpg'}")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run("-m", "perception.cli", "detect", empty, "--model", YOLOX_ONNX)
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: no images in {empty}")


def test_run_with_openvino_backend(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _run(
        "-m",
        "perception.cli",
        "run",
        MOT17_13 / "img1",
        "--model",
        YOLOX_ONNX,
        "--backend",
        "openvino",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["type"] == "start" and events[0]["backend"] == "openvino"
    frames = [e for e in events if e["type"] == "frame"]
    assert len(frames) == len(list((MOT17_13 / "img1").glob("*.jpg")))
    assert sum(f["detections"] for f in frames) > 0


# ---------------------------------------------------------------- close


def test_every_backend_closes_once(cfg: Config, highway_frame: np.ndarray) -> None:
    """close() releases the runtime's session or compiled model; a second close() does nothing."""
    ort = create_detector(YOLOX_ONNX, with_backend(cfg, "onnxruntime"), requests=2)
    twin = ort.fork()
    assert len(twin.detect(highway_frame)) > 0  # a fork runs on the shared session until close
    ov = create_detector(YOLOX_ONNX, with_backend(cfg, "openvino", precision="fp32"))
    ultra = create_detector(YOLOV8_IR, with_backend(cfg, "ultralytics"))
    for detector, held in ((ort, "session"), (ov, "compiled"), (ultra, "model")):
        assert getattr(detector, held) is not None
        detector.close()
        assert getattr(detector, held) is None, detector.backend
        detector.close()


# ---------------------------------------------------------------- bus.jpg: our decoding against Ultralytics'


def _bus() -> Path:
    from perception.detect.runtimes.ultralytics import load_ultralytics

    return Path(load_ultralytics().__file__).parent / "assets" / "bus.jpg"


@pytest.mark.parametrize(
    "model", [ASSETS / "models" / "yolo26n_int8.onnx", ASSETS / "models" / "yolo11n_int8_openvino_model"]
)
def test_bus_and_four_people_as_ultralytics_predicts_them(cfg: Config, model: Path) -> None:
    """Our letterbox and decoder (end-to-end head on ONNX Runtime, YOLO11 head on OpenVINO in fp32) against
    Ultralytics' `predict` on the same file: the same boxes, IoU >= 0.9, same classes."""
    from perception.detect.runtimes.ultralytics import load_ultralytics

    conf = 0.3
    ours = create_detector(model, with_detector(cfg, precision="fp32", conf_threshold=conf))
    det = ours.detect(cv2.imread(str(_bus())))
    names = [ours.class_names[c] for c in det.class_ids]
    assert sorted(names) == ["bus", "person", "person", "person", "person"], names

    result = (
        load_ultralytics().YOLO(str(model), task="detect").predict(str(_bus()), conf=conf, verbose=False)[0]
    )
    theirs = result.boxes.xyxy.cpu().numpy()
    their_names = [result.names[int(c)] for c in result.boxes.cls.cpu().numpy()]
    assert sorted(their_names) == sorted(names)
    iou = iou_matrix(det.boxes_xyxy, theirs)
    same_class = np.array(names)[:, None] == np.array(their_names)[None, :]
    best = (iou * same_class).max(1)
    assert np.all(best >= 0.9), best
    assert np.all((iou * same_class).max(0) >= 0.9)


@pytest.mark.parametrize("model", ["yolo26n_int8.onnx", "yolo11n_int8_openvino_model"])
def test_detect_command_on_bus_with_current_exports(tmp_path: Path, model: str) -> None:
    proc = _run(
        "-m", "perception.cli", "detect", _bus(), "--model", ASSETS / "models" / model, "--out", tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(" ")]
    confident = [r[1] for r in rows if float(r[2]) >= 0.3]
    assert sorted(confident) == ["bus", "person", "person", "person", "person"], proc.stdout
    assert "perception: layout " in proc.stderr and "are dropped: airplane" in proc.stderr
