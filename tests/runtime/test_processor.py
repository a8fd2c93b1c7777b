"""The frame processor: one object per stream from detections to threats, IDs unique across restarts."""

from __future__ import annotations

import numpy as np

from perception.core.config import Config
from perception.core.events import Stage, WarningLevel
from perception.core.types import Detections, Frame
from perception.runtime.processor import build_processor

KIND = "unit"


def frame(index: int, hw: tuple[int, int] = (540, 960), fps: float = 25.0) -> Frame:
    return Frame(np.zeros((*hw, 3), np.uint8), index, 0, index / fps)


def cars(boxes: list[list[float]]) -> Detections:
    n = len(boxes)
    return Detections(
        np.array(boxes, np.float32).reshape(n, 4),
        np.full(n, 0.9, np.float32),
        np.full(n, 2, np.int32),  # COCO car
        np.full(n, Config().labels.index("vehicle"), np.int32),
    )


def test_every_column_filled_and_stages_timed() -> None:
    processor = build_processor()
    result = processor.step(frame(0), cars([[400, 300, 480, 360], [700, 280, 760, 330]]))
    tracks = result.tracks
    assert len(tracks) == 2 and tracks.ids.tolist() == [1, 2]  # in view at start-up: confirmed at once
    for column in (tracks.ttc_s, tracks.ttc_std_s, tracks.dist_m, tracks.in_path):
        assert len(column) == 2
    assert np.isfinite(tracks.dist_m).all()  # ranged on the dashcam profile
    assert np.isnan(tracks.ttc_s).all()  # one frame: no history yet
    assert set(result.latency_ms) == {Stage.TRACK, Stage.TTC}
    assert result.warning.level is WarningLevel.NONE and result.events == []


def test_restart_at_another_resolution_keeps_ids_unique() -> None:
    """A stream that comes back at another size: boxes and histories in pixels mean nothing any more, so
    tracking restarts, and the new IDs continue above every ID already reported."""
    processor = build_processor()
    box = [[400, 300, 480, 360]]
    seen = [processor.step(frame(i), cars(box)).tracks.ids.tolist() for i in range(5)]
    assert seen == [[1]] * 5
    restarted = [
        processor.step(frame(i, (270, 480)), cars([[200, 150, 240, 180]])).tracks for i in range(5, 8)
    ]
    assert [t.ids.tolist() for t in restarted] == [[2]] * 3  # not 1 again: ID 1 named another object
    np.testing.assert_allclose(restarted[-1].boxes_xyxy, [[200, 150, 240, 180]], atol=1)  # old box forgotten


def test_boxes_clipped_to_the_frame_except_when_tracking_only() -> None:
    """Filtered boxes can run past the image; the runtime clips them (drawing, ranging), MOT scoring keeps
    the raw estimate, since ground truth extends past the border too."""
    outside = [[-30, 100, 50, 200]]
    clipped = build_processor().step(frame(0), cars(outside)).tracks
    assert clipped.boxes_xyxy[0, 0] == 0
    raw = build_processor(threats=False).step(frame(0), cars(outside)).tracks
    assert raw.boxes_xyxy[0, 0] < 0
    assert np.isnan(raw.dist_m).all() and not raw.in_path.any()  # tracking only: no estimates
