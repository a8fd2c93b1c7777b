"""Every way start-up and the outputs can go wrong, run for real: exit code, last stderr line, what was kept.

    python benchmarks/failure_cases.py [--keep DIR]

Prints a markdown table (benchmarks/README.md has one). The full-disk and read-only cases mount a small
tmpfs (root or CAP_SYS_ADMIN; left out otherwise). Real clip, real model, real servers on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
CLIP = ASSETS / "videos" / "highway_960x540_25fps.mp4"
MODEL = ASSETS / "models" / "yolox_nano.onnx"
OV_MODEL = ASSETS / "models" / "yolov8n_int8_openvino_model"
IMG1 = ASSETS / "mot" / "MOT17-mini" / "MOT17-13-FRCNN" / "img1"
CLI = [sys.executable, "-m", "perception.cli"]


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def decoded(path: Path) -> int:
    cap, count = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def kept(out: Path) -> str:
    """What a run left in its folder: video frames that decode, frame lines, the log's last line."""
    parts = []
    if (out / "annotated.mp4").exists():
        parts.append(f"video {decoded(out / 'annotated.mp4')} frames")
    events = out / "events.jsonl"
    if events.exists():
        lines = [json.loads(line) for line in events.read_text().splitlines()]  # each whole, or this fails
        frames = sum(e["type"] == "frame" for e in lines)
        tail = [e["type"] + (f" {e['status']}" if e["type"] == "end" else "") for e in lines[-2:]]
        parts.append(f"{frames} frame lines, all whole, ending {' + '.join(tail)}")
    if (out / "tracks.txt").exists():
        parts.append(f"tracks.txt {len((out / 'tracks.txt').read_text().splitlines())} rows")
    if not out.exists():
        parts.append("no folder left behind")
    elif not parts:
        parts.append("nothing written")
    return "; ".join(parts)


def run(*args: object, env: dict[str, str] | None = None, cwd: Path | None = None) -> tuple[int, str]:
    proc = subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=600, env=env, cwd=cwd
    )
    return proc.returncode, last_line(proc.stderr)


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False) -> Iterator[Path | None]:
    path.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}" + (",ro" if read_only else ""), "tmpfs", str(path)]
    if subprocess.run(cmd, capture_output=True, timeout=30).returncode != 0:
        yield None
        return
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/busy":
            self.send_error(503)
        else:
            self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


def cases(tmp: Path) -> Iterator[tuple[str, Callable[[], tuple[int, str, str]]]]:
    def simple(*args: object, out: Path | None = None, env: dict[str, str] | None = None):
        def case() -> tuple[int, str, str]:
            code, line = run(*args, env=env)
            return code, line, kept(out) if out else "-"

        return case

    afile = tmp / "afile"
    afile.write_text("x\n")
    yield "`--out` is a file", simple("run", CLIP, "--model", MODEL, "--out", afile)
    yield "`--out` inside a file", simple("run", CLIP, "--model", MODEL, "--out", afile / "sub")

    def read_only() -> tuple[int, str, str]:
        with tmpfs(tmp / "ro", "1m", read_only=True) as ro:
            if ro is None:
                return -1, "(tmpfs not permitted here)", "-"
            code, line = run("run", CLIP, "--model", MODEL, "--out", ro / "out")
            return code, line, kept(ro / "out")

    yield "`--out` on a read-only filesystem", read_only

    def full_disk(events: bool) -> Callable[[], tuple[int, str, str]]:
        def case() -> tuple[int, str, str]:
            with tmpfs(tmp / f"disk{events}", "1m") as disk:
                if disk is None:
                    return -1, "(tmpfs not permitted here)", "-"
                config = tmp / f"events{events}.yaml"
                config.write_text(f"output:\n  events: {str(events).lower()}\n")
                code, line = run("run", CLIP, "--model", MODEL, "--out", disk / "out", "--config", config)
                return code, line, kept(disk / "out")

        return case

    yield "disk full mid-run (1 MB tmpfs)", full_disk(True)
    yield "disk full mid-run, `output.events: false`", full_disk(False)

    def busy() -> tuple[int, str, str]:
        out = tmp / "busy"
        first = subprocess.Popen([*CLI, "run", str(CLIP), "--model", str(MODEL), "--out", str(out),
                                  "--mode", "realtime"], stderr=subprocess.DEVNULL)  # fmt: skip
        while not (out / "events.jsonl").exists() or '"frame"' not in (out / "events.jsonl").read_text():
            time.sleep(0.05)
        code, line = run("run", IMG1, "--model", MODEL, "--out", out)
        first.send_signal(signal.SIGINT)
        first.wait(timeout=120)
        return code, line, f"first run undisturbed (exit {first.returncode}); {kept(out)}"

    yield "second run into a folder in use", busy

    def killed() -> tuple[int, str, str]:
        out = tmp / "killed"
        proc = subprocess.Popen([*CLI, "run", str(CLIP), "--model", str(MODEL), "--out", str(out)],
                                stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(3)
        proc.kill()
        proc.wait(timeout=60)
        what = kept(out)
        again, _ = run("run", IMG1, "--model", MODEL, "--out", out)  # its lock died with it
        return proc.returncode, "(none: killed)", f"{what}; the next run into the folder: exit {again}"

    yield "`kill -9` after 3 s", killed

    def ctrl_c(
        after: Callable[[subprocess.Popen, Path], bool], name: str
    ) -> Callable[[], tuple[int, str, str]]:
        def case() -> tuple[int, str, str]:
            out = tmp / name
            proc = subprocess.Popen([*CLI, "run", str(CLIP), "--model", str(MODEL), "--backend", "openvino",
                                     "--out", str(out)], stderr=subprocess.PIPE, text=True)  # fmt: skip
            while not after(proc, out):
                time.sleep(0.002)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=120)
            traceback = "a traceback!" if "Traceback" in stderr else "no traceback"
            return proc.returncode, last_line(stderr), f"{traceback}; {kept(out)}"

        return case

    def mapped(proc: subprocess.Popen, library: str) -> bool:
        with contextlib.suppress(OSError):
            return library in Path(f"/proc/{proc.pid}/maps").read_text()
        return False

    yield "Ctrl-C while importing numpy", ctrl_c(lambda p, o: mapped(p, "numpy"), "sigint_numpy")
    yield "Ctrl-C during the model load", ctrl_c(lambda p, o: mapped(p, "libopenvino"), "sigint_model")
    yield (
        "Ctrl-C mid-run",
        ctrl_c(
            lambda p, o: (o / "events.jsonl").exists() and '"frame"' in (o / "events.jsonl").read_text(),
            "sigint_run",
        ),
    )
    no_display = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = tmp / "show"
    yield "`--show` without a display", simple("run", CLIP, "--model", MODEL, "--out", out, "--show", out=out,
                                              env=no_display)  # fmt: skip
    yield (
        "`--show`, `DISPLAY=:97` with no X server",
        simple(
            "run",
            CLIP,
            "--model",
            MODEL,
            "--out",
            out,
            "--show",
            out=out,
            env={**no_display, "DISPLAY": ":97"},
        ),
    )
    for fps in ("nan", "inf", "-5", "0"):
        yield f"`--fps {fps}`", simple("run", IMG1, "--model", MODEL, "--out", tmp / "fps", f"--fps={fps}")
    for name, text in [
        ("config with a non-UTF-8 byte", b"detector:\n  backend: onnxruntime # caf\xe9\n"),
        ("`conf_threshold: true`", b"detector:\n  conf_threshold: true\n"),
        ("`max_lost_s: '2'`", b"tracker:\n  max_lost_s: '2'\n"),
        ("`camera.profile: nowhere`", b"camera:\n  profile: nowhere\n"),
    ]:
        config = tmp / f"{len(name)}.yaml"
        config.write_bytes(text)
        yield name, simple("run", CLIP, "--model", MODEL, "--out", tmp / "cfg", "--config", config)
    nobin = tmp / "nobin_openvino_model"
    nobin.mkdir()
    for src in OV_MODEL.iterdir():
        if src.suffix != ".bin":
            shutil.copy(src, nobin / src.name)
    yield "OpenVINO IR without its .bin", simple("run", CLIP, "--model", nobin, "--out", tmp / "nobin")
    (tmp / "models").mkdir()
    yield "model folder holding no model", simple("run", CLIP, "--model", tmp / "models", "--out", tmp / "m")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    yield "HTTP 404", simple("run", f"{base}/missing.mp4", "--model", MODEL, "--out", tmp / "h404")
    yield "HTTP 503", simple("run", f"{base}/busy", "--model", MODEL, "--out", tmp / "h503")

    cut = tmp / "truncated.mp4"
    cut.write_bytes(CLIP.read_bytes()[: CLIP.stat().st_size // 2])
    yield "truncated video", simple("run", cut, "--model", MODEL, "--out", tmp / "cut", out=tmp / "cut")
    folder = tmp / "img"
    folder.mkdir()
    for i, src in enumerate(sorted(IMG1.glob("*.jpg"))[:3]):
        shutil.copy(src, folder / f"{i + 1}.jpg")
    (folder / "10.jpg").write_bytes(b"not a jpeg")  # natural order: read last
    yield (
        "corrupt image (10.jpg after 1-3.jpg)",
        simple("run", folder, "--model", MODEL, "--fps", "25", "--out", tmp / "img_out", out=tmp / "img_out"),
    )

    def bench_no_matplotlib() -> tuple[int, str, str]:
        out = tmp / "bench"
        args = ["bench", str(CLIP), "--model", str(MODEL), "--frames", "20", "--compare", "sequential",
                "--out", str(out)]  # fmt: skip
        code = "import sys; sys.modules['matplotlib'] = None; from perception.cli.main import main; "
        code += f"sys.exit(main({args}))"
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        plot_line = next((x for x in proc.stderr.splitlines() if "plots" in x), "")
        return proc.returncode, plot_line, ", ".join(sorted(p.name for p in out.iterdir()))

    yield "`bench` without matplotlib", bench_no_matplotlib

    def bench_ultralytics() -> tuple[int, str, str]:
        out = tmp / "bench_u"
        proc = subprocess.run([*CLI, "bench", str(CLIP), "--model", str(MODEL), "--frames", "20", "--compare",
                               "detector,ultralytics", "--out", str(out)], capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        refused = next((x for x in proc.stderr.splitlines() if "ultralytics left out" in x), "")
        modes = sorted(json.loads((out / "bench.json").read_text())["modes"])
        return proc.returncode, refused, f"modes measured: {', '.join(modes)}"

    yield "`bench --compare ultralytics` on YOLOX", bench_ultralytics
    yield "`detect --classes spaceship`", simple("detect", IMG1, "--model", MODEL, "--classes", "spaceship",
                                                 "--out", tmp / "det")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        tmp = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cases-")))
        tmp.mkdir(parents=True, exist_ok=True)
        print("| case | exit | last stderr line | kept |")
        print("|---|---|---|---|")
        for name, case in cases(tmp):
            code, line, what = case()
            print(f"| {name} | {code} | `{line.replace('|', '/')}` | {what} |", flush=True)


if __name__ == "__main__":
    main()
