"""Camera motion compensation in the tracker: the identity changes nothing, a warp moves every filter with
the image, and a shaking camera no longer breaks tracks."""

from __future__ import annotations

import numpy as np

from perception.core.config import TrackerConfig
from perception.core.types import Detections
from perception.track.tracker import KalmanBank, Tracker, xyxy_to_cxcywh

KIND = "unit"


def boxes_to_dets(boxes: np.ndarray) -> Detections:
    n = len(boxes)
    return Detections(
        boxes.astype(np.float32),
        np.full(n, 0.9, np.float32),
        np.full(n, 2, np.int32),
        np.full(n, 2, np.int32),
    )


def a_bank() -> KalmanBank:
    bank = KalmanBank(TrackerConfig())
    bank.add(xyxy_to_cxcywh(np.array([[100.0, 100, 140, 130], [500, 200, 600, 280]])))
    bank.x[:, 4:] = [[3.0, -1.0, 0.2, 0.1], [-5.0, 2.0, 0.0, 0.3]]
    bank.predict(0.04)
    return bank


def test_identity_warp_changes_nothing() -> None:
    bank = a_bank()
    x, p = bank.x.copy(), bank.P.copy()
    bank.warp(np.eye(2, 3))
    assert np.array_equal(bank.x, x) and np.array_equal(bank.P, p)


def test_warp_moves_centres_turns_velocities_and_scales_sizes() -> None:
    bank = a_bank()
    x, p = bank.x.copy(), bank.P.copy()
    angle, scale = np.radians(2.0), 1.05
    a = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    warp = np.hstack((a, [[7.0], [-3.0]]))
    bank.warp(warp)
    assert np.allclose(bank.x[:, :2], x[:, :2] @ a.T + warp[:, 2])
    assert np.allclose(bank.x[:, 4:6], x[:, 4:6] @ a.T)
    assert np.allclose(bank.x[:, 2:4], scale * x[:, 2:4]) and np.allclose(bank.x[:, 6:8], scale * x[:, 6:8])
    # The position uncertainty turns with the image and grows with its scale.
    assert np.allclose(
        np.trace(bank.P[:, :2, :2], axis1=1, axis2=2), scale**2 * np.trace(p[:, :2, :2], axis1=1, axis2=2)
    )
    assert np.allclose(bank.P, bank.P.transpose(0, 2, 1))


def shaken_run(compensate: bool, seed: int = 3, frames: int = 40) -> set[int]:
    """Three parked cars seen by a camera shaking by up to 40 px a frame; the IDs reported."""
    rng = np.random.default_rng(seed)
    cars = np.array([[200.0, 300, 260, 340], [420, 280, 470, 315], [700, 310, 780, 360]])
    tracker, offset, ids = Tracker(), np.zeros(2), set()
    for i in range(frames):
        step = rng.uniform(-40, 40, 2)
        offset += step
        if compensate and i:
            tracker.apply_camera_motion(np.hstack((np.eye(2), step[:, None])))
        boxes = cars + np.tile(offset, 2) + rng.normal(0, 0.5, cars.shape)
        ids.update(tracker.update(boxes_to_dets(boxes), i / 25.0).ids.tolist())
    return ids


def test_compensation_keeps_ids_on_a_shaking_camera() -> None:
    assert shaken_run(compensate=True) == {1, 2, 3}
    assert len(shaken_run(compensate=False)) > 3  # the same run without it loses its tracks
