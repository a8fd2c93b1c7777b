"""Camera motion inside the frame processor: a still camera is reported stopped and changes no track; a
shaken one is compensated."""

from __future__ import annotations

import cv2
import numpy as np

from perception.core.config import Config, MotionConfig
from perception.core.types import Detections, Frame
from perception.runtime.processor import build_processor

KIND = "integration"


def cars(boxes: np.ndarray) -> Detections:
    n = len(boxes)
    label = Config().labels.index("vehicle")
    return Detections(
        boxes.astype(np.float32),
        np.full(n, 0.9, np.float32),
        np.full(n, 2, np.int32),
        np.full(n, label, np.int32),
    )


BOXES = np.array([[300.0, 280, 360, 320], [520, 290, 560, 318], [600, 300, 700, 360]])


def test_a_still_camera_reads_stopped_and_changes_no_track(highway_frame) -> None:
    on, off = build_processor(), build_processor(Config(motion=MotionConfig(enabled=False)))
    for i in range(6):
        frame = Frame(highway_frame, i, 0, i / 25)
        a, b = on.step(frame, cars(BOXES)), off.step(frame, cars(BOXES))
        assert np.array_equal(a.tracks.boxes_xyxy, b.tracks.boxes_xyxy)
        assert np.array_equal(a.tracks.ids, b.tracks.ids)
        if i:  # the default (dashcam) profile is known: speed and turn read zero
            assert a.ego.stopped is True and a.ego.camera_motion_confidence == 1.0
            assert a.ego.speed_mps == 0.0 and a.ego.yaw_rate_dps == 0.0
    assert b.ego.stopped is None and b.ego.camera_motion_confidence is None  # off: unknown


def test_a_shaken_camera_is_compensated(highway_frame) -> None:
    """Jumps of 45 px a frame: the same parked boxes are followed under their first IDs on every frame only
    with compensation; without it they are lost (and new tracks never confirm)."""
    h, w = highway_frame.shape[:2]
    rng = np.random.default_rng(7)
    ids: dict[bool, list[int]] = {True: [], False: []}
    processors = {True: build_processor(), False: build_processor(Config(motion=MotionConfig(enabled=False)))}
    offset = np.zeros(2)
    for i in range(12):
        offset += rng.choice([-45.0, 45.0], 2)
        warp = np.hstack((np.eye(2), offset[:, None]))
        image = cv2.warpAffine(highway_frame, warp, (w, h), borderMode=cv2.BORDER_REFLECT)
        for on, processor in processors.items():
            result = processor.step(Frame(image, i, 0, i / 25), cars(BOXES + np.tile(offset, 2)))
            ids[on] += result.tracks.ids.tolist()
    assert ids[True] == [1, 2, 3] * 12
    assert len(ids[False]) < 12
