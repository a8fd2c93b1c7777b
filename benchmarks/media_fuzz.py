"""The media fuzzing harness: every case of perception/eval/media.py (containers, codecs, pixel formats, odd
and tiny sizes, timing quirks, damage) and seeded random damage (byte flips, cuts) through the whole
`perception run` path, as a user runs it. Prints a markdown table: what each input gave (exit code, frames
processed of those decodable, the error line) and whether that is what the case expects; exits 1 if any is
not (a traceback, a lock left held, an unexpected error or success).

    python benchmarks/media_fuzz.py [--frames 40] [--seeds 8] [--fast] [--out DIR]

`--fast` leaves out the slow cases (UHD, AV1) and the seeded damage: what tests/sources/test_media.py runs.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import random
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from perception.eval.media import Case, cases, decodable_frames, make
from perception.output.folder import LOCK_NAME

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parent.parent.parent / "shared"))
CLIP = ASSETS / "videos" / "highway_960x540_25fps.mp4"
MODEL = ASSETS / "models" / "yolox_nano.onnx"


def lock_free(folder: Path) -> bool:
    lock = folder / LOCK_NAME
    if not lock.exists():
        return True
    with open(lock, "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def run_case(path: Path, out: Path, timeout_s: float = 300) -> dict:
    """`perception run` on one file; what a user sees and what it left."""
    proc = subprocess.run(
        [sys.executable, "-m", "perception.cli", "run", str(path), "--model", str(MODEL), "--out", str(out),
         "--imgsz", "256", "448", "--backend", "onnxruntime"],
        capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    events = out / "events.jsonl"
    frames = 0
    if events.exists():
        frames = sum(json.loads(line)["type"] == "frame" for line in events.read_text().splitlines())
    lines = proc.stderr.strip().splitlines()
    return {
        "code": proc.returncode,
        "frames": frames,
        "traceback": "Traceback" in proc.stderr,
        "error": next((line for line in reversed(lines) if line.startswith("error: ")), ""),
        "one_error_line": sum(line.startswith("error: ") for line in lines) <= 1,
        "lock_free": lock_free(out) if out.exists() else True,
    }


def verdict(case: Case, got: dict, readable: int) -> bool:
    """Processed fully, or refused with one error line, every decodable frame before it kept; never a
    traceback or a lock left held."""
    clean = not got["traceback"] and got["one_error_line"] and got["lock_free"]
    processed = got["code"] == 0 and got["frames"] == readable and not got["error"]
    refused = got["code"] != 0 and got["error"] != "" and got["frames"] == readable
    return clean and {"processed": processed, "error": refused, "any": processed or refused}[case.expect]


def seeded(frames: int, seeds: int) -> list[tuple[Case, int]]:
    """Random damage over a few containers: byte flips (expected to play on) and cuts (expected to be
    named), one file per seed."""
    out = []
    for seed in range(seeds):
        rng = random.Random(seed)
        base = rng.choice([c for c in cases(slow=False) if c.expect == "processed" and not c.damage])
        stem, suffix = base.name.rsplit(".", 1)
        damage = rng.choice(["flip", "cut"])
        # MPEG-TS states no length (it is a stream format): a cut one reads as a shorter complete one
        expect = "any" if damage == "flip" or suffix in ("ts", "m2ts") else "error"
        name = f"{stem}_{damage}_s{seed}.{suffix}"
        out.append((replace(base, name=name, damage=damage, expect=expect), seed))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="media-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    todo = [(c, 0) for c in cases(slow=not args.fast)]
    todo += [] if args.fast else seeded(args.frames, args.seeds)
    print("| input | expected | exit | frames (decodable) | outcome | ok |\n|---|---|---|---|---|---|")
    failures = 0
    for case, seed in todo:
        path = make(case, CLIP, work, args.frames, seed)
        readable = decodable_frames(path)
        got = run_case(path, work / f"out_{path.stem}_{path.suffix[1:]}")
        ok = verdict(case, got, readable)
        failures += not ok
        said = got["error"] or ("traceback" if got["traceback"] else "processed")
        print(
            f"| `{case.name}` | {case.expect} | {got['code']} | {got['frames']} ({readable}) | {said} | "
            f"{'yes' if ok else '**no**'} |",
            flush=True,
        )
    print(f"\n{len(todo) - failures} of {len(todo)} as expected; files in {work}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
