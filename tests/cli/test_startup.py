"""Start-up, as a new user and as an adversary meet it: every mistake found before the model loads where it
can be, named in one line; Ctrl-C (SIGTERM) at any moment exits 130 (143) without a traceback; causes named
as they are (HTTP status codes, OpenVINO's real message, a folder without a model); image folders in
natural order."""

from __future__ import annotations

import http.server
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception.core.config import load_config
from perception.sources.files import open_source
from tests.cli.test_cli import assert_one_line_error
from tests.conftest import ASSETS, HIGHWAY_CLIP, YOLOX_ONNX
from tests.helpers import read_events, run_cli

KIND = "unit"

WAIT_S = 120
OPENVINO_MODEL = ASSETS / "models" / "yolov8n_int8_openvino_model"
STILL = ASSETS / "images" / "udacity_highway" / "solidWhiteCurve.jpg"


# -- flags and display, before anything is opened -----------------------------------------------------------


@pytest.mark.parametrize("fps", ["nan", "inf", "-inf", "-5", "0"])
def test_fps_must_be_positive_and_finite(tmp_path: Path, fps: str) -> None:
    proc = run_cli("run", tmp_path, "--model", YOLOX_ONNX, "--out", tmp_path / "out", f"--fps={fps}")
    assert_one_line_error(proc, "--fps must be a positive number of frames per second")
    assert not (tmp_path / "out").exists()


def test_show_without_a_display_fails_at_start(tmp_path: Path) -> None:
    """Checked before the model (which does not exist here) and before any output is made."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    absent = tmp_path / "absent.onnx"
    cmd = [sys.executable, "-m", "perception.cli", "run", str(HIGHWAY_CLIP), "--model", str(absent)]
    cmd += ["--out", str(tmp_path / "out"), "--show"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_S, env=env)
    assert_one_line_error(proc, "--show needs a display", "DISPLAY")
    # a display named but not there (no X server on :97 here) would abort inside Qt: found first instead
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=WAIT_S, env={**env, "DISPLAY": ":97"})
    assert_one_line_error(proc, "--show: no display answers at DISPLAY=:97")
    assert not (tmp_path / "out").exists()


def test_config_read_as_utf8_and_strictly(tmp_path: Path) -> None:
    absent = tmp_path / "absent.onnx"  # all of these are refused before the model is looked for
    cases = {
        b"detector:\n  conf_threshold: 0.5 # \xff\xfe\n": "not UTF-8 text (byte 0xff at offset 34)",
        b"detector:\n  conf_threshold: true\n": "detector.conf_threshold: Input should be a valid number",
        b"tracker:\n  max_lost_s: '2'\n": "tracker.max_lost_s: Input should be a valid number (got '2')",
        b"tracker:\n  max_lost_s: .inf\n": "tracker.max_lost_s: Input should be a finite number",
        b"camera:\n  profile: nowhere\n": "camera.profile: camera profile not found: nowhere",
    }
    for i, (text, needle) in enumerate(cases.items()):
        config = tmp_path / f"c{i}.yaml"
        config.write_bytes(text)
        proc = run_cli("run", HIGHWAY_CLIP, "--model", absent, "--out", tmp_path / "out", "--config", config)
        assert_one_line_error(proc, str(config), needle)


# -- Ctrl-C at any moment ----------------------------------------------------------------------------------


def _mapped(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


MOMENTS = {  # (the interpreter's own start, before any of our code runs, is not ours to handle)
    "importing numpy": lambda proc, out: _mapped(proc.pid, "numpy"),
    "importing scipy": lambda proc, out: _mapped(proc.pid, "scipy"),
    "importing opencv": lambda proc, out: _mapped(proc.pid, "cv2"),
    "loading the model": lambda proc, out: _mapped(proc.pid, "libopenvino"),
    "log open": lambda proc, out: (out / "events.jsonl").exists(),
    "running": lambda proc, out: (
        (out / "events.jsonl").exists() and '"type": "frame"' in (out / "events.jsonl").read_text()
    ),
}


@pytest.mark.integration
@pytest.mark.parametrize("moment", list(MOMENTS))
@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["INT", "TERM"]
)
def test_ctrl_c_or_sigterm_at_any_moment_exits_without_a_traceback(
    tmp_path: Path, moment: str, signum: int, code: int
) -> None:
    """SIGINT (130) or SIGTERM (143, as `docker stop` sends it) the moment the process reaches each stage of
    start-up (seen from outside: the libraries it has mapped, the files it has made), and while it runs.
    Some of these land inside a C extension's own set-up, which swallows the KeyboardInterrupt or turns it
    into its own error: still the signal's code, and a log once open still ends."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "perception.cli", "run", str(HIGHWAY_CLIP), "--model", str(YOLOX_ONNX)]
        + ["--backend", "openvino", "--out", str(out)],  # OpenVINO: the longest model load there is here
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + WAIT_S
    while not MOMENTS[moment](proc, out):
        assert proc.poll() is None and time.monotonic() < deadline, f"never reached: {moment}"
        time.sleep(0.002)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    if (out / "events.jsonl").exists():  # once the log is open, it ends
        events = read_events(out / "events.jsonl")
        assert events[-1]["type"] == "end" and events[-1]["status"] == "interrupted"


# -- causes named ----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_openvino_model_without_its_weights_names_the_cause(tmp_path: Path) -> None:
    model = tmp_path / "yolov8n_openvino_model"
    model.mkdir()
    for src in OPENVINO_MODEL.iterdir():
        if src.suffix != ".bin":
            shutil.copy(src, model / src.name)
    proc = run_cli("run", HIGHWAY_CLIP, "--model", model, "--out", tmp_path / "out")
    assert_one_line_error(proc, "cannot load model", "bin file cannot be found")
    assert "Exception from" not in proc.stderr  # OpenVINO's source locations are not the cause


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["openvino", "auto"])
def test_openvino_model_that_is_not_xml_is_one_line(tmp_path: Path, backend: str) -> None:
    """An IR whose .xml is garbage (a failed copy): only the IR reader's own cause, in one line; offered to
    every OpenVINO frontend in turn, TensorFlow's printed its parse errors first (4 to 8 lines)."""
    model = tmp_path / "yolov8n_openvino_model"
    shutil.copytree(OPENVINO_MODEL, model)
    xml = next(model.glob("*.xml"))
    xml.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    proc = run_cli("run", HIGHWAY_CLIP, "--model", model, "--backend", backend, "--out", tmp_path / "out")
    assert_one_line_error(proc, "cannot load model", "offset")
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_model_folder_without_a_model(tmp_path: Path) -> None:
    folder = tmp_path / "models"
    folder.mkdir()
    proc = run_cli("run", HIGHWAY_CLIP, "--model", folder, "--out", tmp_path / "out")
    assert_one_line_error(proc, f"model folder {folder} holds no model file")
    (folder / "yolox_nano.onnx").symlink_to(YOLOX_ONNX)
    proc = run_cli("run", HIGHWAY_CLIP, "--model", folder, "--out", tmp_path / "out")
    assert_one_line_error(proc, f"pass the model file itself, e.g. --model {folder}/yolox_nano.onnx")


@pytest.mark.parametrize(("size", "needle"), [(["100"], "multiples of 32"), (["0"], "greater than or equal")])
def test_input_sizes_a_detector_cannot_use(tmp_path: Path, size: list[str], needle: str) -> None:
    proc = run_cli("run", HIGHWAY_CLIP, "--model", YOLOX_ONNX, "--out", tmp_path / "out", "--imgsz", *size)
    assert_one_line_error(proc, "detector.input_size", needle)


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_the_smallest_input_size_is_read_as_the_right_layout(tmp_path: Path, backend: str) -> None:
    """At 32 x 32 a YOLOX head has 21 anchors, fewer than its 85 columns: the layout is still YOLOX (not
    'person is not a class of the model', as when the shorter axis was taken for the classes)."""
    proc = run_cli(
        "detect", STILL, "--model", YOLOX_ONNX, "--backend", backend, "--imgsz", "32", "--out", tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert f"[{backend}, yolox, 32x32]" in proc.stderr


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; `/busy` answers 503. Every request is counted."""

    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the standard library's name
        self.requests.append(self.path)
        if self.path == "/busy":
            self.send_error(503, "Service Unavailable")
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def http_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on loopback (in this process): its base URL and the paths requested."""
    served = tmp_path / "www"
    served.mkdir()
    (served / "page.html").write_text("<html>not a video</html>\n")
    requests: list[str] = []
    handler = type("Handler", (_Handler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def test_http_404_is_named_and_not_retried(tmp_path: Path, http_server) -> None:
    base, requests = http_server
    proc = run_cli("run", f"{base}/missing.mp4", "--model", YOLOX_ONNX, "--out", tmp_path / "out")
    assert_one_line_error(proc, f"cannot open stream {base}/missing.mp4: HTTP 404", "not retried")
    assert requests == ["/missing.mp4"]  # asked once: a 404 will not change by asking again


def test_http_503_is_named_after_the_attempts(tmp_path: Path, http_server) -> None:
    base, requests = http_server
    config = tmp_path / "two.yaml"
    config.write_text("source:\n  connect_attempts: 2\n  backoff_initial_s: 0.05\n")
    out = tmp_path / "out"
    proc = run_cli("run", f"{base}/busy", "--model", YOLOX_ONNX, "--out", out, "--config", config)
    assert_one_line_error(proc, "HTTP 503 Service Unavailable after 2 attempts")
    assert requests == ["/busy", "/busy"]


def test_http_page_that_is_not_a_video(tmp_path: Path, http_server) -> None:
    base, _ = http_server
    config = tmp_path / "one.yaml"
    config.write_text("source:\n  connect_attempts: 1\n")
    out = tmp_path / "out"
    proc = run_cli("run", f"{base}/page.html", "--model", YOLOX_ONNX, "--out", out, "--config", config)
    assert_one_line_error(proc, "HTTP 200 OK (text/html), but OpenCV found no video in it")


# -- image folders -------------------------------------------------------------------------------------------


def test_image_folder_in_natural_order_files_only(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for n in (1, 2, 10, 11, 100):  # each image's value is its number, so the order read is visible
        cv2.imwrite(str(folder / f"frame{n}.png"), np.full((32, 32, 3), n, np.uint8))
    (folder / "frame3.png").mkdir()  # a folder named like an image
    (folder / "frame4.png").symlink_to(folder / "gone.png")  # a broken link
    source = open_source(str(folder), load_config().source, fps=10)
    values = []
    while (frame := source.read()) is not None:
        values.append(int(frame.image[0, 0, 0]))
    assert values == [1, 2, 10, 11, 100]
    assert source.frame_count == 5
