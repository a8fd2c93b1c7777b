"""Synthetic driving scenarios with exact ground truth, for testing TTC, distance and warnings.

Real object crops (a car's rear and a walking pedestrian, cut from MOTChallenge frames by their
ground-truth boxes) are composited onto a real road frame (the shared dashcam clip), placed and scaled by
the same pinhole camera model the pipeline uses (camera profile `dashcam` by default) as the object
moves at known speeds. Each scenario writes a video and a CSV with, per frame: time, distance, the
first-order TTC (distance / closing speed; empty when not closing), whether the object is in the ego
path, and its box.

    python -m perception.eval.synthetic OUT_DIR [--scenario NAME ...]
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from perception.core.camera_profile import load_camera_profile
from perception.core.errors import PerceptionError
from perception.threat.camera import Camera

FPS = 25.0
FRAME_HW = (540, 960)
KMH = 1 / 3.6
MIN_DIST_M = 5.5  # closer than this the object leaves the bottom of the frame


@dataclass(frozen=True)
class Scenario:
    """Object motion relative to the ego car: lateral x_m(t) (right +) and distance z_m(t) ahead."""

    name: str
    kind: str  # "car" or "pedestrian"
    duration_s: float
    x_m: Callable[[float], float]
    z_m: Callable[[float], float]
    threat: bool  # should a forward collision warning fire
    description: str


def _braking_gap(t: float, gap_m: float = 30.0, brake_at_s: float = 0.5, decel: float = 2.0) -> float:
    """Lead and ego at 50 km/h; the lead brakes at `decel` from brake_at_s (the ego does not)."""
    tau = max(t - brake_at_s, 0.0)
    stop_s = 50 * KMH / decel
    if tau <= stop_s:
        return gap_m - 0.5 * decel * tau**2
    return gap_m - 0.5 * decel * stop_s**2 - 50 * KMH * (tau - stop_s)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario(
            "car_stopped_50kmh",
            "car",
            (75 - MIN_DIST_M) / (50 * KMH),
            lambda t: 0.0,
            lambda t: 75 - 50 * KMH * t,
            True,
            "stopped car ahead, approached at 50 km/h (Euro NCAP CCRs-like)",
        ),
        Scenario(
            "car_braking",
            "car",
            5.0,
            lambda t: 0.0,
            _braking_gap,
            True,
            "car ahead at 50 km/h, 30 m gap, brakes at 2 m/s^2; the ego keeps its speed",
        ),
        Scenario(
            "pedestrian_crossing",
            "pedestrian",
            3.9,
            lambda t: -4.0 + 1.4 * t,
            lambda t: 38 - 30 * KMH * t,
            True,
            "pedestrian walking at 1.4 m/s from the kerb into the path, ego at 30 km/h",
        ),
        Scenario(
            "car_constant_gap",
            "car",
            5.0,
            lambda t: 0.0,
            lambda t: 20.0,
            False,
            "car ahead at a constant 20 m gap (same speed): no threat",
        ),
        Scenario(
            "car_adjacent_overtaken",
            "car",
            4.0,
            lambda t: 3.6,
            lambda t: 40 - 20 * KMH * 1.5 * t,
            False,
            "car in the next lane, overtaken 30 km/h faster: never in the path",
        ),
    )
}


@dataclass(frozen=True)
class Sprite:
    image: np.ndarray
    height_m: float

    @property
    def width_m(self) -> float:
        return self.height_m * self.image.shape[1] / self.image.shape[0]


def _crop_from_gt(seq_dir: Path, mot_class: int, frame: int = 1) -> np.ndarray:
    """The largest fully visible object of a MOT17 class in a frame, cut by its ground-truth box."""
    gt = np.loadtxt(seq_dir / "gt" / "gt.txt", delimiter=",", ndmin=2)
    rows = gt[(gt[:, 0] == frame) & (gt[:, 7] == mot_class) & (gt[:, 8] >= 0.95)]
    if not len(rows):
        raise PerceptionError(f"no fully visible object of class {mot_class} in {seq_dir} frame {frame}")
    x, y, w, h = rows[np.argmax(rows[:, 4] * rows[:, 5]), 2:6].astype(int)
    image = cv2.imread(str(seq_dir / "img1" / f"{frame:06d}.jpg"))
    if image is None:
        raise PerceptionError(f"cannot read {seq_dir / 'img1'}")
    return image[max(y, 0) : y + h, max(x, 0) : x + w].copy()


def load_assets(assets: Path) -> tuple[np.ndarray, dict[str, Sprite]]:
    """Road frame (first frame of the shared dashcam clip) and the two sprites."""
    cap = cv2.VideoCapture(str(assets / "videos" / "highway_960x540_25fps.mp4"))
    ok, road = cap.read()
    cap.release()
    if not ok:
        raise PerceptionError(f"cannot read the road frame from {assets / 'videos'}")
    mot = assets / "mot" / "MOT17-mini"
    sprites = {
        "car": Sprite(_crop_from_gt(mot / "MOT17-13-FRCNN", 3), 1.5),
        "pedestrian": Sprite(_crop_from_gt(mot / "MOT17-09-FRCNN", 1), 1.7),
    }
    return cv2.resize(road, FRAME_HW[::-1]), sprites


def _paste(canvas: np.ndarray, sprite: np.ndarray, x1: float, y1: float, x2: float, y2: float) -> None:
    """Alpha-blend the sprite into the box [x1, x2] x [y1, y2] at sub-pixel precision (an approaching
    object grows by fractions of a pixel per frame; rounding would make it grow in jumps), with
    feathered edges, clipped to the canvas."""
    w, h = x2 - x1, y2 - y1
    if w < 2 or h < 2:
        return
    # Area-resample close to the target first (no aliasing), then an affine warp for the exact
    # fractional scale and offset.
    base_w, base_h = max(2, round(w)), max(2, round(h))
    interp = cv2.INTER_AREA if base_h < sprite.shape[0] else cv2.INTER_CUBIC
    base = cv2.resize(sprite, (base_w, base_h), interpolation=interp).astype(np.float32)
    ramp = max(1.0, 0.06 * min(base_w, base_h))
    ex = np.minimum(np.arange(base_w) + 0.5, base_w - np.arange(base_w) - 0.5) / ramp
    ey = np.minimum(np.arange(base_h) + 0.5, base_h - np.arange(base_h) - 0.5) / ramp
    alpha = np.clip(np.minimum(ey[:, None], ex[None, :]), 0, 1).astype(np.float32)
    ox, oy = int(np.floor(x1)), int(np.floor(y1))
    roi_w, roi_h = int(np.ceil(x2)) - ox + 1, int(np.ceil(y2)) - oy + 1
    affine = np.float32([[w / base_w, 0, x1 - ox], [0, h / base_h, y1 - oy]])
    patch = cv2.warpAffine(
        base, affine, (roi_w, roi_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    a = cv2.warpAffine(alpha, affine, (roi_w, roi_h), flags=cv2.INTER_LINEAR, borderValue=0)[:, :, None]
    cx1, cy1 = max(ox, 0), max(oy, 0)
    cx2, cy2 = min(ox + roi_w, canvas.shape[1]), min(oy + roi_h, canvas.shape[0])
    if cx2 <= cx1 or cy2 <= cy1:
        return
    px, py = cx1 - ox, cy1 - oy
    a = a[py : py + cy2 - cy1, px : px + cx2 - cx1]
    p = patch[py : py + cy2 - cy1, px : px + cx2 - cx1]
    region = canvas[cy1:cy2, cx1:cx2].astype(np.float32)
    canvas[cy1:cy2, cx1:cx2] = np.clip(a * p + (1 - a) * region + 0.5, 0, 255).astype(np.uint8)


def _collision_in_s(scenario: Scenario, t: float, horizon_s: float = 15.0) -> float | None:
    """Actual time until the gap closes, from the scenario's own motion (not the first-order TTC)."""
    steps = np.arange(t, t + horizon_s, 5e-3)
    gaps = np.array([scenario.z_m(float(s)) for s in steps])
    closed = np.flatnonzero(gaps <= 0)
    return float(steps[closed[0]] - t) if len(closed) else None


def grey_copy(src: Path, dst: Path) -> Path:
    """The clip with its colour removed (grey in all three channels), as a grey camera would give it."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        if writer is None:
            writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
        writer.write(cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR))
    cap.release()
    if writer is not None:
        writer.release()
    return dst


def render(
    scenario: Scenario,
    out_dir: Path,
    assets: Path,
    camera_profile: str = "dashcam",
    lane_width_m: float = 3.5,
) -> tuple[Path, Path]:
    """Write OUT_DIR/NAME.mp4 and OUT_DIR/NAME.csv; returns their paths."""
    road, sprites = load_assets(assets)
    sprite = sprites[scenario.kind]
    camera = Camera(load_camera_profile(camera_profile), FRAME_HW)
    out_dir.mkdir(parents=True, exist_ok=True)
    video_path, csv_path = out_dir / f"{scenario.name}.mp4", out_dir / f"{scenario.name}.csv"
    writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, FRAME_HW[::-1])
    dt = 1e-3
    with csv_path.open("w", newline="") as f:
        rows = csv.writer(f)
        rows.writerow(
            ["frame", "t_s", "dist_m", "ttc_s", "collision_in_s", "in_path", "x1", "y1", "x2", "y2"]
        )
        for i in range(int(scenario.duration_s * FPS) + 1):
            t = i / FPS
            z, x = scenario.z_m(t), scenario.x_m(t)
            if z < MIN_DIST_M:
                break
            closing = (scenario.z_m(t - dt) - scenario.z_m(t + dt)) / (2 * dt)
            half = sprite.width_m / 2
            u_left, v_bottom = camera.project_ground(np.array(x - half), np.array(z))
            u_right, _ = camera.project_ground(np.array(x + half), np.array(z))
            _, v_top = camera.project_ground(np.array(x), np.array(z), sprite.height_m)
            box = (float(u_left), float(v_top), float(u_right), float(v_bottom))
            frame = road.copy()
            _paste(frame, sprite.image, *box)
            writer.write(frame)
            in_path = abs(x) - half < lane_width_m / 2
            ttc = z / closing if closing > 1e-3 else None
            hit = _collision_in_s(scenario, t) if in_path else None
            rows.writerow(
                [
                    i,
                    f"{t:.4f}",
                    f"{z:.3f}",
                    "" if ttc is None else f"{ttc:.3f}",
                    "" if hit is None else f"{hit:.3f}",
                    int(in_path),
                    *(f"{v:.1f}" for v in box),
                ]
            )
    writer.release()
    return video_path, csv_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--scenario", nargs="+", choices=sorted(SCENARIOS), default=sorted(SCENARIOS))
    parser.add_argument(
        "--assets", type=Path, default=Path(os.environ.get("PERCEPTION_ASSETS", Path.cwd().parent / "shared"))
    )
    args = parser.parse_args()
    for name in args.scenario:
        video, truth = render(SCENARIOS[name], args.out_dir, args.assets)
        print(f"{name}: {video} {truth}  ({SCENARIOS[name].description})")


if __name__ == "__main__":
    main()
