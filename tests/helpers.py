"""Helpers the test files share: running the command line, reading its outputs, parity of detections,
servers on loopback. Not tests themselves; nothing here is imported by the package."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from perception.core.config import Config
from perception.core.events import parse_event
from perception.core.types import Detections
from perception.detect.labels import COCO_NAMES
from perception.track.tracker import iou_matrix
from tests.conftest import HIGHWAY_CLIP, YOLOX_ONNX

ULTRA_ANCHORS = 200
ULTRA_NAMES = str(dict(enumerate(COCO_NAMES)))  # "{0: 'person', 1: 'bicycle', 2: 'car', ...}", as exported


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout_s:g} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_one_line_error(
    proc: subprocess.CompletedProcess[str], *needles: str, mid_run: bool = False
) -> None:
    """Failing at start-up prints exactly one line; failing mid-run, the progress lines before it
    stay, and the error is the last line. Never a traceback."""
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    if not mid_run:
        assert len(lines) == 1, proc.stderr
    assert [line for line in lines if line.startswith("error: ")] == [lines[-1]], proc.stderr
    for needle in needles:
        assert needle in lines[-1]


def box_iou(a: list[float], b: list[float]) -> float:
    return float(iou_matrix(np.array([a], np.float64), np.array([b], np.float64))[0, 0])


def video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """Decode the whole file: counts frames a player would show, not what the header claims."""
    cap = cv2.VideoCapture(str(path))
    count, size = 0, (0, 0)
    while True:
        ok, image = cap.read()
        if not ok:
            break
        count += 1
        size = image.shape[:2]
    cap.release()
    return count, size


def read_events(path: Path) -> list[dict]:
    """Every line of an events.jsonl, each checked against the schema in perception/core/events.py."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        try:
            parse_event(line)
        except ValueError as exc:
            raise AssertionError(f"{path}:{number} does not match the events schema: {exc}") from None
    return [json.loads(line) for line in lines]


def run_cli(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "perception.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


HIGHWAY_FRAMES = 221


def ultra_output(entries: list[tuple[float, float, float, float, int, float]]) -> np.ndarray:
    """(cx, cy, w, h, class, score) per anchor in input pixels -> 1 x 84 x A raw output."""
    raw = np.zeros((1, 84, ULTRA_ANCHORS), np.float32)
    for anchor, (cx, cy, w, h, cls, score) in enumerate(entries):
        raw[0, :4, anchor * 7 + 3] = (cx, cy, w, h)
        raw[0, 4 + cls, anchor * 7 + 3] = score
        # a weaker second class on the same anchor must not win the argmax
        raw[0, 4 + (cls + 1) % 80, anchor * 7 + 3] = score / 3
    return raw


def constant_output_model(path: Path, output: np.ndarray, names: str | None = ULTRA_NAMES) -> Path:
    """A valid ONNX graph: input `images` 1x3x640x640, output = constant + 0 * sum(images)."""
    out_shape = list(output.shape)
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["images"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["boxes", "nothing"], ["output0"]),
        ],
        "constant_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=[
            numpy_helper.from_array(output.astype(np.float32), "boxes"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if names is not None:
        helper.set_model_props(model, {"names": names, "task": "detect", "imgsz": "[640, 640]"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def with_detector(cfg: Config, **update: object) -> Config:
    return cfg.model_copy(update={"detector": cfg.detector.model_copy(update=update)})


def assert_parity(a: Detections, b: Detections, conf_threshold: float) -> int:
    """Every box clearly above the threshold in either result has its twin in the other. A box within
    MAX_SCORE_DIFF of the threshold may fall on either side of it, so it may go unmatched. Returns the
    number of matched boxes."""
    pairs = matched_pairs(a, b)
    for x, side in ((a, 0), (b, 1)):
        matched = {p[side] for p in pairs}
        clear = np.flatnonzero(x.scores > conf_threshold + MAX_SCORE_DIFF)
        missing = [i for i in clear if i not in matched]
        assert not missing, (
            f"{len(missing)} of {len(clear)} boxes of result {'ab'[side]} have no twin: "
            f"{x.boxes_xyxy[missing].round(1).tolist()} scores {x.scores[missing].round(3).tolist()}"
        )
    return len(pairs)


def matched_pairs(a: Detections, b: Detections) -> list[tuple[int, int]]:
    """One-to-one pairs (i in a, j in b) of the same label with IoU >= 0.95 and scores within 0.02,
    greedily by IoU."""
    iou = iou_matrix(a.boxes_xyxy, b.boxes_xyxy)
    ok = (
        (iou >= MIN_IOU)
        & (a.label_ids[:, None] == b.label_ids[None, :])
        & (np.abs(a.scores[:, None] - b.scores[None, :]) <= MAX_SCORE_DIFF)
    )
    pairs, used_a, used_b = [], set(), set()
    for flat in np.argsort(-np.where(ok, iou, -1), axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if not ok[i, j]:
            break
        if i not in used_a and j not in used_b:
            pairs.append((int(i), int(j)))
            used_a.add(i)
            used_b.add(j)
    return pairs


MIN_IOU, MAX_SCORE_DIFF = 0.95, 0.02


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def health(events: list[dict], state: str | None = None) -> list[dict]:
    return [e for e in events if e["type"] == "source" and (state is None or e["state"] == state)]


def frames_of(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "frame"]


class Run:
    """`perception run` in the background, with its events followed as they are written."""

    def __init__(self, source: str | Path | list[str], out: Path, *extra: str | Path) -> None:
        self.out = out
        self.events_path = out / "events.jsonl"
        self.stderr_path = out.parent / f"{out.name}.stderr"
        out.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = self.stderr_path.open("w")
        sources = [str(s) for s in source] if isinstance(source, list) else [str(source)]
        cmd = [sys.executable, "-m", "perception.cli", "run", *sources, "--model", str(YOLOX_ONNX)]
        self.proc = subprocess.Popen([*cmd, "--out", str(out), *map(str, extra)], stderr=self._stderr)

    def events(self, path: Path | None = None) -> list[dict]:
        """Complete lines only: the last one may be half-written. `path`: another stream's log."""
        path = path or self.events_path
        if not path.exists():
            return []
        text = path.read_text()
        return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines()]

    def wait_for(
        self, what: str, predicate: Callable[[list[dict]], bool], path: Path | None = None
    ) -> list[dict]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            events = self.events(path)
            if predicate(events):
                return events
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"gave up waiting for {what}; stderr:\n{self.stderr_path.read_text()}")

    def finish(self, sig: int | None = None) -> tuple[int, str]:
        if sig is not None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=WAIT_S)
        finally:
            self.kill()
        return code, self.stderr_path.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._stderr.close()


WAIT_S = 90  # deadline for anything a test waits on; generous, as CI machines are shared


def short_clip(path: Path, frames: int) -> Path:
    """The first frames of the real clip, re-encoded (both backends read the same file)."""
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (960, 540))
    for _ in range(frames):
        ok, image = cap.read()
        assert ok
        writer.write(image)
    writer.release()
    cap.release()
    return path


def assert_same_detections(got: Detections, want: Detections) -> None:
    """One to one, each box matched at IoU >= 0.95 with the same label and a score within 0.02."""
    assert len(got) == len(want)
    if len(want) == 0:
        return
    iou = iou_matrix(got.boxes_xyxy, want.boxes_xyxy)
    match = iou.argmax(1)
    assert sorted(match.tolist()) == list(range(len(want)))
    assert iou[np.arange(len(got)), match].min() >= 0.95
    assert np.array_equal(got.label_ids, want.label_ids[match])
    assert np.abs(got.scores - want.scores[match]).max() <= 0.02


def clip_frames(step: int = 20) -> list[np.ndarray]:
    """Every `step`-th frame of the real highway clip."""
    cap = cv2.VideoCapture(str(HIGHWAY_CLIP))
    frames, index = [], 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(image)
        index += 1
    cap.release()
    return frames


def video_timestamps_s(path: Path) -> list[float]:
    """Presentation time of every frame of a video, in seconds from its first, as a player shows them."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        times = [float(frame.pts * frame.time_base) for frame in container.decode(stream)]
    return [t - times[0] for t in times] if times else []


def wait_ready(proc: subprocess.Popen, timeout_s: float) -> str:
    """The first line a server prints on stdout (its `ready ...`), read with a deadline: a server that hangs
    at start cannot hang the test. Empty when none came in time."""
    ready: list[str] = []
    reader = threading.Thread(target=lambda: ready.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return ready[0] if ready else ""
