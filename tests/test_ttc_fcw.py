"""Camera geometry, distance, optical-flow scale, the warning state machine, and the synthetic
scenarios end to end (real crops, real detector, exact ground truth)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.camera import Camera, CameraProfile, Ranging, load_camera_profile, profile_from_kitti_calib
from perception.config import Config, load_config
from perception.detect import create_detector
from perception.errors import PerceptionError
from perception.eval.synthetic import SCENARIOS, _paste, load_assets, render
from perception.eval.ttc import evaluate_ttc
from perception.fcw import ForwardCollisionWarning
from perception.flow import flow_scale
from perception.track import iou_matrix
from perception.types import Tracks
from tests.conftest import ASSETS, YOLOX_ONNX

KIND = "integration"

KITTI = ASSETS / "kitti"


def ort_config() -> Config:
    return load_config(overrides={"detector": {"backend": "onnxruntime"}})


# -- camera geometry ---------------------------------------------------------------------------------------


@pytest.mark.unit
def test_ground_projection_round_trip() -> None:
    camera = Camera(load_camera_profile("dashcam"), (540, 960))
    z = np.array([5.0, 10.0, 30.0, 80.0])
    x = np.array([0.0, 1.5, -3.0, 2.0])
    u, v = camera.project_ground(x, z)
    np.testing.assert_allclose(camera.ground_distance_m(v), z, rtol=1e-9)
    np.testing.assert_allclose(camera.lateral_m(u, z), x, atol=1e-9)
    assert np.isnan(camera.ground_distance_m(np.array([camera.horizon_v - 5])))[0]
    # the horizon sits where the profile puts it (57 % of the height)
    assert camera.horizon_v == pytest.approx(0.57 * 540)


@pytest.mark.unit
def test_profile_needs_intrinsics_and_pitch() -> None:
    with pytest.raises(ValueError, match="fx, fy, cx, cy or hfov_deg"):
        CameraProfile(image_size=(100, 100), height_m=1.2, pitch_deg=0.0)
    with pytest.raises(ValueError, match="pitch_deg or horizon_frac"):
        CameraProfile(image_size=(100, 100), height_m=1.2, hfov_deg=60.0)
    with pytest.raises(PerceptionError, match="camera profile not found"):
        load_camera_profile("no_such_camera")


def kitti_camera(index: int, image_hw: tuple[int, int]) -> Camera:
    """KITTI's own calibration (P2) per frame, mounted 1.65 m high."""
    calib = KITTI / "calib" / f"{index:06d}.txt"
    return Camera(profile_from_kitti_calib(calib, (image_hw[1], image_hw[0])), image_hw)


def test_kitti_profile_matches_the_calibration_file() -> None:
    kitti = Camera(load_camera_profile("kitti"), (375, 1242))
    reference = kitti_camera(1, (375, 1242))
    assert (kitti.fx, kitti.fy, kitti.cx, kitti.cy) == pytest.approx(
        (reference.fx, reference.fy, reference.cx, reference.cy)
    )


def test_kitti_distances_within_15_percent() -> None:
    """Every labelled car, pedestrian and cyclist nearer than 40 m that the detector finds."""
    cfg = ort_config()
    detector = create_detector(YOLOX_ONNX, cfg)
    ranging = Ranging(cfg.ttc, cfg.labels)
    checked = 0
    for index in range(3):
        image = cv2.imread(str(KITTI / "image_2" / f"{index:06d}.png"))
        dets = detector.detect(image)
        dist, _, _ = ranging(kitti_camera(index, image.shape[:2]), dets.boxes_xyxy, dets.label_ids)
        for line in (KITTI / "label_2" / f"{index:06d}.txt").read_text().splitlines():
            f = line.split()
            if f[0] not in ("Car", "Pedestrian", "Cyclist") or float(f[13]) >= 40:
                continue
            iou = iou_matrix(np.array([[float(v) for v in f[4:8]]]), dets.boxes_xyxy)[0]
            if len(iou) == 0 or iou.max() < 0.5:
                continue
            true_m = float(f[13])
            assert abs(dist[np.argmax(iou)] - true_m) / true_m <= 0.15, (index, f[0], true_m)
            checked += 1
    assert checked == 2  # the pedestrian at 8.4 m (000000) and the car at 34.4 m (000002)


# -- optical-flow scale ------------------------------------------------------------------------------------


def test_flow_scale_measures_growth_of_a_real_crop() -> None:
    road, sprites = load_assets(ASSETS)
    sprite = sprites["car"].image
    gray = lambda image: cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)  # noqa: E731
    for height_px, ratio in ((50, 1.02), (90, 1.04), (90, 1.0), (60, 0.98)):
        width_px = height_px * sprite.shape[1] / sprite.shape[0]
        x1, y1 = 400.3, 300.6
        before, after = road.copy(), road.copy()
        _paste(before, sprite, x1, y1, x1 + width_px, y1 + height_px)
        cx, cy = x1 + width_px / 2, y1 + height_px / 2
        hw, hh = width_px * ratio / 2, height_px * ratio / 2
        _paste(after, sprite, cx - hw, cy - hh, cx + hw, cy + hh)
        measured = flow_scale(gray(before), gray(after), np.array([[x1, y1, x1 + width_px, y1 + height_px]]))[
            0
        ]
        assert measured == pytest.approx(ratio, abs=0.004), (height_px, ratio)


# -- warning state machine ---------------------------------------------------------------------------------


WARM_UP = 10  # frames with no threat first: the track is held in the path after fcw.in_path_hold_s


def one_track(ttc_s: float, lateral_m: float = 0.0, dist_m: float = 20.0) -> Tracks:
    """A car whose estimates are all known and trusted (the FCW's inputs, not the estimators')."""
    tracks = Tracks.new(
        ids=np.array([7]),
        boxes_xyxy=np.array([[440.0, 300.0, 520.0, 380.0]], np.float32),
        scores=np.array([0.9], np.float32),
        class_ids=np.array([2], np.int32),
        label_ids=np.array([2], np.int32),
    )
    tracks.ttc_s[:], tracks.ttc_std_s[:], tracks.ttc_plausible[:] = ttc_s, 0.05 * ttc_s, True
    tracks.dist_m[:], tracks.dist_std_m[:] = dist_m, 0.1 * dist_m
    tracks.lateral_m[:], tracks.width_m[:], tracks.lateral_std_m[:] = lateral_m, 1.8, 0.1
    tracks.lateral_speed_mps[:], tracks.lateral_speed_std_mps[:] = 0.0, 0.05
    return tracks


def run_fcw(cfg: Config, ttc_by_frame: list[float], lateral_m: float = 0.0) -> tuple[list, list]:
    """Levels and events over the sequence (after the warm-up), 25 fps."""
    camera = Camera(load_camera_profile("dashcam"), (540, 960))
    fcw = ForwardCollisionWarning(cfg.fcw, cfg.labels)
    levels, events = [], []
    for i, ttc in enumerate([10.0] * WARM_UP + list(ttc_by_frame)):
        state, new = fcw.update(one_track(ttc, lateral_m), i * 0.04, camera, i)
        levels.append(state.level.label)
        events += new
    assert set(levels[:WARM_UP]) == {"none"}
    return levels[WARM_UP:], events


@pytest.mark.unit
def test_warning_needs_persistence_then_holds_with_hysteresis(cfg: Config) -> None:
    # 0.2 s persistence = 5 frames at 25 fps: a 3-frame dip does nothing
    levels, events = run_fcw(cfg, [6.0] * 5 + [2.0] * 3 + [6.0] * 5)
    assert set(levels) == {"none"} and events == []
    # a sustained threat: warning after 5 frames at or below 3.6 s
    levels, events = run_fcw(cfg, [6.0] * 3 + [3.0] * 10)
    assert levels.index("warning") == 3 + 5
    assert [e.level for e in events] == ["warning"] and events[0].track_id == 7
    # hysteresis: TTC 3.9 s (above 3.6 but within +15 %) keeps the warning
    levels, _ = run_fcw(cfg, [3.0] * 10 + [3.9] * 30)
    assert levels[-1] == "warning"


@pytest.mark.unit
def test_warning_clears_and_cooldown_holds_the_next_back(cfg: Config) -> None:
    ttc = [3.0] * 10 + [10.0] * 20 + [3.0] * 20  # warn, clear (0.5 s), threat again within 3 s
    levels, events = run_fcw(cfg, ttc)
    assert [e.level for e in events] == ["warning", "none", "caution"]
    assert "warning" not in levels[30:]  # cooldown: caution only


@pytest.mark.unit
def test_out_of_path_tracks_never_warn(cfg: Config) -> None:
    levels, events = run_fcw(cfg, [1.5] * 30, lateral_m=-3.5)  # the next lane, left
    assert set(levels) == {"none"} and events == []


@pytest.mark.unit
def test_warning_event_names_the_lead(cfg: Config) -> None:
    _, events = run_fcw(cfg, [3.0] * 10)
    assert events[0].reason == "lead" and events[0].lateral_m == 0.0 and events[0].truncated is False


# -- synthetic scenarios end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scenario_scores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("scenarios")
    cfg = ort_config()
    scores = {}
    for name, scenario in SCENARIOS.items():
        video, truth = render(scenario, out, ASSETS)
        scores[name] = evaluate_ttc(video, truth, str(YOLOX_ONNX), cfg)
    return scores


def test_scenario_files_hold_exact_ground_truth(tmp_path: Path) -> None:
    video, truth = render(SCENARIOS["car_stopped_50kmh"], tmp_path, ASSETS)
    rows = [line.split(",") for line in truth.read_text().splitlines()]
    header, first, last = (
        rows[0],
        dict(zip(rows[0], rows[1], strict=True)),
        dict(zip(rows[0], rows[-1], strict=True)),
    )
    assert header[:6] == ["frame", "t_s", "dist_m", "ttc_s", "collision_in_s", "in_path"]
    assert float(first["dist_m"]) == pytest.approx(75.0)
    assert float(first["ttc_s"]) == pytest.approx(75.0 / (50 / 3.6), rel=1e-3)
    assert float(first["collision_in_s"]) == pytest.approx(float(first["ttc_s"]), abs=0.01)
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(rows) - 1 == int(last["frame"]) + 1


@pytest.mark.parametrize("name", ["car_stopped_50kmh", "car_braking", "pedestrian_crossing"])
def test_approach_ttc_accuracy_and_warning_timing(scenario_scores: dict, name: str) -> None:
    s = scenario_scores[name]
    assert s["matched_frames"] >= 0.9 * s["frames"]
    assert s["ttc_median_rel_error"] <= 0.10
    assert s["ttc_estimated_share"] >= 0.5
    warning = s["first_warning"]
    assert warning is not None
    assert 2.1 <= warning["collision_in_s"] <= 4.0  # NHTSA's 2.1 s lead time, and not a nuisance


@pytest.mark.parametrize("name", ["car_constant_gap", "car_adjacent_overtaken"])
def test_no_threat_no_warning(scenario_scores: dict, name: str) -> None:
    s = scenario_scores[name]
    assert s["matched_frames"] >= 0.9 * s["frames"]  # the car was seen and tracked throughout
    assert s["warnings"] == 0 and s["first_caution"] is None


def test_eval_ttc_command(tmp_path: Path) -> None:
    video, truth = render(SCENARIOS["car_constant_gap"], tmp_path, ASSETS)
    config = tmp_path / "ort.yaml"
    config.write_text("detector:\n  backend: onnxruntime\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "perception.cli",
            "eval-ttc",
            str(video),
            "--truth",
            str(truth),
            "--model",
            str(YOLOX_ONNX),
            "--config",
            str(config),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(proc.stdout)
    assert scores["frames"] == 126 and scores["warnings"] == 0
    assert scores["dist_median_rel_error"] < 0.15
