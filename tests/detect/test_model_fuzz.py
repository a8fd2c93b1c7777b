"""Models that misbehave (the model half of issue 24's fuzzing): outputs full of NaN or infinities, boxes
with negative or absurd sizes, a NaN score beside a valid one, and wrongly shaped outputs. Each either
detects nothing wrong (finite boxes inside the frame, or none) or is refused with one line at load; never
an exception from decoding, NMS or the tracker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.core.types import Frame
from perception.detect import create_detector
from perception.runtime.processor import build_processor
from tests.helpers import ULTRA_ANCHORS, constant_output_model, with_detector

KIND = "integration"


def _ultra(fill: float = 0.0, **columns: float) -> np.ndarray:
    out = np.full((1, 84, ULTRA_ANCHORS), fill, np.float32)
    for index, value in columns.items():
        out[0, int(index[1:])] = value  # c0..c83: box centre x, y, width, height, then class scores
    return out


RUNS = {
    "all_nan": _ultra(np.nan),
    "infinite_boxes": _ultra(c0=np.inf, c1=np.inf, c2=np.inf, c3=np.inf, c4=0.9),
    "negative_sizes": _ultra(c0=300, c1=300, c2=-50, c3=-50, c4=0.9),
    "nan_beside_a_valid_score": _ultra(c0=300, c1=300, c2=50, c3=50, c4=np.nan, c5=0.9),
    "absurd_sizes": _ultra(c0=300, c1=300, c2=1e30, c3=1e30, c4=0.99),
    "scores_above_one": _ultra(c0=300, c1=300, c2=50, c3=50, c4=7.0),
}
REFUSED = {
    "no_anchors": (np.zeros((1, 84, 0), np.float32), "too few columns"),
    "rank_2": (np.zeros((84, ULTRA_ANCHORS), np.float32), "expected 3 dimensions"),
    "rank_4": (np.zeros((1, 1, 84, ULTRA_ANCHORS), np.float32), "expected 3 dimensions"),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_misbehaving_model_never_breaks_the_pipeline(
    name: str, tmp_path: Path, cfg: Config, highway_frame: np.ndarray
) -> None:
    model = constant_output_model(tmp_path / f"{name}.onnx", RUNS[name])
    detector = create_detector(model, with_detector(cfg, backend="onnxruntime"))
    processor = build_processor(cfg)
    h, w = highway_frame.shape[:2]
    for index in range(3):
        detections = detector.detect(highway_frame)
        assert np.isfinite(detections.boxes_xyxy).all() and np.isfinite(detections.scores).all()
        b = detections.boxes_xyxy
        assert ((b[:, 0] >= 0) & (b[:, 2] <= w) & (b[:, 1] >= 0) & (b[:, 3] <= h)).all()
        result = processor.step(Frame(highway_frame, index, index, index / 25), detections)
        assert np.isfinite(result.tracks.boxes_xyxy).all()
    detector.close()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_wrongly_shaped_output_is_refused_in_one_line(name: str, tmp_path: Path, cfg: Config) -> None:
    output, said = REFUSED[name]
    model = constant_output_model(tmp_path / f"{name}.onnx", output)
    with pytest.raises(PerceptionError, match=said) as caught:
        create_detector(model, with_detector(cfg, backend="onnxruntime"))
    assert "\n" not in str(caught.value)
