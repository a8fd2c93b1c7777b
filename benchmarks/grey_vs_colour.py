"""Does anything but the detector see the difference between a clip and its grayscale copy?

    python benchmarks/grey_vs_colour.py [--clip ../shared/videos/highway_960x540_25fps.mp4]

Makes the grayscale copy in a temporary folder (never kept), runs `perception run` on both, and reports:
1. what the stages after the detector read: the grey image optical flow works on (cv2.COLOR_BGR2GRAY of
   either input), compared pixel by pixel;
2. what the detector returns on each: detections per frame, their scores;
3. what reaches the warning: tracks with a TTC, with a trusted TTC (`ttc_plausible`), in the path, the
   lead; the boxes of tracks whose TTC is shown but not trusted; and the fcw events.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from perception.eval.synthetic import grey_copy

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))


def flow_inputs_differ(a: Path, b: Path) -> tuple[float, float]:
    """Mean and 99th percentile absolute difference (grey levels) of the images optical flow reads."""
    cap_a, cap_b = cv2.VideoCapture(str(a)), cv2.VideoCapture(str(b))
    diffs = []
    while True:
        ok_a, fa = cap_a.read()
        ok_b, fb = cap_b.read()
        if not (ok_a and ok_b):
            break
        ga, gb = cv2.cvtColor(fa, cv2.COLOR_BGR2GRAY), cv2.cvtColor(fb, cv2.COLOR_BGR2GRAY)
        diffs.append(np.abs(ga.astype(np.int16) - gb.astype(np.int16)).ravel()[::97])
    d = np.concatenate(diffs)
    return float(d.mean()), float(np.percentile(d, 99))


def summarise(out: Path) -> dict:
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    frames = [e for e in events if e["type"] == "frame"]
    tracks = [t for f in frames for t in f["tracks"]]
    untrusted = [t for t in tracks if t["ttc_s"] is not None and not t["ttc_plausible"]]
    return {
        "detections per frame": round(float(np.mean([f["detections"] for f in frames])), 2),
        "tracks per frame": round(len(tracks) / len(frames), 2),
        "track-frames with a TTC": sum(t["ttc_s"] is not None for t in tracks),
        "... trusted": sum(t["ttc_s"] is not None and t["ttc_plausible"] for t in tracks),
        "... untrusted, box height p50 (px)": round(
            float(np.median([t["box"][3] - t["box"][1] for t in untrusted])), 1
        )
        if untrusted
        else None,
        "shortest untrusted TTC (s)": min((t["ttc_s"] for t in untrusted), default=None),
        "shortest trusted TTC in path (s)": min(
            (t["ttc_s"] for t in tracks if t["ttc_s"] is not None and t["ttc_plausible"] and t["in_path"]),
            default=None,
        ),
        "frames with a lead": sum(any(t["lead"] for t in f["tracks"]) for f in frames),
        "fcw events": [(e["frame"], e["level"], e["reason"]) for e in events if e["type"] == "fcw"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=ASSETS / "videos" / "highway_960x540_25fps.mp4")
    parser.add_argument("--model", default=str(ASSETS / "models" / "yolox_nano.onnx"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        grey = Path(tmp) / "grey.mp4"
        grey_copy(args.clip, grey)
        mean, p99 = flow_inputs_differ(args.clip, grey)
        print(f"grey image read by optical flow, colour vs grey copy: mean |diff| {mean:.2f}, p99 {p99:.0f}")
        for name, clip in (("colour", args.clip), ("grey", grey)):
            out = Path(tmp) / name
            cmd = ["run", str(clip), "--model", args.model, "--backend", "onnxruntime", "--out", str(out)]
            subprocess.run([sys.executable, "-m", "perception.cli", *cmd], check=True, capture_output=True)
            print(f"{name}: {summarise(out)}")


if __name__ == "__main__":
    main()
