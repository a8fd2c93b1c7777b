"""TensorRT without a GPU: everything around the plan that can be checked on any machine, on real files.

Cache keys and plan names, sidecars, the refusal of plans built for another GPU or TensorRT version or
changed since, Ultralytics `.engine` headers, build requests checked before a build starts, and INT8
calibration sets (size checks, sampling, preprocessing). Building and running plans needs an NVIDIA GPU;
those tests run only where TensorRT and a GPU are present.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.detect import create_detector
from perception.detect.decode import HeadDecoder, choose_layout
from perception.detect.labels import COCO_NAMES, class_names_from
from perception.detect.metadata import ModelMetadata
from perception.detect.preprocess import INPUT_FORMATS, Letterbox
from perception.detect.tensorrt.build import prepare_build
from perception.detect.tensorrt.calibration import CalibrationSet, calibration_cache_path
from perception.detect.tensorrt.files import (
    GpuInfo,
    PlanInfo,
    PlanKey,
    cached_plan,
    check_plan,
    file_sha256,
    plan_path,
    read_engine_header,
    read_sidecar,
    sidecar_path,
    write_plan,
)
from perception.detect.tensorrt.gpu import tensorrt_available
from tests.conftest import ASSETS, HIGHWAY_CLIP, MOT17_13, REPO, STILLS, YOLOX_ONNX
from tests.helpers import constant_output_model, ultra_output, with_detector

KIND = "integration"

ON_GPU = tensorrt_available()
needs_no_tensorrt = pytest.mark.skipif(ON_GPU, reason="TensorRT and a GPU are present here")
needs_gpu = pytest.mark.skipif(not ON_GPU, reason="needs an NVIDIA GPU with tensorrt and pycuda")

GPU_A = GpuInfo("NVIDIA GeForce RTX 4090", "8.9", "10.16.1.11")
GPU_B = GpuInfo("NVIDIA Jetson AGX Orin", "8.7", "10.3.0")


@functools.cache
def onnx_sha() -> str:
    """The real model file's digest (read when a test needs it, so collection needs no assets)."""
    return hashlib.sha256(YOLOX_ONNX.read_bytes()).hexdigest()


def key(machine: GpuInfo = GPU_A, **changes: object) -> PlanKey:
    base = PlanKey.for_model(machine, "fp16", (1, 3, 448, 800), onnx_sha())
    return replace(base, **changes)


def info_for(k: PlanKey, plan_bytes: bytes, **changes: object) -> PlanInfo:
    base = PlanInfo(
        key=k,
        plan_sha256=hashlib.sha256(plan_bytes).hexdigest(),
        onnx=str(YOLOX_ONNX),
        layout="yolox",
        class_names=list(COCO_NAMES),
        input_name="images",
        output_name="output",
        calibration=None,
        built_at="2026-11-29T05:00:00+00:00",
        build_s=41.5,
    )
    return replace(base, **changes)


# ---------------------------------------------------------------- cache key and plan names


def test_onnx_digest_is_the_file_sha256() -> None:
    assert file_sha256(YOLOX_ONNX) == onnx_sha()


def test_cache_key_changes_with_every_field() -> None:
    base = key()
    assert key().digest() == base.digest()  # stable
    variants = [
        key(gpu=GPU_B.name),
        key(compute_capability="9.0"),
        key(tensorrt="10.0.1"),
        key(precision="int8"),
        key(input_shape=(1, 3, 384, 640)),
        key(input_shape=(4, 3, 448, 800)),
        key(onnx_sha256="0" * 64),
    ]
    digests = {v.digest() for v in variants}
    assert len(digests) == len(variants) and base.digest() not in digests
    # the digest is over canonical JSON, not Python's field order
    assert base.digest() == hashlib.sha256(json.dumps(base.as_dict(), sort_keys=True).encode()).hexdigest()
    assert PlanKey.from_dict(json.loads(json.dumps(base.as_dict()))) == base


def test_key_differences_are_readable() -> None:
    old = key(GPU_B)
    assert old.differences(key()) == [
        "gpu NVIDIA Jetson AGX Orin -> NVIDIA GeForce RTX 4090",
        "compute capability 8.7 -> 8.9",
        "tensorrt 10.3.0 -> 10.16.1.11",
    ]
    assert key(onnx_sha256="0" * 64).differences(key()) == ["ONNX file changed"]
    assert key(input_shape=(1, 3, 384, 640)).differences(key()) == ["input 1x3x384x640 -> 1x3x448x800"]


def test_plan_name_says_what_it_holds(tmp_path: Path) -> None:
    k = key(input_shape=(4, 3, 384, 640), precision="int8")
    path = plan_path(tmp_path / "engines" / "cache", YOLOX_ONNX, k)
    assert path.parent == tmp_path / "engines" / "cache"
    assert path.name == f"yolox_nano-384x640-b4-int8-{k.digest()[:16]}.plan"
    assert sidecar_path(path).name == path.name + ".json"


# ---------------------------------------------------------------- sidecar and refusal of mismatched plans


@pytest.fixture
def built_plan(tmp_path: Path) -> tuple[Path, PlanInfo]:
    """A plan file and sidecar as build_plan writes them (the plan bytes are stand-ins: no GPU here)."""
    plan_bytes = os.urandom(4096)
    k = key()
    plan = plan_path(tmp_path, YOLOX_ONNX, k)
    info = info_for(k, plan_bytes)
    write_plan(plan, plan_bytes, info)
    return plan, info


def test_sidecar_round_trip(built_plan: tuple[Path, PlanInfo]) -> None:
    plan, info = built_plan
    assert read_sidecar(plan) == info
    data = json.loads(sidecar_path(plan).read_text())
    assert data["format"] == "perception-tensorrt-plan/1"
    assert data["key"] == {
        "gpu": GPU_A.name,
        "compute_capability": "8.9",
        "tensorrt": "10.16.1.11",
        "precision": "fp16",
        "input_shape": [1, 3, 448, 800],
        "onnx_sha256": onnx_sha(),
    }
    assert not list(plan.parent.glob("*.tmp"))
    assert read_sidecar(plan.with_name("other.plan")) is None


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "invalid"),
        ('{"format": "something-else/1"}', "not a perception-tensorrt-plan/1 sidecar"),
        ('{"format": "perception-tensorrt-plan/1", "key": {}}', "missing"),
    ],
)
def test_damaged_sidecar_is_refused(built_plan: tuple[Path, PlanInfo], text: str, needle: str) -> None:
    plan, _info = built_plan
    sidecar_path(plan).write_text(text)
    with pytest.raises(PerceptionError, match=needle) as info:
        read_sidecar(plan)
    assert str(sidecar_path(plan)) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "needle"),
    [({"layout": "ssd"}, "unknown layout 'ssd'"), ({"class_names": "person"}, "class_names must be a list")],
)
def test_sidecar_with_wrong_values_is_refused(
    built_plan: tuple[Path, PlanInfo], change: dict, needle: str
) -> None:
    plan, _info = built_plan
    data = json.loads(sidecar_path(plan).read_text())
    sidecar_path(plan).write_text(json.dumps({**data, **change}))
    with pytest.raises(PerceptionError, match=needle):
        read_sidecar(plan)


def test_plan_for_this_gpu_is_accepted(built_plan: tuple[Path, PlanInfo]) -> None:
    plan, info = built_plan
    check_plan(plan, info, GPU_A)


@pytest.mark.parametrize(
    "machine",
    [GPU_B, replace(GPU_A, tensorrt="10.0.1"), replace(GPU_A, compute_capability="9.0")],
    ids=["other-gpu", "other-tensorrt", "other-compute-capability"],
)
def test_plan_from_elsewhere_is_refused(built_plan: tuple[Path, PlanInfo], machine: GpuInfo) -> None:
    plan, info = built_plan
    with pytest.raises(PerceptionError) as raised:
        check_plan(plan, info, machine)
    message = str(raised.value)
    assert "\n" not in message
    assert f"was built for {GPU_A.name} (compute 8.9), TensorRT 10.16.1.11" in message
    assert f"this machine has {machine.describe()}" in message
    assert f"perception build-engine {YOLOX_ONNX}" in message


def test_plan_changed_after_build_is_refused(built_plan: tuple[Path, PlanInfo]) -> None:
    plan, info = built_plan
    plan.write_bytes(plan.read_bytes()[:-1] + b"\x00")
    with pytest.raises(PerceptionError, match="does not match its sidecar"):
        check_plan(plan, info, GPU_A)


def test_cache_lookup_reuses_or_explains_a_rebuild(built_plan: tuple[Path, PlanInfo]) -> None:
    plan, info = built_plan
    assert cached_plan(plan, key()) == (info, "")
    # Another TensorRT on this machine: a different key, so a different name; the old plan is named as stale.
    upgraded = key(tensorrt="10.17.0")
    found, why = cached_plan(plan_path(plan.parent, YOLOX_ONNX, upgraded), upgraded)
    assert found is None
    assert why == f"cached plan {plan.name} is stale (tensorrt 10.16.1.11 -> 10.17.0)"
    # The ONNX file changed.
    retrained = key(onnx_sha256="f" * 64)
    found, why = cached_plan(plan_path(plan.parent, YOLOX_ONNX, retrained), retrained)
    assert found is None and why.endswith("is stale (ONNX file changed)")
    # A different size has no plan at all.
    other = key(input_shape=(1, 3, 384, 640))
    assert cached_plan(plan_path(plan.parent, YOLOX_ONNX, other), other) == (None, "no cached plan")
    # A plan whose bytes no longer match its sidecar is rebuilt, not loaded.
    plan.write_bytes(b"truncated")
    found, why = cached_plan(plan, key())
    assert found is None and why.endswith("does not match its sidecar")
    # A plan without its sidecar cannot be vouched for.
    sidecar_path(plan).unlink()
    assert cached_plan(plan, key()) == (None, f"cached plan {plan.name} has no sidecar")


# ---------------------------------------------------------------- Ultralytics .engine header


def ultralytics_engine(path: Path, metadata: dict, payload: bytes) -> Path:
    """The layout Ultralytics' exporter writes: int32 little-endian JSON length, the JSON, the plan."""
    meta = json.dumps(metadata).encode()
    path.write_bytes(len(meta).to_bytes(4, byteorder="little", signed=True) + meta + payload)
    return path


ULTRA_META = {
    "description": "Ultralytics YOLO11n model trained on coco.yaml",
    "author": "Ultralytics",
    "version": "8.4.190",
    "stride": 32,
    "task": "detect",
    "batch": 1,
    "imgsz": [384, 640],
    "names": {str(i): n for i, n in enumerate(COCO_NAMES)},
    "args": {"batch": 1, "half": True, "int8": False, "dynamic": False, "nms": False},
    "end2end": False,
}


@pytest.mark.unit
def test_ultralytics_engine_header_is_parsed(tmp_path: Path) -> None:
    payload = b"ftrt" + os.urandom(2048)
    path = ultralytics_engine(tmp_path / "yolo11n.engine", ULTRA_META, payload)
    offset, meta = read_engine_header(path)
    assert meta == ULTRA_META
    assert path.read_bytes()[offset:] == payload
    # JSON turned the names' integer keys into strings; they still map onto class ids.
    assert class_names_from(meta["names"], 80) == list(COCO_NAMES)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("head", "why"),
    [
        (b"", "empty file"),
        (b"\x01\x00", "shorter than a length"),
        ((10_000).to_bytes(4, "little") + b"{}", "length overruns the file"),
        ((0).to_bytes(4, "little") + b"{}", "zero length"),
        ((2).to_bytes(4, "little") + b"\xff\xfe" + os.urandom(64), "not UTF-8"),
        ((6).to_bytes(4, "little") + b"[1, 2]" + os.urandom(64), "JSON but not an object"),
        ((5).to_bytes(4, "little") + b"{oops" + os.urandom(64), "not JSON"),
        ((-5).to_bytes(4, "little", signed=True) + os.urandom(64), "negative length"),
    ],
)
def test_bare_plans_have_no_header(tmp_path: Path, head: bytes, why: str) -> None:
    path = tmp_path / "model.plan"
    path.write_bytes(head)
    assert read_engine_header(path) == (0, {}), why


# ---------------------------------------------------------------- build requests, checked before building


def test_build_request_for_yolox(cfg: Config) -> None:
    spec = prepare_build(YOLOX_ONNX, cfg, "fp16", imgsz=(384, 640), batch=4)
    assert spec.input_shape == (4, 3, 384, 640) and spec.input_hw == (384, 640)
    assert spec.dynamic and spec.layout == "yolox" and spec.class_names == list(COCO_NAMES)
    assert spec.onnx_sha256 == onnx_sha() and (spec.input_name, spec.output_name) == ("images", "output")
    default = prepare_build(YOLOX_ONNX, cfg, "fp32")
    assert default.input_shape == (cfg.tensorrt.batch, 3, *cfg.detector.input_size)


@pytest.mark.parametrize(
    ("name", "layout", "names"),
    [
        ("yolo26n_int8.onnx", "end2end", 80),  # YOLO26's NMS-free head: the plan must not lose it
        ("gtsdb_yolov5n_640.onnx", "yolov5", 43),  # a sign model builds whatever the config's taxonomy
    ],
)
def test_build_request_records_the_layout_for_the_sidecar(
    tmp_path: Path, cfg: Config, name: str, layout: str, names: int
) -> None:
    spec = prepare_build(ASSETS / "models" / name, cfg, "fp16")
    assert spec.layout == layout and len(spec.class_names) == names
    assert spec.input_shape == (1, 3, 640, 640) and not spec.dynamic
    # The sidecar written after a build carries the layout; a plan read back decodes with it.
    k = key(input_shape=spec.input_shape, onnx_sha256=spec.onnx_sha256)
    info = info_for(k, b"plan", layout=spec.layout, class_names=spec.class_names, onnx=str(spec.onnx))
    plan = plan_path(tmp_path, spec.onnx, k)
    write_plan(plan, b"plan", info)
    assert read_sidecar(plan).layout == layout
    assert choose_layout(np.zeros((1, 84, 8400)), (640, 640), ModelMetadata(), read_sidecar(plan).layout) == (
        layout,
        "recorded in the plan's sidecar",
    )


@pytest.mark.unit
def test_build_request_for_a_fixed_ultralytics_onnx(tmp_path: Path, cfg: Config) -> None:
    model = constant_output_model(tmp_path / "yolo.onnx", ultra_output([(320.0, 320.0, 64.0, 64.0, 2, 0.9)]))
    spec = prepare_build(model, cfg, "fp16")
    assert spec.input_shape == (1, 3, 640, 640) and not spec.dynamic and spec.layout == "ultralytics"
    with pytest.raises(PerceptionError, match="fixed input of 640x640; --imgsz 384 640 cannot apply"):
        prepare_build(model, cfg, "fp16", imgsz=(384, 640))
    with pytest.raises(PerceptionError, match="fixed batch of 1; --batch 2 cannot apply"):
        prepare_build(model, cfg, "fp16", batch=2)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"precision": "int8"}, "INT8 needs calibration images: pass --calib-dir"),
        ({"precision": "fp16", "calib_source": STILLS}, "--calib-dir only applies to --int8, not fp16"),
        (
            {"precision": "fp16", "imgsz": (400, 640)},
            "--imgsz 400 640: height and width must be multiples of 32",
        ),
        ({"precision": "fp16", "batch": 0}, "--batch 0: must be at least 1"),
        ({"precision": "int8", "calib_source": STILLS}, "has 12 images; INT8 needs at least 100"),
    ],
)
def test_bad_build_requests_fail_before_any_gpu_work(cfg: Config, kwargs: dict, needle: str) -> None:
    with pytest.raises(PerceptionError) as info:
        prepare_build(YOLOX_ONNX, cfg, **kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)


@pytest.mark.unit
def test_build_request_wants_an_onnx(tmp_path: Path, cfg: Config) -> None:
    with pytest.raises(PerceptionError, match="model not found"):
        prepare_build(tmp_path / "missing.onnx", cfg, "fp16")
    pt = tmp_path / "yolo11n.pt"
    pt.write_bytes(b"\0")
    with pytest.raises(PerceptionError, match=r"export a \.pt first with `perception export"):
        prepare_build(pt, cfg, "fp16")


# ---------------------------------------------------------------- INT8 calibration sets


def write_images(folder: Path, count: int, start: int = 0) -> list[Path]:
    """Real frames of the dashcam clip, as JPEG files."""
    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    paths = []
    for i in range(start + count):
        ok, image = cap.read()
        assert ok
        if i >= start:
            paths.append(folder / f"frame_{i:04d}.jpg")
            cv2.imwrite(str(paths[-1]), image)
    cap.release()
    return paths


def test_too_small_a_calibration_set_is_refused(tmp_path: Path) -> None:
    write_images(tmp_path / "few", 5)
    with pytest.raises(PerceptionError) as info:
        CalibrationSet(tmp_path / "few", min_images=100, max_images=500)
    assert str(info.value) == (
        f"calibration set {tmp_path / 'few'} has 5 images; INT8 needs at least 100 "
        "(tensorrt.calib_min_images) for representative ranges"
    )
    # MOT17-mini's sequences are 4-8 frames each: too few, however real.
    with pytest.raises(PerceptionError, match="has 8 images"):
        CalibrationSet(ASSETS / "mot" / "MOT17-mini" / "MOT17-04-FRCNN" / "img1", 100, 500)


def test_calibration_folder_is_searched_sampled_and_filtered(tmp_path: Path) -> None:
    root = tmp_path / "calib"
    paths = write_images(root / "a", 6) + write_images(root / "b", 4, start=6)
    (root / "notes.txt").write_text("not an image\n")
    (root / "labels.json").write_text("{}\n")
    full = CalibrationSet(root, min_images=10, max_images=100)
    assert len(full) == 10
    assert [name for name, _ in full.images()] == [p.name for p in paths]
    sampled = CalibrationSet(root, min_images=10, max_images=4)
    names = [name for name, _ in sampled.images()]
    assert len(names) == 4 and names[0] == paths[0].name and names[-1] == paths[-1].name


def test_calibration_from_a_video_samples_real_frames() -> None:
    calib = CalibrationSet(HIGHWAY_CLIP, min_images=100, max_images=50)
    assert len(calib) == 50
    frames = list(calib.images())
    assert len(frames) == 50
    assert frames[0][0] == "highway_960x540_25fps.mp4#0" and frames[-1][0] == "highway_960x540_25fps.mp4#220"
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    ok, first = cap.read()
    cap.release()
    assert ok and np.array_equal(frames[0][1], first)
    with pytest.raises(PerceptionError, match="has 221 frames; INT8 needs at least 300"):
        CalibrationSet(HIGHWAY_CLIP, min_images=300, max_images=500)


@pytest.mark.parametrize("layout", ["yolox", "ultralytics"])
def test_calibration_batches_are_preprocessed_like_inference(tmp_path: Path, layout: str) -> None:
    paths = write_images(tmp_path / "calib", 7)
    calib = CalibrationSet(tmp_path / "calib", min_images=5, max_images=100)
    letterbox = Letterbox((384, 640), INPUT_FORMATS[layout])
    batches = [b.copy() for b in calib.batches(letterbox, 3)]
    assert len(batches) == 2  # 7 images: two full batches of 3, the 7th dropped
    reference = Letterbox((384, 640), INPUT_FORMATS[layout])
    for i, path in enumerate(paths[:6]):
        batch, row = divmod(i, 3)
        np.testing.assert_array_equal(batches[batch][row], reference(cv2.imread(str(path)))[0])
    scale = 255.0 if layout == "yolox" else 1.0
    assert batches[0].min() >= 0 and batches[0].max() <= scale


def test_unreadable_calibration_image_is_named(tmp_path: Path) -> None:
    write_images(tmp_path / "calib", 4)
    broken = tmp_path / "calib" / "frame_0002.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    calib = CalibrationSet(tmp_path / "calib", min_images=4, max_images=10)
    with pytest.raises(PerceptionError, match=f"calibration image {broken} cannot be read"):
        list(calib.batches(Letterbox((384, 640), INPUT_FORMATS["yolox"]), 2))


@pytest.mark.unit
def test_calibration_source_must_exist_and_be_images_or_video(tmp_path: Path) -> None:
    with pytest.raises(PerceptionError, match="calibration source not found"):
        CalibrationSet(tmp_path / "nope", 1, 10)
    text = tmp_path / "list.txt"
    text.write_text("a.jpg\n")
    with pytest.raises(PerceptionError, match="neither an image folder nor a readable video"):
        CalibrationSet(text, 1, 10)


def test_calibration_cache_follows_the_data(tmp_path: Path) -> None:
    write_images(tmp_path / "calib", 6)
    first = CalibrationSet(tmp_path / "calib", 5, 100).digest
    assert CalibrationSet(tmp_path / "calib", 5, 100).digest == first
    write_images(tmp_path / "calib", 1, start=6)
    grown = CalibrationSet(tmp_path / "calib", 5, 100).digest
    assert grown != first
    cache = calibration_cache_path(
        REPO / "engines" / "cache", YOLOX_ONNX, onnx_sha(), (384, 640), grown, "10.16.1.11"
    )
    assert cache.name == f"yolox_nano-384x640-{onnx_sha()[:12]}-data{grown[:12]}-trt10.16.1.11.calib"


# ---------------------------------------------------------------- pinned input buffers


def test_letterbox_writes_into_a_given_buffer(highway_frame: np.ndarray, cfg: Config) -> None:
    """TensorRT hands the letterbox its pinned host buffer; results equal the letterbox's own tensor."""
    buffer = np.zeros((1, 3, 448, 800), np.float32)
    decoder = HeadDecoder("yolox", (448, 800), cfg.detector, tensor=buffer)
    out = decoder.letterbox(highway_frame)
    assert out is buffer
    own = Letterbox((448, 800), INPUT_FORMATS["yolox"])(highway_frame)
    np.testing.assert_array_equal(buffer, own)
    with pytest.raises(ValueError, match="float32"):
        Letterbox((448, 800), INPUT_FORMATS["yolox"], np.zeros((1, 3, 448, 800), np.float16))


# ---------------------------------------------------------------- without TensorRT: clear one-line errors


def _cli(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env={**os.environ, "PERCEPTION_ASSETS": str(ASSETS)},
    )


@needs_no_tensorrt
def test_tensorrt_backend_without_tensorrt(cfg: Config) -> None:
    with pytest.raises(PerceptionError) as info:
        create_detector(YOLOX_ONNX, with_detector(cfg, backend="tensorrt"))
    assert str(info.value) == (
        "the tensorrt backend needs TensorRT and pycuda (tensorrt and pycuda missing): "
        'pip install -e ".[gpu]" on a machine with an NVIDIA GPU and driver'
    )


@needs_no_tensorrt
def test_build_engine_command_without_tensorrt(tmp_path: Path) -> None:
    proc = _cli("build-engine", YOLOX_ONNX, "--fp16", "--imgsz", "384", "640")
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: the tensorrt backend needs TensorRT and pycuda")
    proc = _cli("run", MOT17_13 / "img1", "--model", tmp_path / "yolo11n.engine", "--out", tmp_path)
    assert proc.returncode == 1 and proc.stderr.strip().startswith("error: model not found")


def test_build_engine_checks_calibration_before_anything_else(tmp_path: Path) -> None:
    write_images(tmp_path / "few", 5)
    proc = _cli("build-engine", YOLOX_ONNX, "--int8", "--calib-dir", tmp_path / "few")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"error: calibration set {tmp_path / 'few'} has 5 images; INT8 needs at least 100 "
        "(tensorrt.calib_min_images) for representative ranges"
    )


# ---------------------------------------------------------------- on an NVIDIA GPU


@needs_gpu
def test_build_and_run_plan_on_gpu(tmp_path: Path, cfg: Config, highway_frame: np.ndarray) -> None:
    from tests.helpers import assert_parity

    trt_cfg = cfg.model_copy(
        update={
            "tensorrt": cfg.tensorrt.model_copy(update={"engine_dir": str(tmp_path), "precision": "fp32"}),
            "detector": cfg.detector.model_copy(update={"backend": "tensorrt"}),
        }
    )
    detector = create_detector(YOLOX_ONNX, trt_cfg)  # builds the plan into tmp_path
    plans = list(tmp_path.glob("*.plan"))
    assert len(plans) == 1 and read_sidecar(plans[0]) is not None
    reference = create_detector(YOLOX_ONNX, with_detector(cfg, backend="onnxruntime"))
    assert_parity(
        reference.detect(highway_frame), detector.detect(highway_frame), cfg.detector.conf_threshold
    )
    again = create_detector(plans[0], trt_cfg)  # the plan itself, checked against its sidecar
    np.testing.assert_allclose(
        again.detect(highway_frame).boxes_xyxy, detector.detect(highway_frame).boxes_xyxy
    )
