"""`perception bench`: arguments, the rounds of modes, and writing bench.json, report.md and the plots."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from perception.bench.backends import auto_checks, backend_variants
from perception.bench.report import machine, versions, write_plots, write_report
from perception.bench.runners import (
    RunResult,
    check_ultralytics_decodes,
    decode_frames,
    run_detector,
    run_pipeline,
    run_sequential,
    run_ultralytics,
)
from perception.bench.stats import checks, no_nan, summarise
from perception.cli.flags import add_flags, flag_overrides
from perception.core.config import Config, load_config
from perception.core.errors import PerceptionError, first_line
from perception.detect import create_detector, inference_requests

SCHEMA_VERSION = 1


def add_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="latency and throughput of the pipeline against baselines", allow_abbrev=False
    )
    bench.add_argument("source", help="video file or image folder")
    bench.add_argument("--model", required=True, help="detector model (.onnx, OpenVINO IR folder, ...)")
    add_flags(bench, "--backend", "--mode", "--imgsz", "--compare", "--repeat", "--warmup")
    bench.add_argument("--frames", type=int, help="at most this many frames per run (default: all)")
    bench.add_argument("--config", help="YAML overriding configs/default.yaml")
    bench.add_argument("--out", type=Path, default=Path("out/bench"), help="output folder")


def _config(args: argparse.Namespace) -> Config:
    no_outputs = {"video": False, "events": False, "show": False}
    return load_config(args.config, flag_overrides(args, output=no_outputs))


def run(args: argparse.Namespace) -> int:
    cfg = _config(args)
    if args.frames is not None and args.frames < 1:
        raise PerceptionError("--frames must be at least 1")
    warmup = cfg.bench.warmup_frames
    if not Path(args.source).exists():
        raise PerceptionError(f"source not found: {args.source}")
    requests = inference_requests(cfg.detector, throughput=cfg.source.mode == "fast")
    detector = create_detector(args.model, cfg, requests, args.source)
    # A plain loop runs one request at a time: it gets a detector set up for that (all threads on one).
    single = detector if detector.requests == 1 else create_detector(args.model, cfg, 1, args.source)
    images = decode_frames(args.source, cfg, args.frames) if "detector" in cfg.bench.compare else []
    variants = backend_variants(args.model, cfg, requests) if "backends" in cfg.bench.compare else {}
    modes = ["pipeline"]
    for name in dict.fromkeys(cfg.bench.compare):
        modes += list(variants) if name == "backends" else [name]
    runs: dict[str, list[RunResult]] = {m: [] for m in modes}
    errors: dict[str, str] = {}
    if "ultralytics" in modes:
        try:
            check_ultralytics_decodes(str(args.model))
        except Exception as exc:  # refused, or a model Ultralytics cannot load: report it, keep the rest
            errors["ultralytics"] = first_line(exc, with_type=not isinstance(exc, PerceptionError))
    for round_index in range(cfg.bench.repeat):
        shift = round_index % len(modes)
        for mode in modes[shift:] + modes[:shift]:  # rotate the order each round
            if mode in errors:
                continue
            print(f"bench: round {round_index + 1}/{cfg.bench.repeat}: {mode}", file=sys.stderr)
            if mode == "pipeline":
                runs[mode].append(run_pipeline(args.source, detector, cfg, args.frames))
            elif mode == "sequential":
                runs[mode].append(run_sequential(args.source, single, cfg, args.frames))
            elif mode == "detector":
                runs[mode].append(run_detector(images, detector))
            elif mode in variants:
                runs[mode].append(run_pipeline(args.source, variants[mode].detector, cfg, args.frames))
            else:
                try:
                    runs[mode].append(run_ultralytics(args.source, str(args.model), cfg, args.frames))
                except Exception as exc:  # a model Ultralytics cannot load: report it, keep the rest
                    errors[mode] = first_line(exc, with_type=True)
    runs = {m: r for m, r in runs.items() if r}

    args.out.mkdir(parents=True, exist_ok=True)
    bench = {
        "schema_version": SCHEMA_VERSION,
        "command": sys.argv,
        "source": str(args.source),
        "model": str(args.model),
        "mode": cfg.source.mode,
        "repeat": cfg.bench.repeat,
        "warmup_frames": warmup,
        "frames_limit": args.frames,
        "detector": {
            "backend": detector.backend,
            "layout": detector.layout,
            "input_hw": list(detector.input_hw),
            "requests": detector.requests,
            "requests_sequential": single.requests,
            "intra_op_threads": cfg.detector.intra_op_threads,
            "intra_op_spinning": cfg.detector.intra_op_spinning,
            "openvino_hint": cfg.detector.openvino_hint,
            "precision": getattr(detector, "cfg", cfg.detector).precision,
            "choice": choice.as_dict() if (choice := getattr(detector, "choice", None)) else None,
            "backend_modes": {name: v.describe() for name, v in variants.items()},
        },
        "machine": machine(),
        "versions": versions(),
        "modes": {m: summarise(r, warmup) for m, r in runs.items()},
        "source_fps": runs["pipeline"][0].source_fps,
        "errors": errors,
        "notes": "peak_rss_mib is the process high-water mark when the run ended (modes share one process)",
    }
    bench["checks"] = {**checks(bench), **auto_checks(bench)}
    bench["plots"] = []
    # The figures first: the plots need an optional library, and whatever happens to them, these stay.
    _write_json(args.out / "bench.json", bench)
    write_report(args.out / "report.md", bench)
    print((args.out / "report.md").read_text().split("\n\n")[2], file=sys.stderr)
    for variant in variants.values():
        variant.detector.close()
    for mode, message in errors.items():
        print(f"bench: {mode} left out: {message}", file=sys.stderr)
    try:
        bench["plots"] = write_plots(args.out, runs, warmup)
    except ImportError as exc:
        print(
            f"bench: no plots: {exc.name or exc} is not installed (pip install -e '.[bench]')",
            file=sys.stderr,
        )
    except Exception as exc:  # noqa: BLE001 - a plot must not cost the figures
        print(f"bench: no plots: {first_line(exc, with_type=True)}", file=sys.stderr)
    if bench["plots"]:
        _write_json(args.out / "bench.json", bench)
    print(
        f"bench: wrote {args.out}/bench.json, report.md{''.join(', ' + p for p in bench['plots'])}",
        file=sys.stderr,
    )
    return 0


def _write_json(path: Path, bench: dict) -> None:
    """Whole or not at all: written beside and renamed over."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(no_nan(bench), indent=1, allow_nan=False))
    partial.replace(path)
