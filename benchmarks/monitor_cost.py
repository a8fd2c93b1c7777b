"""What monitoring costs the pipeline: `latency_ms.sink` (annotate, video, monitor; the event log writes it
last) and fps of `perception run` without `--serve`, with it, and with it while watched.

    python benchmarks/monitor_cost.py [--runs 3] [--mode fast] [--metrics-sample FILE] [--screenshot PNG]

Configurations, interleaved `--runs` times (the order rotated each round): `off` (no --serve); `serve`
(--serve, nobody asking); `watched` (--serve, one MJPEG client on the live view, /metrics and /health
fetched every second, as the page and a Prometheus scraper would). `--metrics-sample` saves one /metrics
scrape taken mid-run; `--screenshot` loads the live page in headless Chromium (selenium + Debian's
chromedriver) during a realtime run of two copies of the clip (two streams) and saves a screenshot.
Then `MonitorSink.write` alone, timed per call in an in-process run of the clip (fast mode).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))
CLIP = ASSETS / "videos" / "highway_960x540_25fps.mp4"
MODEL = ASSETS / "models" / "yolox_nano.onnx"


def start(out: Path, mode: str, serve: bool, streams: int = 1) -> tuple[subprocess.Popen, str | None]:
    cmd = [sys.executable, "-m", "perception.cli", "run", *[str(CLIP)] * streams]
    cmd += ["--model", str(MODEL), "--out", str(out)]
    cmd += ["--mode", mode] + (["--serve", "127.0.0.1:0"] if serve else [])
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    if not serve:
        return proc, None
    line = ""
    while "monitoring on" not in line:
        line = lines.get(timeout=120)
    return proc, line.split("monitoring on ")[1].split()[0]


def parts(response) -> int:
    """Read an MJPEG response to its end in large chunks (a client as cheap as can be), counting parts."""
    count, tail = 0, b""
    while chunk := response.read(1 << 16):
        data = tail + chunk
        count += data.count(b"--frame\r\n")
        tail = data[-16:]
        count -= tail.count(b"--frame\r\n")  # counted again with the next chunk
    return count + tail.count(b"--frame\r\n")


def watch(url: str, proc: subprocess.Popen, sample: list[str]) -> dict[str, int]:
    """An MJPEG client and a once-a-second poller of /metrics and /health, until the run ends."""
    seen = {"jpeg": 0, "polls": 0, "taken": 0, "processed": 0}

    def mjpeg() -> None:
        try:
            with urllib.request.urlopen(url + "stream/highway_960x540_25fps.mjpg", timeout=30) as response:
                seen["jpeg"] = parts(response)
        except OSError:
            pass

    reader = threading.Thread(target=mjpeg, daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            metrics = urllib.request.urlopen(url + "metrics", timeout=5).read().decode()
            with contextlib.suppress(urllib.error.HTTPError):  # 503 while a stream is not up: an answer too
                urllib.request.urlopen(url + "health", timeout=5).read()
            seen["polls"] += 1
            for family in text_string_to_metric_families(metrics):
                for metric in family.samples:
                    if metric.name == "perception_live_view_frames_total":
                        seen["taken"] = int(metric.value)
                    elif metric.name == "perception_frames_processed_total":
                        seen["processed"] = int(metric.value)
            if seen["polls"] == 3 and not sample:
                sample.append(metrics)
        except OSError:
            pass
        time.sleep(1.0)
    reader.join(timeout=10)
    return seen


def run_once(config: str, mode: str, sample: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start(Path(tmp), mode, config != "off")
        seen = watch(url, proc, sample) if config == "watched" else {}
        if proc.wait(timeout=600) != 0:
            raise SystemExit(f"perception run failed ({config})")
        events = [json.loads(line) for line in (Path(tmp) / "events.jsonl").read_text().splitlines()]
    frames = [e for e in events if e["type"] == "frame"]
    return {
        "fps": events[-1]["fps"],
        "sink": [f["latency_ms"]["sink"] for f in frames],
        "e2e": [f["latency_ms"]["e2e"] for f in frames],
        **seen,
    }


class Timed:
    """A sink wrapper timing each write of the sink it wraps."""

    def __init__(self, sink) -> None:
        self.sink, self.us = sink, []

    def write(self, result) -> None:
        t0 = time.perf_counter_ns()
        self.sink.write(result)
        self.us.append((time.perf_counter_ns() - t0) / 1e3)

    def close(self) -> None:
        self.sink.close()


def direct(watched: bool) -> list[float]:
    """MonitorSink.write alone, timed per call, in a real in-process run of the clip (fast mode)."""
    from perception.core.config import load_config
    from perception.detect import create_detector, inference_requests
    from perception.output.monitor import Monitor
    from perception.output.sinks import Annotator
    from perception.runtime.pipeline import Pipeline, Stream
    from perception.runtime.processor import build_processor
    from perception.sources.files import open_source

    cfg = load_config()
    with Monitor("127.0.0.1", 0, cfg.monitor) as monitor:
        source = open_source(str(CLIP), cfg.source)
        detector = create_detector(MODEL, cfg, inference_requests(cfg.detector, True))
        timed = Timed(monitor.stream("highway", str(CLIP)))
        annotate = Annotator(cfg.labels, detector.class_names)
        stream = Stream(source, build_processor(cfg), [timed], annotate, name="highway")
        pipeline = Pipeline(detector, cfg, [stream])
        monitor.count_with("highway", lambda: pipeline.counts(0))
        if watched:

            def client() -> None:
                with urllib.request.urlopen(monitor.url + "stream/highway.mjpg", timeout=30) as response:
                    parts(response)

            threading.Thread(target=client, daemon=True).start()
            while monitor.view("highway").viewers == 0:
                time.sleep(0.01)
        pipeline.run()
        timed.close()
    return timed.us


def screenshot(path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1000,640", f"--user-data-dir={tmp}/chromium"):  # fmt: skip
            options.add_argument(arg)
        browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        proc, url = start(Path(tmp) / "out", "realtime", True, streams=2)
        try:
            browser.get(url)
            time.sleep(5.0)  # a few seconds in: tracks confirmed, fps measured
            png = browser.get_screenshot_as_png()
        finally:
            browser.quit()
            proc.wait(timeout=120)
    from PIL import Image  # Pillow (matplotlib brings it: the bench extra)

    # 256 colours: a third of the size of the full-colour PNG, for a file kept in the repository
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(path, optimize=True)
    print(f"screenshot: {path} ({path.stat().st_size // 1024} KB)")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=["fast", "realtime"], default="fast")
    parser.add_argument("--metrics-sample", type=Path)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()

    configs = ("off", "serve", "watched")
    results: dict[str, list[dict]] = {c: [] for c in configs}
    sample: list[str] = []
    for round_ in range(args.runs):  # interleaved, and each round starts with the next configuration
        for i in range(len(configs)):
            config = configs[(round_ + i) % len(configs)]
            results[config].append(run_once(config, args.mode, sample))
    print(f"{CLIP.name}, {MODEL.name}, mode {args.mode}, {args.runs} runs each, {os.cpu_count()} CPUs")
    sink_columns = [f"sink ms {q}" for q in ("p50", "p90", "p99", "mean")]
    columns = ("fps (median)", "frames", *sink_columns, "sink ms p50 (runs)", "e2e ms p50")
    print("| config | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for config, runs in results.items():
        sink = [v for r in runs for v in r["sink"]]
        e2e = [v for r in runs for v in r["e2e"]]
        fps = statistics.median(r["fps"] for r in runs)
        per_run = ", ".join(f"{pct(r['sink'], 0.5):.1f}" for r in runs)
        print(
            f"| {config} | {fps:.1f} | {len(sink)} | {pct(sink, 0.5):.2f} | {pct(sink, 0.9):.2f} | "
            f"{pct(sink, 0.99):.2f} | {statistics.fmean(sink):.2f} | "
            f"{per_run} | {pct(e2e, 0.5):.1f} |"
        )
    print("MonitorSink.write alone, per call (in-process run, fast mode):")
    print("| viewer | calls | us p50 | us p90 | us p99 | us mean |")
    print("|---|---|---|---|---|---|")
    for watched in (False, True):
        us = direct(watched)
        print(
            f"| {'one MJPEG client' if watched else 'none'} | {len(us)} | {pct(us, 0.5):.0f} | "
            f"{pct(us, 0.9):.0f} | {pct(us, 0.99):.0f} | {statistics.fmean(us):.0f} |"
        )
    watched = results["watched"]
    print(
        f"watched: {sum(r['jpeg'] for r in watched)} JPEG frames received, "
        f"{sum(r['polls'] for r in watched)} /metrics + /health polls; at the last poll of each run "
        f"{sum(r['taken'] for r in watched)} frames taken for the live view of "
        f"{sum(r['processed'] for r in watched)} processed"
    )
    if args.metrics_sample and sample:
        args.metrics_sample.write_text(sample[0])
        print(f"metrics sample: {args.metrics_sample}")
    if args.screenshot:
        screenshot(args.screenshot)


if __name__ == "__main__":
    main()
