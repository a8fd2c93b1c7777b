"""`--backend triton` against a real Triton server on loopback (tests/triton_server.py: the tritonserver of
the nvidia-pytriton wheel) serving repositories that `perception triton-repo` wrote: detections equal to
ONNX Runtime's on real frames, over gRPC and HTTP; layout, names and input size taken from the server; its
dynamic batcher at work; a server killed mid-run and restarted; an unreachable one."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http

from perception.core.config import Config, load_config
from perception.detect import create_detector
from perception.detect.labels import COCO_NAMES
from perception.detect.triton.backend import TritonDetector
from perception.track.tracker import iou_matrix
from tests.conftest import HIGHWAY_CLIP, YOLOX_ONNX
from tests.helpers import (
    assert_one_line_error,
    assert_same_detections,
    clip_frames,
    read_events,
    run_cli,
    short_clip,
)
from tests.triton_harness import WAIT_S, TritonServer, free_port, require_triton, write_repo, yolox_variant

KIND = "integration"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """yolox_nano as the command writes it by default; yolox_named (Ultralytics-style names, 'car' called
    'automobile') at 384x640; yolox_batched with a long batching window; yolox_static with a fixed batch."""
    require_triton()
    tmp = tmp_path_factory.mktemp("triton-repo")
    repo = tmp / "repo"
    names = dict(enumerate(COCO_NAMES)) | {2: "automobile"}
    write_repo(repo, YOLOX_ONNX)
    write_repo(repo, yolox_variant(tmp / "yolox_named.onnx", names=names), "--imgsz", "384", "640")
    write_repo(
        repo, YOLOX_ONNX, "--name", "yolox_batched", "--imgsz", "384", "640", "--max-queue-delay-us", "300000"
    )
    write_repo(repo, yolox_variant(tmp / "yolox_static.onnx", static_hw=(384, 640)))
    return repo


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[TritonServer]:
    triton = TritonServer(repository, repository.parent / "server.log")
    triton.start()
    try:
        yield triton
    finally:
        triton.kill()


def triton_config(url: str, **detector: object) -> Config:
    return load_config(overrides={"detector": {"backend": "triton", "triton_url": url, **detector}})


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_same_detections_as_onnxruntime_on_the_clip(server: TritonServer, cfg: Config, protocol: str) -> None:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    triton = create_detector(YOLOX_ONNX, triton_config(url))
    direct = create_detector(YOLOX_ONNX, cfg)
    assert isinstance(triton, TritonDetector) and triton.backend == "triton"
    assert (triton.layout, triton.input_hw, triton.class_names) == (
        direct.layout,
        direct.input_hw,
        direct.class_names,
    )
    total = 0
    for image in clip_frames():
        want = direct.detect(image)
        assert_same_detections(triton.detect(image), want)
        total += len(want)
    assert total >= 30  # cars on every frame: the comparison covered real boxes
    assert set(triton.timings_ms) == {"preprocess", "inference", "postprocess"}
    triton.close()


def test_layout_names_and_input_size_come_from_the_server(
    server: TritonServer, highway_frame: np.ndarray
) -> None:
    """The config asks for 448x800 and knows no 'automobile': the server's model config decides."""
    classes = load_config().classes | {"vehicle": ["automobile", "bus", "truck", "train"]}
    cfg = load_config(
        overrides={
            "detector": {"backend": "triton", "triton_url": server.grpc_url, "triton_model": "yolox_named"},
            "classes": classes,
        }
    )
    detector = create_detector("ignored-when-triton_model-is-set.onnx", cfg)
    assert detector.model == "yolox_named"
    assert detector.input_hw == (384, 640) and detector.layout == "yolox"
    assert detector.class_names[2] == "automobile" and detector.class_names[0] == "person"
    det = detector.detect(highway_frame)
    vehicle = cfg.labels.index("vehicle")
    assert (det.label_ids == vehicle).sum() >= 3
    assert {detector.class_names[c] for c in det.class_ids[det.label_ids == vehicle]} >= {"automobile"}


def test_fixed_batch_model_served_without_batching(server: TritonServer, highway_frame: np.ndarray) -> None:
    detector = create_detector("yolox_static.onnx", triton_config(server.http_url))
    ref = create_detector(YOLOX_ONNX, load_config(overrides={"detector": {"input_size": [384, 640]}}))
    assert detector.input_hw == (384, 640)
    assert_same_detections(detector.detect(highway_frame), ref.detect(highway_frame))


def test_dynamic_batcher_runs_concurrent_requests_together(
    server: TritonServer, highway_frame: np.ndarray
) -> None:
    """Four handles (fork(): a connection each) send at once; Triton runs them in fewer executions."""
    first = create_detector("yolox_batched", triton_config(server.grpc_url), requests=4)
    handles = [first, *(first.fork() for _ in range(3))]
    want = len(first.detect(highway_frame))
    stats_client = triton_http.InferenceServerClient(f"127.0.0.1:{server.http_port}", network_timeout=WAIT_S)

    def stats() -> tuple[int, int]:
        s = stats_client.get_inference_statistics("yolox_batched")["model_stats"][0]
        return s["inference_count"], s["execution_count"]

    inferences0, executions0 = stats()
    barrier = threading.Barrier(len(handles), timeout=WAIT_S)
    counts: list[int] = []

    def send(handle: TritonDetector) -> None:
        for _ in range(3):
            barrier.wait()
            counts.append(len(handle.detect(highway_frame)))

    threads = [threading.Thread(target=send, args=(h,), daemon=True) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert counts == [want] * 12
    # Triton counts an execution once its responses are sent: the last may land a moment after the reply
    deadline = time.monotonic() + WAIT_S
    while (inferences := stats()[0]) - inferences0 < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    inferences, executions = stats()
    assert inferences - inferences0 == 12
    assert executions - executions0 < 12  # batched: fewer model executions than requests
    stats_client.close()


def test_unknown_model_and_unreachable_server_are_one_line_errors(
    server: TritonServer, tmp_path: Path
) -> None:
    config = tmp_path / "triton.yaml"
    config.write_text(
        f"detector:\n  backend: triton\n  triton_url: {server.grpc_url}\n  triton_model: nope\n"
    )
    proc = run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--config", config, "--out", tmp_path / "a")
    assert_one_line_error(proc, f"Triton server {server.grpc_url} has no model 'nope'", "yolox_nano")

    for scheme in ("grpc", "http"):
        url = f"{scheme}://127.0.0.1:{free_port()}"
        config.write_text(
            f"detector:\n  backend: triton\n  triton_url: {url}\n"
            "source:\n  connect_attempts: 2\n  backoff_initial_s: 0.1\n"
        )
        started = time.monotonic()
        proc = run_cli(
            "run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--config", config, "--out", tmp_path / scheme
        )
        assert_one_line_error(proc, f"cannot reach Triton server {url}", "2 attempts")
        assert time.monotonic() - started < WAIT_S
        assert not (tmp_path / scheme / "events.jsonl").exists()

    config.write_text("detector:\n  triton_url: ftp://127.0.0.1:1\n")
    proc = run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--config", config, "--out", tmp_path / "b")
    assert_one_line_error(proc, "detector.triton_url", "grpc://HOST:PORT")


def test_run_with_triton_gives_the_tracks_of_onnxruntime(server: TritonServer, tmp_path: Path) -> None:
    clip = short_clip(tmp_path / "clip.mp4", 60)
    config = tmp_path / "triton.yaml"
    config.write_text(f"detector:\n  triton_url: {server.http_url}\n")
    runs = {}
    for backend in ("triton", "onnxruntime"):
        out = tmp_path / backend
        proc = run_cli(
            "run", clip, "--model", YOLOX_ONNX, "--backend", backend, "--config", config, "--out", out
        )
        assert proc.returncode == 0, proc.stderr
        runs[backend] = read_events(out / "events.jsonl")
    assert runs["triton"][0]["backend"] == "triton"
    frames = {b: [e for e in events if e["type"] == "frame"] for b, events in runs.items()}
    assert len(frames["triton"]) == len(frames["onnxruntime"]) == 60
    tracked = 0
    for got, want in zip(frames["triton"], frames["onnxruntime"], strict=True):
        assert [t["id"] for t in got["tracks"]] == [t["id"] for t in want["tracks"]]
        for a, b in zip(got["tracks"], want["tracks"], strict=True):
            assert a["label"] == b["label"]
            assert iou_matrix(np.array([a["box"]]), np.array([b["box"]]))[0, 0] >= 0.95
            tracked += 1
    assert tracked >= 100
