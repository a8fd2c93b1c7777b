"""A shaken real clip: the tracker with camera motion compensation keeps the IDs it had on the original,
without it loses them (the first 40 frames of the highway clip, detector on every shaken frame)."""

from __future__ import annotations

import cv2
import numpy as np

from perception.core.config import Config, MotionConfig
from perception.detect import create_detector
from perception.eval.shake import STRENGTHS, score, shake, shake_transforms, track, warp_boxes
from tests.conftest import HIGHWAY_CLIP, YOLOX_ONNX

KIND = "integration"
FRAMES = 40


def test_warp_boxes_encloses_the_warped_corners() -> None:
    warp = cv2.getRotationMatrix2D((0, 0), 90.0, 1.0)  # a quarter turn: x' = y, y' = -x
    assert np.allclose(warp_boxes(np.array([[10.0, 20, 30, 60]]), warp), [[20, -30, 60, -10]])


def test_compensation_keeps_ids_on_a_shaken_clip(cfg: Config) -> None:
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    original = [cap.read()[1] for _ in range(FRAMES)]
    cap.release()
    off = Config(**{**dict(cfg), "motion": MotionConfig(enabled=False)})
    warps = shake_transforms(FRAMES, original[0].shape[:2], *STRENGTHS["strong"], seed=0)
    detector = create_detector(YOLOX_ONNX, cfg)
    try:
        dets_orig = [detector.detect(image) for image in original]
        dets = [detector.detect(image) for image in shake(original, warps)]
    finally:
        detector.close()
    shaken = shake(original, warps)
    on = score(track(original, dets_orig, cfg, 25.0), track(shaken, dets, cfg, 25.0), warps)
    without = score(track(original, dets_orig, off, 25.0), track(shaken, dets, off, 25.0), warps)
    assert on["idf1"] >= 0.9 and on["id_switches"] <= 1
    assert without["idf1"] < 0.7 and without["id_switches"] > 5
