"""Camera geometry and distance from a box, on hand-made cases and on KITTI frames with their labels."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.core.camera_profile import CameraProfile, load_camera_profile, profile_from_kitti_calib
from perception.core.config import Config, load_config
from perception.core.errors import PerceptionError
from perception.detect import create_detector
from perception.threat.camera import Camera, Ranging
from perception.track.tracker import iou_matrix
from tests.conftest import ASSETS, YOLOX_ONNX

KIND = "integration"

KITTI = ASSETS / "kitti"


def ort_config() -> Config:
    return load_config(overrides={"detector": {"backend": "onnxruntime"}})


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
