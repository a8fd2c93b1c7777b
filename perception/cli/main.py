"""Command line: `perception run SOURCE --model PATH`, and the other commands.

Every failure a user can fix ends as one line on stderr (`error: ...`) and a non-zero exit; whatever
was produced before it stays on disk, flushed and closed. Ctrl-C at any moment, start-up included,
exits with 130 and no traceback; SIGTERM the same way with 143.
"""

from __future__ import annotations

import sys

from perception.cli import interrupts

interrupts.install()
try:  # Ctrl-C while the libraries load (a second or two): exit 130 without a traceback
    import argparse
    import os
    import traceback
    from pathlib import Path

    import numpy as np

    from perception import __version__
    from perception.cli import triton as triton_cli
    from perception.cli.detector import add_commands
    from perception.cli.detector import run as run_detector_command
    from perception.cli.run import add_run_command, one_line, run
    from perception.core.config import load_config
    from perception.core.errors import PerceptionError
    from perception.detect import create_detector
    from perception.runtime.pipeline import StageError

    interrupts.check()
except BaseException:
    if interrupts.received():  # a KeyboardInterrupt, or a library's own error from it
        interrupts.exit_now()
    raise

EXIT_ERROR = 1


def _parser() -> argparse.ArgumentParser:
    # No abbreviated options: `--conf` must never be taken for `--config`.
    parser = argparse.ArgumentParser(
        prog="perception", description=__doc__.splitlines()[0], allow_abbrev=False
    )
    parser.add_argument("--version", action="version", version=f"perception {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    add_run_command(commands)
    mot = commands.add_parser(
        "eval-mot",
        help="track a MOTChallenge sequence and score it against its ground truth",
        allow_abbrev=False,
    )
    mot.add_argument(
        "seq_dir", type=Path, help="sequence folder with seqinfo.ini, gt/gt.txt and det/ or img1/"
    )
    source = mot.add_mutually_exclusive_group()
    source.add_argument("--det", type=Path, help="public detections (default: SEQ_DIR/det/det.txt)")
    source.add_argument("--model", help="run this detector over SEQ_DIR/img1 instead (pedestrians)")
    mot.add_argument("--config", help="YAML overriding configs/default.yaml")
    mot.add_argument("--out", type=Path, help="result file (default: out/eval-mot/SEQ_NAME.txt)")
    mot.add_argument("--json", action="store_true", help="print the metrics as one JSON object")

    ttc = commands.add_parser(
        "eval-ttc", help="score TTC, distance and warnings against a ground-truth CSV", allow_abbrev=False
    )
    ttc.add_argument(
        "source",
        nargs="?",
        help="video or image folder: a scenario from python -m perception.eval.synthetic, or a real drive",
    )
    ttc.add_argument(
        "--truth",
        type=Path,
        help="per-frame ground truth CSV: boxes (synthetic scenarios) or the lead's distance (a real drive)",
    )
    ttc.add_argument("--model", help="detector model")
    ttc.add_argument(
        "--scenarios",
        action="store_true",
        help="instead: the warning stage through NHTSA's, Euro NCAP-shaped and non-conflict scenarios "
        "(perception/eval/scenarios.py), a table of warning times against the required ones",
    )
    ttc.add_argument("--seed", type=int, default=0, help="--scenarios: the measurement noise's seed (0)")
    ttc.add_argument("--config", help="YAML overriding configs/default.yaml")
    ttc.add_argument("--frames", help="score only frames FIRST-LAST (inclusive), e.g. 12-46")
    ttc.add_argument("--truth-column", help="the lead's distance column (default: dist_m, or the only one)")
    ttc.add_argument(
        "--truth-window", type=int, default=5, help="true TTC from the distances of frames i-K..i+K (5)"
    )
    ttc.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    ego = commands.add_parser(
        "eval-ego", help="score ego speed and yaw rate read from the video against a CSV", allow_abbrev=False
    )
    ego.add_argument("source", help="video or image folder of a drive")
    ego.add_argument(
        "--truth", required=True, type=Path, help="per-frame CSV: frame,t_s,speed_mps[,yaw_rate_dps]"
    )
    ego.add_argument("--model", required=True, help="detector model (its boxes give no features)")
    ego.add_argument("--config", help="YAML overriding configs/default.yaml (the camera profile above all)")
    ego.add_argument("--json", action="store_true", help="print the scores as one JSON object")
    add_commands(commands)
    triton_cli.add_commands(commands)
    from perception.cli.bench import add_parser as add_bench_parser

    add_bench_parser(commands)
    return parser


def _eval_scenarios(args: argparse.Namespace) -> int:
    """`eval-ttc --scenarios`: exit 1 if a conflict was warned late or a non-conflict warned."""
    import json

    from perception.eval.scenarios import run_all, table

    rows = run_all(load_config(args.config), args.seed)
    print(json.dumps(rows) if args.json else table(rows))
    return 0 if all(r["ok"] for r in rows) else 1


def _eval_ttc(args: argparse.Namespace) -> int:
    import json

    from perception.eval.ttc import evaluate_ttc, parse_frames

    if args.scenarios:
        return _eval_scenarios(args)
    missing = [flag for flag, value in (("SOURCE", args.source), ("--truth", args.truth),
                                        ("--model", args.model)) if value is None]  # fmt: skip
    if missing:
        raise PerceptionError(f"eval-ttc needs {', '.join(missing)} (or --scenarios)")
    if not args.truth.is_file():
        raise PerceptionError(f"truth file not found: {args.truth}")
    if args.truth_window < 1:
        raise PerceptionError(f"--truth-window must be at least 1, got {args.truth_window}")
    scores = evaluate_ttc(
        args.source,
        args.truth,
        args.model,
        load_config(args.config),
        frames=parse_frames(args.frames),
        truth_column=args.truth_column,
        truth_half_window=args.truth_window,
    )
    if args.json:
        print(json.dumps(scores))
        return 0
    for key, value in scores.items():
        if key != "alarms":
            print(f"{key}: {value}")
    for alarm in scores["alarms"]:
        print(f"alarm at frame {alarm['frame']}: {alarm['previous']} -> {alarm['level']} ({alarm})")
    return 0


def _eval_ego(args: argparse.Namespace) -> int:
    import json

    from perception.eval.ego import evaluate_ego

    if not args.truth.is_file():
        raise PerceptionError(f"truth file not found: {args.truth}")
    scores = evaluate_ego(args.source, args.truth, args.model, load_config(args.config))
    if args.json:
        print(json.dumps(scores))
        return 0
    for key, value in scores.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        print(f"{key}: {value}")
    return 0


def _eval_mot(args: argparse.Namespace) -> int:
    import json

    from perception.eval import mot

    cfg = load_config(args.config)
    info = mot.read_seqinfo(args.seq_dir, cfg.source.image_folder_fps)
    gt = mot.read_ground_truth(args.seq_dir / "gt" / "gt.txt")
    if args.model:
        detections = mot.detect_sequence(
            info.image_dir, create_detector(args.model, cfg), cfg.labels.index("pedestrian")
        )
    else:
        detections = mot.read_detections(args.det or args.seq_dir / "det" / "det.txt")
    frames = np.arange(1, max(int(gt.frames.max(initial=0)), max(detections, default=0)) + 1)
    results = mot.track_sequence(detections, frames, info, cfg)
    out = args.out or Path("out") / "eval-mot" / f"{info.name}.txt"
    mot.write_results(out, results)
    metrics = mot.evaluate(gt, results)
    if args.json:
        print(json.dumps({"sequence": info.name, **metrics}))
    else:
        print(f"{info.name}: {len(frames)} frames at {info.fps:g} fps, results in {out}")
        print(
            "  "
            + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        interrupts.check()
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM before the pipeline's own handler is in place (start-up)
        print(interrupts.message(), file=sys.stderr)
        return interrupts.exit_code()
    except Exception:
        if not interrupts.received():
            raise
        print(interrupts.message(), file=sys.stderr)  # a library's own error, raised by the signal
        return interrupts.exit_code()


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return run(args)
        if args.command == "eval-mot":
            return _eval_mot(args)
        if args.command == "eval-ttc":
            return _eval_ttc(args)
        if args.command == "eval-ego":
            return _eval_ego(args)
        if args.command == "bench":
            from perception.cli.bench import run as run_bench

            return run_bench(args)
        if args.command in triton_cli.COMMANDS:
            return triton_cli.run(args)
        return run_detector_command(args)
    except PerceptionError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
    except StageError as exc:
        if os.environ.get("PERCEPTION_DEBUG"):
            traceback.print_exception(exc.error)
        prefix = "" if isinstance(exc.error, PerceptionError) else f"{exc.stage} stage failed: "
        print(f"error: {prefix}{one_line(exc.error)}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    code = main()
    if code in (interrupts.EXIT_SIGINT, interrupts.EXIT_SIGTERM):
        # under `python -m`, CPython could turn a swallowed Ctrl-C into SIGINT whatever the exit code
        interrupts.exit_now(code, say=False)
    sys.exit(code)
