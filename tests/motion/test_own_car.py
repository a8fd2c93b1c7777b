"""The car's own parts (perception/motion/own_car.py): a clip made from real frames whose bottom band is
still while the scene moves, with a car-like shape in it that the detector takes for a vehicle in every
frame (as a real hood is). Once the band is learnt no track comes from it; on the real clip (no hood in
view) and on a still camera nothing is learnt."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception.core.config import load_config
from perception.core.types import Frame
from perception.detect import create_detector
from perception.runtime.processor import build_processor
from tests.conftest import HIGHWAY_CLIP, YOLOX_ONNX

KIND = "integration"

FRAMES, LEARN = 60, 25
BAND_TOP = 430  # of 540 rows


@pytest.fixture(scope="module")
def clips() -> dict[str, list[np.ndarray]]:
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    frames = [cap.read()[1] for _ in range(130)]
    cap.release()
    car = frames[120][296:385, 0:153]  # a real car's rear, seen in frame 120
    band = cv2.GaussianBlur(frames[120][BAND_TOP:], (0, 0), 3)  # a dull still surface ...
    band[5:105, 370:590] = cv2.resize(car, (220, 100))  # ... with a car-like shape on it
    hooded = []
    for frame in frames[:FRAMES]:
        frame = frame.copy()
        frame[BAND_TOP:] = band
        hooded.append(frame)
    return {"hooded": hooded, "plain": frames[:FRAMES], "still": [frames[0]] * FRAMES}


def run(frames: list[np.ndarray], learn: int = LEARN) -> tuple[list, object]:
    cfg = load_config(
        overrides={"detector": {"backend": "onnxruntime"}, "motion": {"own_car_learn_frames": learn}}
    )
    detector = create_detector(YOLOX_ONNX, cfg)
    processor = build_processor(cfg)
    results = [processor.step(Frame(f, i, i, i / 25), detector.detect(f)) for i, f in enumerate(frames)]
    detector.close()
    return results, processor.motion.own_car


def in_band(result) -> int:
    b = result.tracks.boxes_xyxy
    return int(((b[:, 3] - np.maximum(b[:, 1], BAND_TOP)) >= 0.5 * (b[:, 3] - b[:, 1])).sum())


def test_the_still_band_is_learnt_and_gives_no_track(clips: dict) -> None:
    results, band = run(clips["hooded"])
    assert band.row_frac is not None and abs(band.row_frac * 540 - BAND_TOP) <= 20
    assert sum(in_band(r) for r in results[5:LEARN]) > 0  # before: the 'hood' is a tracked vehicle
    assert sum(in_band(r) for r in results[LEARN + 2 :]) == 0  # after: none
    # learning off: it stays a vehicle for the whole clip
    results, band = run(clips["hooded"], learn=0)
    assert band.row_frac == 1.0 and in_band(results[-1]) == 1


def test_no_band_without_a_hood_or_when_the_camera_is_still(clips: dict) -> None:
    _, band = run(clips["plain"])
    assert band.row_frac == 1.0  # the real clip: the road moves right down to the bottom edge
    _, band = run(clips["still"])
    assert band.row_frac is None  # nothing moves: nothing to tell the car from the scene by


def stamp(frame: np.ndarray, i: int) -> np.ndarray:
    """Burnt-in text as dashcams write it: date, time (the seconds tick) and speed, white on black edges."""
    frame = frame.copy()
    text = f"2026/12/07 10:15:{i // 25:02d}  88km/h CAM1"
    for colour, thickness in (((0, 0, 0), 4), ((255, 255, 255), 2)):
        cv2.putText(frame, text, (20, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.9, colour, thickness, cv2.LINE_AA)
    return frame


def test_burnt_in_text_gives_no_feature_once_learnt(clips: dict) -> None:
    """Text fixed to the picture over a moving scene: its pixels are learnt as the camera's own and no
    feature is taken from them after; the rest of the picture stays open to features."""
    from perception.core.config import MotionConfig
    from perception.motion import CameraMotionEstimator

    frames = [stamp(f, i) for i, f in enumerate(clips["plain"])]
    text_box = (10, 10, 620, 52)  # x1, y1, x2, y2 at full size: the text and its outline
    estimator = CameraMotionEstimator(MotionConfig(own_car_learn_frames=LEARN))
    motions = [estimator.estimate(f, np.zeros((0, 4))) for f in frames]
    fixed = estimator.own_car.fixed
    assert fixed is not None
    scale = fixed.shape[1] / frames[0].shape[1]
    x1, y1, x2, y2 = (round(v * scale) for v in text_box)
    drawn = cv2.resize((frames[0] != clips["plain"][0]).any(axis=2).astype(np.uint8), fixed.shape[::-1]) > 0
    assert fixed[drawn].mean() > 0.8  # the glyphs are covered
    outside = fixed.copy()
    outside[max(y1 - 16, 0) : y2 + 16, max(x1 - 16, 0) : x2 + 16] = False
    assert outside.mean() < 0.02  # and hardly anything else
    for motion in motions[LEARN + 2 :]:
        p = motion.points_prev
        inside = (
            (p[:, 0] >= text_box[0])
            & (p[:, 0] <= text_box[2])
            & (p[:, 1] >= text_box[1])
            & (p[:, 1] <= text_box[3])
        )
        assert not inside.any() and motion.trusted
    # Before it was learnt the text gave features (which stand still: outliers of the warp).
    p = motions[5].points_prev
    assert ((p[:, 0] <= text_box[2]) & (p[:, 1] <= text_box[3])).any()


def test_nothing_is_fixed_on_a_real_moving_clip(clips: dict) -> None:
    from perception.core.config import MotionConfig
    from perception.motion import CameraMotionEstimator

    estimator = CameraMotionEstimator(MotionConfig(own_car_learn_frames=LEARN))
    for frame in clips["plain"]:
        estimator.estimate(frame, np.zeros((0, 4)))
    fixed = estimator.own_car.fixed
    assert estimator.own_car.learnt and (fixed is None or fixed.mean() < 0.01)
