"""Backend auto on a CPU: the candidates per CPU, the timed trial's choice cached and measured again when its
key changes (model bytes, CPU, library versions), the accuracy check that keeps reduced precision honest, and
`detector.precision: int8`. Real models and real frames; no timing thresholds (the trial's FPS only rank)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.detect import _create, create_detector
from perception.detect.auto.accuracy import check_recall, load_frames
from perception.detect.auto.choose import (
    Candidate,
    candidates,
    choose_backend,
    decide,
    first_guess,
    openvino_default_precision,
    trial_enabled,
)
from perception.detect.auto.machine import MachineInfo, machine_info
from perception.detect.quantized import is_quantized
from tests.conftest import ASSETS, HIGHWAY_CLIP, YOLOX_ONNX
from tests.helpers import with_detector

KIND = "integration"

YOLOV8_IR = ASSETS / "models" / "yolov8n_int8_openvino_model"
YOLO26_INT8 = ASSETS / "models" / "yolo26n_int8.onnx"
MOT17_MINI = ASSETS / "mot" / "MOT17-mini"
SMALL = (256, 416)  # a small input keeps the trial short

AMD_ZEN5 = MachineInfo("AMD EPYC", 2, ("avx2", "avx512f", "avx512_vnni", "avx512_bf16"), {"openvino": "x"})
XEON_AMX = MachineInfo(
    "Intel Xeon", 2, ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
)
PLAIN_AVX2 = MachineInfo("Old CPU", 4, ("avx2", "fma"))


@pytest.fixture
def trial_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The trial on (conftest turns it off for the rest of the suite), into a cache of this test's own."""
    monkeypatch.setenv("PERCEPTION_AUTO_TRIAL", "1")
    cache = tmp_path / "cache"
    monkeypatch.setenv("PERCEPTION_CACHE_DIR", str(cache))
    return cache


def auto_cfg(cfg: Config, **update: object) -> Config:
    return with_detector(cfg, backend="auto", input_size=SMALL, **update)


# ---------------------------------------------------------------- candidates and the first guess


@pytest.mark.unit
def test_candidates_follow_the_cpu_features() -> None:
    names = lambda cs: [c.name for c in cs]  # noqa: E731
    # AMD Zen 5: bf16 in AVX-512, no AMX: ONNX Runtime fp32 first, bf16 worth timing.
    assert names(candidates("onnx", AMD_ZEN5, "auto")) == [
        "onnxruntime fp32",
        "openvino fp32",
        "openvino bf16",
    ]
    # Intel with AMX: OpenVINO bf16 is the first guess.
    assert names(candidates("onnx", XEON_AMX, "auto"))[0] == "openvino bf16"
    # No bf16 at all: fp32 only; OpenVINO IR runs on OpenVINO only.
    assert names(candidates("onnx", PLAIN_AVX2, "auto")) == ["onnxruntime fp32", "openvino fp32"]
    assert names(candidates("ir", PLAIN_AVX2, "auto")) == ["openvino fp32"]
    assert names(candidates("ir", AMD_ZEN5, "auto")) == ["openvino fp32", "openvino bf16"]
    # A named precision narrows them; one the CPU lacks is refused.
    assert names(candidates("onnx", AMD_ZEN5, "bf16")) == ["openvino bf16"]
    with pytest.raises(PerceptionError, match="does not compute in it"):
        candidates("onnx", PLAIN_AVX2, "fp16")
    assert first_guess("ir", XEON_AMX, candidates("ir", XEON_AMX, "auto")) == Candidate("openvino", "bf16")


def test_openvino_default_precision_follows_the_cpu() -> None:
    """What a plain --backend openvino computes in: bf16 where the CPU has it (AVX-512 BF16, AMX)."""
    assert openvino_default_precision() == ("bf16" if machine_info().bf16 else "fp32")


@pytest.mark.unit
def test_trial_can_be_turned_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPTION_AUTO_TRIAL", "0")
    assert not trial_enabled(True)
    monkeypatch.setenv("PERCEPTION_AUTO_TRIAL", "1")
    assert trial_enabled(True) and not trial_enabled(False)


# ---------------------------------------------------------------- cache and re-measurement


def test_choice_is_cached_and_measured_again_when_the_key_changes(
    cfg: Config, trial_on: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = auto_cfg(cfg)
    here = machine_info()

    def choose(model: Path, machine: MachineInfo = here):
        detector, choice = choose_backend(model, cfg, 1, None, _create, machine)
        detector.close()
        return choice

    first = choose(YOLOX_ONNX)
    assert not first.cached and first.cache_file and Path(first.cache_file).is_file()
    assert set(first.fps) == {c.name for c in candidates("onnx", here, "auto")}  # every candidate timed
    assert all(v > 0 for v in first.fps.values())
    assert (first.backend, first.precision) in {
        (c.backend, c.precision) for c in candidates("onnx", here, "auto")
    }
    said = capsys.readouterr().err
    assert "detector auto:" in said and f"{first.backend} {first.precision}" in said

    again = choose(YOLOX_ONNX)
    assert again.cached and (again.backend, again.precision, again.fps) == (
        first.backend,
        first.precision,
        first.fps,
    )
    assert "cached trial" in capsys.readouterr().err

    # Another CPU (features), other library versions, other model bytes: each is a new key, measured again.
    other_cpu = dataclasses.replace(here, cpu=here.cpu + " (another)", flags=(*here.flags, "amx_bf16"))
    assert not choose(YOLOX_ONNX, other_cpu).cached
    newer = dataclasses.replace(here, versions={**here.versions, "openvino": "9999.0"})
    assert not choose(YOLOX_ONNX, newer).cached
    model = onnx.load(YOLOX_ONNX)
    model.metadata_props.add(key="note", value="same weights, other bytes")
    changed = tmp_path / "yolox_nano.onnx"
    onnx.save(model, changed)
    assert not choose(changed).cached
    assert choose(YOLOX_ONNX).cached  # the original key is still there
    assert len(list((trial_on / "backend").glob("*.json"))) == 4


@pytest.mark.parametrize(
    ("model", "timed"),
    [
        # An IR on a CPU without bf16 has one candidate: chosen from CPU features, no trial.
        (YOLOV8_IR, set()),
        # A fixed-size ONNX has two fp32 candidates on any CPU: a timed trial between them.
        (YOLO26_INT8, {"onnxruntime fp32", "openvino fp32"}),
    ],
    ids=["ir-no-trial", "onnx-trial"],
)
def test_a_fixed_size_model_is_one_key_whatever_the_configured_size(
    cfg: Config, trial_on: Path, model: Path, timed: set[str]
) -> None:
    """A fixed 640x640 model runs at its own size whatever detector.input_size says: one choice for it, with
    or without a trial. The CPU's features are given (AVX2 only), not read from the host."""
    det, first = choose_backend(
        model, with_detector(cfg, backend="auto", input_size=(448, 800)), 1, None, _create, PLAIN_AVX2
    )
    det.close()
    det, again = choose_backend(
        model, with_detector(cfg, backend="auto", input_size=(384, 640)), 1, None, _create, PLAIN_AVX2
    )
    assert det.input_hw == (640, 640)
    det.close()
    assert not first.cached and again.cached
    assert set(first.fps) == timed and (("no trial" in first.reason) == (not timed))


def test_a_corrupt_or_foreign_cache_entry_is_measured_again(cfg: Config, trial_on: Path) -> None:
    cfg = auto_cfg(cfg)
    detector, choice = choose_backend(YOLOX_ONNX, cfg, 1, None, _create)
    detector.close()
    path = Path(choice.cache_file)
    record = json.loads(path.read_text())
    record["key"]["model_sha256"] = "0" * 64  # an entry that is not for this key (a hash collision of names)
    path.write_text(json.dumps(record))
    detector, again = choose_backend(YOLOX_ONNX, cfg, 1, None, _create)
    detector.close()
    assert not again.cached
    path.write_text("{not json")
    detector, third = choose_backend(YOLOX_ONNX, cfg, 1, None, _create)
    detector.close()
    assert not third.cached and json.loads(path.read_text())["choice"]["backend"] == third.backend


def test_create_detector_reports_the_choice_and_an_unwritable_cache(
    cfg: Config, trial_on: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    detector = create_detector(YOLOX_ONNX, auto_cfg(cfg, cache_dir=str(blocked)), 1)
    try:
        assert detector.backend in ("onnxruntime", "openvino")
        assert detector.choice.cache_file == ""
        assert any("not cached" in n for n in detector.choice.notes)
        assert "not cached" in capsys.readouterr().err
        image = np.zeros((540, 960, 3), np.uint8)
        assert len(detector.detect(image)) == 0
    finally:
        detector.close()


def test_a_model_or_config_error_is_said_as_itself(
    cfg: Config, trial_on: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An error every candidate hits (here a class the model does not have) is the model's own one line,
    with no word of a choice before it; cached or not."""
    bad = auto_cfg(cfg).model_copy(update={"classes": {"vehicle": ["car", "spaceship"]}})
    for _ in range(2):
        with pytest.raises(PerceptionError, match="'spaceship' is not a class of the model"):
            choose_backend(YOLOX_ONNX, bad, 1, None, _create)
        assert "detector auto" not in capsys.readouterr().err
    detector, choice = choose_backend(YOLOX_ONNX, auto_cfg(cfg), 1, None, _create)  # caches a choice
    detector.close()
    with pytest.raises(PerceptionError, match="spaceship"):
        choose_backend(YOLOX_ONNX, bad, 1, None, _create)  # same key: the cached path fails alike
    assert "cached trial" not in capsys.readouterr().err


def test_without_the_trial_cpu_features_decide(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERCEPTION_AUTO_TRIAL", "0")
    det, choice = choose_backend(YOLOX_ONNX, auto_cfg(cfg), 1, None, _create, AMD_ZEN5)
    det.close()
    assert (choice.backend, choice.precision, choice.fps) == ("onnxruntime", "fp32", {})
    assert "CPU features" in choice.reason
    # AMX guesses OpenVINO bf16, which needs its accuracy check: without frames, fp32 and a note.
    det, choice = choose_backend(YOLOX_ONNX, auto_cfg(cfg), 1, None, _create, XEON_AMX)
    det.close()
    assert (choice.backend, choice.precision) == ("onnxruntime", "fp32")
    assert choice.unchecked and any("auto_frames" in n for n in choice.notes)
    # With real frames the check runs (the run's own source), and bf16 is kept if it passes.
    det, choice = choose_backend(YOLOX_ONNX, auto_cfg(cfg), 1, HIGHWAY_CLIP, _create, XEON_AMX)
    det.close()
    assert "openvino bf16" in choice.checks
    check = choice.checks["openvino bf16"]
    assert check["frames"] > 0 and check["boxes"] > 0
    expected = ("openvino", "bf16") if check["passed"] else ("onnxruntime", "fp32")
    assert (choice.backend, choice.precision) == expected


# ---------------------------------------------------------------- the accuracy check


def test_accuracy_check_rejects_a_candidate_that_loses_recall(cfg: Config) -> None:
    """A real 'reduced' candidate that loses objects (the same model at a quarter of the input size) fails the
    check on real frames even though it is faster; fp32 is chosen and the reason said."""
    frames = load_frames(HIGHWAY_CLIP, 12)
    full = create_detector(YOLOX_ONNX, with_detector(cfg, backend="onnxruntime", input_size=(384, 640)))
    tiny = create_detector(YOLOX_ONNX, with_detector(cfg, backend="onnxruntime", input_size=(96, 160)))
    reference = [full.detect(f.image) for f in frames]
    worse = [tiny.detect(f.image) for f in frames]
    result = check_recall(frames, reference, worse, full.labels, 0.15, 0.4)
    assert result.reference.startswith("fp32 detections") and result.boxes > 0
    assert result.fp32_recall == 1.0 and not result.passed and result.drop > 0.01
    same = check_recall(frames, reference, reference, full.labels, 0.15, 0.4)
    assert same.passed and same.drop == 0

    fast_bf16, ort = Candidate("openvino", "bf16"), Candidate("onnxruntime", "fp32")
    chosen, reason, checks, notes, _ = decide({fast_bf16: 100.0, ort: 50.0}, lambda c: result)
    assert chosen == ort and reason == "fastest fp32"
    assert not checks["openvino bf16"]["passed"] and "fails the accuracy check" in notes[0]
    chosen, reason, *_ = decide({fast_bf16: 100.0, ort: 50.0}, lambda c: same)
    assert chosen == fast_bf16 and "accuracy check passed" in reason
    # Reduced precision that is not clearly faster is not worth its loss, checked or not.
    chosen, _, checks, notes, _ = decide({fast_bf16: 50.5, ort: 50.0}, lambda c: same)
    assert chosen == ort and not checks and "not worth" in notes[0]


def test_accuracy_check_uses_ground_truth_where_the_frames_have_it(cfg: Config) -> None:
    frames = load_frames(MOT17_MINI, 12)
    assert len(frames) == 12 and all(f.truth is not None for f in frames)
    detector = create_detector(YOLOX_ONNX, with_detector(cfg, backend="onnxruntime", input_size=(384, 640)))
    dets = [detector.detect(f.image) for f in frames]
    result = check_recall(frames, dets, dets, detector.labels, 0.15, 0.4)
    assert result.reference == "ground truth" and result.boxes > 50
    assert 0.3 < result.fp32_recall < 1.0 and result.drop == 0  # real recall against real boxes
    none = [d.subset(np.zeros(len(d), bool)) for d in dets]
    assert check_recall(frames, dets, none, detector.labels, 0.15, 0.4).recall == 0


def test_frames_for_the_check_are_real_and_errors_are_named(tmp_path: Path) -> None:
    video = load_frames(HIGHWAY_CLIP, 5)
    assert [f.name for f in video][:2] == ["highway_960x540_25fps.mp4#0", "highway_960x540_25fps.mp4#55"]
    assert video[0].image.shape == (540, 960, 3) and video[0].truth is None
    with pytest.raises(PerceptionError, match="frames not found"):
        load_frames(tmp_path / "missing", 5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PerceptionError, match="no images"):
        load_frames(tmp_path / "empty", 5)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(PerceptionError, match="neither an image folder nor a readable video"):
        load_frames(tmp_path / "broken.mp4", 5)


# ---------------------------------------------------------------- precision int8


def test_int8_precision_runs_quantized_models_and_refuses_float_ones(cfg: Config, highway_frame) -> None:
    assert is_quantized(YOLO26_INT8) and is_quantized(YOLOV8_IR) and not is_quantized(YOLOX_ONNX)
    for backend in ("onnxruntime", "openvino", "auto"):
        with pytest.raises(PerceptionError, match="not quantized.*perception quantize"):
            create_detector(YOLOX_ONNX, with_detector(cfg, backend=backend, precision="int8"))
    ort = create_detector(YOLO26_INT8, with_detector(cfg, backend="onnxruntime", precision="int8"))
    ov = create_detector(YOLOV8_IR, with_detector(cfg, backend="openvino", precision="int8"))
    auto = create_detector(YOLOV8_IR, with_detector(cfg, backend="auto", precision="int8"))
    assert auto.backend == "openvino" and auto.choice.backend == "openvino"
    for detector in (ort, ov, auto):
        assert len(detector.detect(highway_frame)) > 0
