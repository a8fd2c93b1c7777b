"""Detection with several requests in flight: same results, same order, as one request at a time."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.core.config import Config, load_config
from perception.core.errors import DetectorUnavailable, PerceptionError
from perception.core.types import Frame, FrameResult
from perception.detect import create_detector, inference_requests
from perception.runtime.pipeline import Pipeline, StageError, Stream
from perception.runtime.processor import build_processor
from perception.sources.files import open_source
from tests.conftest import HIGHWAY_CLIP, YOLOX_ONNX

KIND = "integration"

FRAMES = 60
SMALL = {"detector": {"input_size": [384, 640]}}


class FirstFrames:
    """The first `limit` frames of a real source."""

    def __init__(self, spec: Path, cfg: Config, limit: int) -> None:
        self._source = open_source(str(spec), cfg.source)
        self.name, self.is_live, self.fps = self._source.name, False, self._source.fps
        self.frame_count, self._left = limit, limit

    def read(self) -> Frame | None:
        if self._left == 0:
            return None
        self._left -= 1
        return self._source.read()

    def close(self) -> None:
        self._source.close()


class Recorder:
    """Keeps what tracking and TTC produced for each frame, in arrival order."""

    def __init__(self) -> None:
        self.frames: list[int] = []
        self.tracks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def write(self, result: FrameResult) -> None:
        t = result.tracks
        self.frames.append(result.frame.index)
        self.tracks.append((t.ids.copy(), t.boxes_xyxy.copy(), t.ttc_s.copy()))

    def close(self) -> None:
        pass


def run_pipeline(cfg: Config, requests: int, detector=None) -> Recorder:
    detector = detector or create_detector(YOLOX_ONNX, cfg, requests)
    recorder = Recorder()
    Pipeline(
        detector, cfg, [Stream(FirstFrames(HIGHWAY_CLIP, cfg, FRAMES), build_processor(cfg), [recorder])]
    ).run()
    return recorder


@pytest.fixture(scope="module")
def small_cfg() -> Config:
    return load_config(None, SMALL)


@pytest.fixture(scope="module")
def one_request(small_cfg: Config) -> Recorder:
    return run_pipeline(small_cfg, 1)


def test_two_requests_give_the_same_tracks_in_frame_order(small_cfg: Config, one_request: Recorder) -> None:
    two = run_pipeline(small_cfg, 2)
    assert one_request.frames == list(range(FRAMES))
    assert two.frames == list(range(FRAMES))  # handed on in order, none lost
    assert sum(len(ids) for ids, _, _ in two.tracks) > FRAMES  # cars were tracked: a real comparison
    for (ids1, boxes1, ttc1), (ids2, boxes2, ttc2) in zip(one_request.tracks, two.tracks, strict=True):
        np.testing.assert_array_equal(ids2, ids1)
        np.testing.assert_allclose(boxes2, boxes1, atol=1e-3)
        np.testing.assert_allclose(ttc2, ttc1, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_forks_detect_concurrently_like_one_detector(small_cfg: Config, backend: str) -> None:
    """Each fork has its own letterbox buffer (and OpenVINO request): frames detected at the same time on
    two threads give what one detector gives for each."""
    cfg = small_cfg.model_copy(
        update={"detector": small_cfg.detector.model_copy(update={"backend": backend})}
    )
    detector = create_detector(YOLOX_ONNX, cfg, requests=2)
    twin = detector.fork()
    assert twin.decoder.letterbox.tensor is not detector.decoder.letterbox.tensor
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    images = [cap.read()[1] for _ in range(12)]
    cap.release()
    expected = [detector.detect(image) for image in images]
    got: dict[int, object] = {}

    def work(lane, indices: range) -> None:
        for i in indices:
            got[i] = lane.detect(images[i])

    threads = [
        threading.Thread(target=work, args=(d, range(k, 12, 2))) for k, d in enumerate((detector, twin))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, want in enumerate(expected):
        assert len(want) > 0
        np.testing.assert_allclose(got[i].boxes_xyxy, want.boxes_xyxy, atol=1e-3)
        np.testing.assert_array_equal(got[i].label_ids, want.label_ids)


class FailsOnFrame:
    """A real detector whose forks fail at the n-th frame they see (fault injection), with `error`."""

    def __init__(
        self, detector, fail_at: int | range, error: type[PerceptionError] = PerceptionError
    ) -> None:
        self._detector, self._fail_at, self._seen, self._error = detector, fail_at, 0, error
        self.backend, self.class_names = detector.backend, detector.class_names
        self.input_hw, self.layout, self.requests = detector.input_hw, detector.layout, detector.requests

    def detect(self, image: np.ndarray):
        self._seen += 1
        if self._seen == self._fail_at or (isinstance(self._fail_at, range) and self._seen in self._fail_at):
            raise self._error("model inference failed (injected)")
        return self._detector.detect(image)

    max_batch = 1

    def detect_batch(self, images: list[np.ndarray]):
        return [self.detect(image) for image in images]

    def fork(self) -> FailsOnFrame:
        return FailsOnFrame(self._detector.fork(), self._fail_at, self._error)

    def close(self) -> None:
        self._detector.close()


def test_a_failing_request_ends_the_run_with_its_error(small_cfg: Config) -> None:
    detector = FailsOnFrame(create_detector(YOLOX_ONNX, small_cfg, requests=2), fail_at=5)
    recorder = Recorder()
    stream = Stream(FirstFrames(HIGHWAY_CLIP, small_cfg, FRAMES), build_processor(small_cfg), [recorder])
    pipeline = Pipeline(detector, small_cfg, [stream])
    with pytest.raises(StageError, match="detect: model inference failed"):
        pipeline.run()
    assert recorder.frames == list(range(len(recorder.frames)))  # what was handed on was in order
    assert len(recorder.frames) < FRAMES


def test_frames_a_remote_detector_cannot_take_are_dropped_and_counted(small_cfg: Config) -> None:
    """A remote detector whose server is down (DetectorUnavailable, the live policy) costs those frames,
    counted, and the run goes on in order with the rest."""
    detector = FailsOnFrame(create_detector(YOLOX_ONNX, small_cfg), range(5, 9), DetectorUnavailable)
    recorder = Recorder()
    stream = Stream(FirstFrames(HIGHWAY_CLIP, small_cfg, FRAMES), build_processor(small_cfg), [recorder])
    summary = Pipeline(detector, small_cfg, [stream]).run()
    assert summary.frames_detector_unavailable == 4 == stream.summary.frames_detector_unavailable
    assert recorder.frames == [i for i in range(FRAMES) if i not in range(4, 8)]  # frames 5th to 8th lost
    assert summary.frames_processed == FRAMES - 4


def test_inference_requests_by_mode(cfg: Config) -> None:
    assert inference_requests(cfg.detector, throughput=False) == 1
    assert inference_requests(cfg.detector, throughput=True) == min(2, os.cpu_count() or 1)
    three = cfg.detector.model_copy(update={"requests": 3})
    assert inference_requests(three, throughput=False) == 3
    assert create_detector(YOLOX_ONNX, cfg, requests=3).requests == 3


@pytest.mark.unit
def test_requests_out_of_range_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("detector:\n  requests: -1\n")
    with pytest.raises(PerceptionError, match="detector.requests"):
        load_config(bad)
