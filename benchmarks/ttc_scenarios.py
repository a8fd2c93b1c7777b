"""TTC, distance and forward-collision-warning figures: synthetic scenarios, KITTI distances, a real KITTI
approach with lidar truth, the real highway clip.

    python benchmarks/ttc_scenarios.py [--model ../shared/models/yolox_nano.onnx]

1. Each synthetic scenario (perception.eval.synthetic) rendered to a temp dir and scored by `eval-ttc`.
2. Distance to every labelled object in the 3 KITTI frames the detector finds (KITTI's own P2).
3. The real approach in ../shared/kitti_approach scored by `eval-ttc` against the lidar's lead distance
   (configs/kitti.yaml), on frames 12-46 (closing, true TTC 5.9-10.4 s) and on all 78.
4. Collision warnings on the real highway clip (there should be none).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from perception.core.camera_profile import profile_from_kitti_calib
from perception.core.config import load_config
from perception.detect import create_detector
from perception.eval.synthetic import SCENARIOS, render
from perception.eval.ttc import evaluate_ttc
from perception.threat.camera import Camera, Ranging
from perception.track.tracker import iou_matrix

ASSETS = Path(os.environ.get("PERCEPTION_ASSETS", Path(__file__).resolve().parents[2] / "shared"))


def scenarios(model: str, cfg) -> None:
    print(
        "| scenario | TTC median rel. error (true TTC 1-6 s) | frames with TTC | distance median rel. error "
        "| first warning: real time to collision (s) | TTC shown then (s) | warnings |"
    )
    print("|---|---|---|---|---|---|---|")
    pct = lambda v, digits: "-" if v is None else f"{v:.{digits}%}"  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        for name, scenario in SCENARIOS.items():
            video, truth = render(scenario, Path(tmp), ASSETS)
            s = evaluate_ttc(video, truth, model, cfg)
            warn = s["first_warning"] or {}
            print(
                f"| {name} | {pct(s['ttc_median_rel_error'], 1)} | {pct(s['ttc_estimated_share'], 0)} | "
                f"{pct(s['dist_median_rel_error'], 1)} | {warn.get('collision_in_s', '-')} | "
                f"{warn.get('ttc_s', '-')} | {s['warnings']} |"
            )


def kitti(model: str, cfg) -> None:
    detector = create_detector(model, cfg)
    ranging = Ranging(cfg.ttc, cfg.labels)
    print("\n| KITTI frame | object | true distance (m) | detector IoU | estimated (m) | error |")
    print("|---|---|---|---|---|---|")
    for index in range(3):
        image = cv2.imread(str(ASSETS / "kitti" / "image_2" / f"{index:06d}.png"))
        profile = profile_from_kitti_calib(
            ASSETS / "kitti" / "calib" / f"{index:06d}.txt", image.shape[1::-1]
        )
        dets = detector.detect(image)
        dist, _, _ = ranging(Camera(profile, image.shape[:2]), dets.boxes_xyxy, dets.label_ids)
        for label in (ASSETS / "kitti" / "label_2" / f"{index:06d}.txt").read_text().splitlines():
            f = label.split()
            if f[0] == "DontCare":
                continue
            iou = iou_matrix(np.array([[float(v) for v in f[4:8]]]), dets.boxes_xyxy)[0]
            true_m = float(f[13])
            if len(iou) == 0 or iou.max() < 0.5:
                print(f"| {index:06d} | {f[0]} | {true_m:.1f} | not found | - | - |")
                continue
            est = dist[np.argmax(iou)]
            err = (est - true_m) / true_m
            print(f"| {index:06d} | {f[0]} | {true_m:.1f} | {iou.max():.2f} | {est:.1f} | {err:+.1%} |")


def kitti_approach(model: str) -> None:
    seq = ASSETS / "kitti_approach"
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "kitti.yaml")
    print(
        "\n| KITTI approach frames | lead found | lead TTC shown / trusted | TTC rel. error median / p90 "
        "| distance rel. error median / p90 | cautions | warnings |"
    )
    print("|---|---|---|---|---|---|---|")
    for frames in ((12, 46), None):
        s = evaluate_ttc(seq, seq / "lidar_lead_distance.csv", model, cfg, frames=frames)
        span = f"{frames[0]}-{frames[1]}" if frames else f"all {s['frames']}"
        shares = f"{s['lead_ttc_share']:.0%} / {s['lead_trusted_ttc_share']:.0%}"
        ttc = f"{s['ttc_median_rel_error']:.1%} / {s['ttc_p90_rel_error']:.1%}"
        dist = f"{s['dist_median_rel_error']:.1%} / {s['dist_p90_rel_error']:.1%}"
        print(
            f"| {span} | {s['lead_found_share']:.0%} | {shares} | {ttc} | {dist} | {s['cautions']} "
            f"| {s['warnings']} |"
        )


def highway(model: str) -> None:
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        clip = ASSETS / "videos" / "highway_960x540_25fps.mp4"
        subprocess.run(
            [sys.executable, "-m", "perception.cli", "run", str(clip), "--model", model, "--out", tmp],
            check=True,
            capture_output=True,
        )
        events = [json.loads(x) for x in (Path(tmp) / "events.jsonl").read_text().splitlines()]
    fcw = [e for e in events if e["type"] == "fcw"]
    print(
        f"\nReal highway clip: {sum(e['type'] == 'frame' for e in events)} frames, {len(fcw)} warning events"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ASSETS / "models" / "yolox_nano.onnx"))
    parser.add_argument("--config", help="YAML overriding configs/default.yaml")
    args = parser.parse_args()
    cfg = load_config(args.config)
    scenarios(args.model, cfg)
    kitti(args.model, cfg)
    kitti_approach(args.model)
    highway(args.model)


if __name__ == "__main__":
    main()
