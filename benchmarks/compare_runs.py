"""Do two runs write the same tracks and warnings? Compares two events.jsonl files frame by frame.

    python benchmarks/compare_runs.py OLD/events.jsonl NEW/events.jsonl [--box-tol 0.05] [--est-tol 1e-3]

Per frame: the same track IDs in the same order, boxes within --box-tol px, `ttc_s` and `dist_m` within
--est-tol (both null counts as equal), the same `in_path`; and the same `fcw` events (level, previous,
track, frame). Timing fields are ignored. Prints the first differences and exits 1 if there are any: the
check that a refactoring kept the pipeline's behaviour (e.g. run the old commit from a git worktree).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def _read(path: Path) -> tuple[dict[int, list[dict]], list[tuple]]:
    frames: dict[int, list[dict]] = {}
    fcw: list[tuple] = []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "frame":
            frames[event["frame"]] = event["tracks"]
        elif event["type"] == "fcw":
            fcw.append((event["frame"], event["level"], event["previous"], event["track_id"]))
    return frames, fcw


def _close(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def compare(old: Path, new: Path, box_tol: float, est_tol: float) -> list[str]:
    old_frames, old_fcw = _read(old)
    new_frames, new_fcw = _read(new)
    problems = []
    if sorted(old_frames) != sorted(new_frames):
        problems.append(f"frames differ: {len(old_frames)} vs {len(new_frames)} frame lines")
    for index in sorted(set(old_frames) & set(new_frames)):
        a, b = old_frames[index], new_frames[index]
        if [t["id"] for t in a] != [t["id"] for t in b]:
            problems.append(f"frame {index}: ids {[t['id'] for t in a]} vs {[t['id'] for t in b]}")
            continue
        for ta, tb in zip(a, b, strict=True):
            where = f"frame {index} track {ta['id']}"
            if any(abs(x - y) > box_tol for x, y in zip(ta["box"], tb["box"], strict=True)):
                problems.append(f"{where}: box {ta['box']} vs {tb['box']}")
            for key in ("ttc_s", "dist_m"):
                if not _close(ta[key], tb[key], est_tol):
                    problems.append(f"{where}: {key} {ta[key]} vs {tb[key]}")
            if ta["in_path"] != tb["in_path"]:
                problems.append(f"{where}: in_path {ta['in_path']} vs {tb['in_path']}")
    if old_fcw != new_fcw:
        problems.append(f"fcw events differ: {old_fcw} vs {new_fcw}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--box-tol", type=float, default=0.05, help="pixels")
    parser.add_argument("--est-tol", type=float, default=1e-3, help="relative and absolute, ttc_s and dist_m")
    args = parser.parse_args()
    problems = compare(args.old, args.new, args.box_tol, args.est_tol)
    frames, fcw = _read(args.new)
    tracks = sum(len(t) for t in frames.values())
    if problems:
        print(f"{len(problems)} differences; first ones:")
        print("\n".join(problems[:20]))
        return 1
    print(f"same: {len(frames)} frames, {tracks} track rows, {len(fcw)} fcw events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
