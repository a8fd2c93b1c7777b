"""Which objects may warn: hand-made track sequences through the real tracker, ranging, TTC and warning.

Each object is a box: the image hull of a car-sized cuboid (1.8 m wide, 4.5 m long, 1.5 m tall) placed on
the road by the dashcam profile, so a car off to one side shows its flank the way real boxes do, and a box
reaching past the frame is cut by it as a detector's is. Frames are blank (no texture: no optical flow), so
sizes come from the boxes alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from perception.core.camera_profile import load_camera_profile
from perception.core.config import Config
from perception.core.types import Detections, Frame, FrameResult, Tracks
from perception.runtime.processor import build_processor
from perception.threat.camera import Camera
from perception.threat.lead import LeadSelector

KIND = "unit"

FRAME_HW = (540, 960)
CAMERA = Camera(load_camera_profile("dashcam"), FRAME_HW)
FPS = 25.0
CAR = 2  # COCO car, label vehicle (index 2 of the default taxonomy)
Motion = Callable[[float], tuple[float, float]]  # t -> (lateral x_m, distance z_m of the rear face)


def cuboid_box(x_m: float, z_m: float, width_m: float = 1.8, length_m: float = 4.5, height_m: float = 1.5):
    """The box a detector draws around a car whose rear face is z_m ahead, centred x_m to the right: the
    hull of its eight corners, clipped to the frame (None: nothing of it in view)."""
    xs = np.array([x_m - width_m / 2, x_m + width_m / 2])
    zs = np.array([z_m, z_m + length_m])
    ys = np.array([0.0, height_m])
    x, z, y = (a.ravel() for a in np.meshgrid(xs, zs, ys))
    u, v = CAMERA.project_ground(x, z, y)
    h, w = FRAME_HW
    box = np.array([max(u.min(), 0), max(v.min(), 0), min(u.max(), w), min(v.max(), h)])
    return box if box[2] - box[0] > 2 and box[3] - box[1] > 2 else None


def drive(
    cfg: Config, motions: dict[str, Motion], seconds: float
) -> list[tuple[FrameResult, dict[str, int]]]:
    """Run the processor over the objects' motions; per frame the result and each object's track row."""
    processor = build_processor(cfg)
    image = np.zeros((*FRAME_HW, 3), np.uint8)
    out = []
    for i in range(int(seconds * FPS) + 1):
        t = i / FPS
        boxes = {name: cuboid_box(*motion(t)) for name, motion in motions.items()}
        names = [name for name, box in boxes.items() if box is not None]
        n = len(names)
        detections = Detections(
            np.array([boxes[name] for name in names], np.float32).reshape(n, 4),
            np.full(n, 0.9, np.float32),
            np.full(n, CAR, np.int32),
            np.full(n, cfg.labels.index("vehicle"), np.int32),
        )
        result = processor.step(Frame(image.copy(), i, 0, t), detections)
        rows = _rows_by_name(result.tracks, [boxes[name] for name in names], names)
        out.append((result, rows))
    return out


def _rows_by_name(tracks: Tracks, boxes: list[np.ndarray], names: list[str]) -> dict[str, int]:
    """Which track row is which object: the track box nearest to the object's box."""
    rows = {}
    for name, box in zip(names, boxes, strict=True):
        if len(tracks):
            gap = np.abs(tracks.boxes_xyxy - box).sum(axis=1)
            if gap.min() < 0.5 * (box[2] - box[0] + box[3] - box[1]):
                rows[name] = int(np.argmin(gap))
    return rows


def alarms(frames: list[tuple[FrameResult, dict[str, int]]]) -> list:
    return [event for result, _ in frames for event in result.events]


@pytest.mark.parametrize("side", [-1.0, 1.0])
def test_adjacent_lane_car_never_warns(cfg: Config, side: float) -> None:
    """A car in the next lane (its near side 0.8 m outside the ego corridor), closing fast (TTC down to
    0.6 s): its box's inner edge, the far end of its flank, reaches into the corridor at the distance of
    its rear, but it is never in the path, never the lead, and never warns."""
    frames = drive(cfg, {"car": lambda t: (side * 3.0, 30.0 - 10.0 * t)}, 2.4)
    # The test means something: a box placed naively (its inner edge at its bottom's distance) would
    # overlap the corridor in the last frames.
    naive_inner = [
        CAMERA.lateral_m(
            np.array(r.tracks.boxes_xyxy[row["car"], 2 if side < 0 else 0]), r.tracks.dist_m[row["car"]]
        )
        for r, row in frames[-10:]
        if "car" in row
    ]
    assert min(abs(float(x)) for x in naive_inner) < cfg.fcw.corridor_width_m / 2
    seen = [(r.tracks, row["car"]) for r, row in frames if "car" in row]
    assert len(seen) >= 0.9 * len(frames)
    assert not any(t.in_path[i] or t.lead[i] or t.cut_in[i] for t, i in seen)
    assert any(t.ttc_plausible[i] and t.ttc_s[i] < cfg.fcw.warning_ttc_s for t, i in seen)  # a real TTC
    assert alarms(frames) == []


def test_occluded_car_beyond_the_lead_never_warns(cfg: Config) -> None:
    """A car 15 m ahead closing slowly leads; beyond it a van (2.8 m tall) is seen only above the lead's
    roof, its lower part hidden, its visible box growing fast (TTC under 2 s). It is never the lead, its
    TTC is never trusted, and nothing warns."""
    lead: Motion = lambda t: (0.0, 15.0 - 0.5 * t)  # noqa: E731
    lead_top = lambda t: cuboid_box(*lead(t))[1]  # noqa: E731

    def beyond(t: float) -> tuple[float, float]:
        return 0.3, 34.0 - 12.0 * t

    processor = build_processor(cfg)
    image = np.zeros((*FRAME_HW, 3), np.uint8)
    lead_ids, beyond_rows, events = set(), [], []
    for i in range(int(1.5 * FPS) + 1):
        t = i / FPS
        lead_box = cuboid_box(*lead(t))
        far = cuboid_box(*beyond(t), height_m=2.8)
        far[3] = min(far[3], lead_top(t) + 4.0)  # its bottom hidden by the lead's roof
        boxes = np.array([lead_box, far], np.float32)
        detections = Detections(
            boxes, np.full(2, 0.9, np.float32), np.full(2, CAR, np.int32), np.full(2, 2, np.int32)
        )
        result = processor.step(Frame(image.copy(), i, 0, t), detections)
        events += result.events
        rows = _rows_by_name(result.tracks, list(boxes), ["lead", "beyond"])
        if "lead" in rows and result.tracks.lead.any():
            lead_ids.add(int(result.tracks.ids[result.tracks.lead][0]))
        if "beyond" in rows:
            beyond_rows.append((result.tracks, rows["beyond"]))
    assert len(lead_ids) == 1 and len(beyond_rows) > 30
    assert any(np.isfinite(t.ttc_s[i]) and t.ttc_s[i] < 2.0 for t, i in beyond_rows)  # it does look close
    assert not any(t.lead[i] or t.ttc_plausible[i] for t, i in beyond_rows)
    assert events == []


def test_lead_cut_by_the_image_bottom_keeps_its_ttc(cfg: Config) -> None:
    """The lead closes from 9 m to 3.5 m at 1.5 m/s; below about 4.7 m its bottom leaves the frame. It stays
    the lead, flagged truncated, its TTC known and within 10 % of the truth, its distance carried by the
    size change (within 10 %) instead of read off a cut box."""
    frames = drive(cfg, {"lead": lambda t: (0.2, 9.0 - 1.5 * t)}, 3.6)
    cut = [(r, row["lead"]) for r, row in frames if "lead" in row and r.tracks.truncated[row["lead"]]]
    assert len(cut) >= 15
    for result, i in cut:
        z = 9.0 - 1.5 * result.frame.source_ts_s
        tracks = result.tracks
        assert tracks.lead[i]
        assert tracks.ttc_s[i] == pytest.approx(z / 1.5, rel=0.10)
        assert tracks.dist_m[i] == pytest.approx(z, rel=0.10)
        assert tracks.ttc_plausible[i]


def test_car_cutting_in_warns(cfg: Config) -> None:
    """A car from the next lane moves in at 1.2 m/s while 20 m ahead and closing at 6 m/s: the warning
    rises while it is still cutting in (before it is held in the path), naming it as a cut-in."""
    frames = drive(cfg, {"car": lambda t: (min(-3.3 + 1.2 * t, 0.0), 20.0 - 6.0 * t)}, 2.5)
    events = alarms(frames)
    assert events and events[0].reason == "cut_in" and events[0].level in ("caution", "warning")
    assert "warning" in [e.level for e in events]
    first = next(r for r, _ in frames if r.frame.index == events[0].frame)
    assert first.tracks.cut_in.any() and not first.tracks.in_path.any()


def _two_cars(dist_a: float, dist_b: float) -> Tracks:
    tracks = Tracks.new(np.array([1, 2]), np.zeros((2, 4)), np.ones(2), np.full(2, CAR), np.full(2, 2))
    tracks.dist_m[:], tracks.dist_std_m[:] = (dist_a, dist_b), 1.0
    tracks.lateral_m[:], tracks.width_m[:], tracks.lateral_std_m[:] = 0.0, 1.8, 0.1
    tracks.boxes_xyxy[:] = [
        [400, 300, 480, 360],
        [700, 300, 780, 360],
    ]  # side by side: neither hides the other
    return tracks


def test_lead_holds_against_a_car_as_near_and_switches_to_a_clearly_nearer_one(cfg: Config) -> None:
    """Two in-path cars whose distances cross back and forth within their uncertainty: the lead stays the
    first chosen. When the other is nearer beyond both uncertainties for lead_switch_s, it takes over."""
    selector = LeadSelector(cfg.fcw, cfg.labels)
    leads = []
    for i in range(60):
        t = i / FPS
        a, b = (20.0, 20.6) if i < 10 else (20.0 + 0.5 * (-1) ** i, 20.0 - 0.5 * (-1) ** i)
        if i >= 40:
            b = 15.0
        tracks = _two_cars(a, b)
        selector.update(tracks, t)
        leads.append(int(tracks.ids[tracks.lead][0]) if tracks.lead.any() else None)
    assert set(leads[10:40]) == {1}  # no flicker while the two are as near as each other
    switched = leads.index(2)
    assert 40 + cfg.fcw.lead_switch_s * FPS - 1 <= switched <= 40 + cfg.fcw.lead_switch_s * FPS + 1
    assert set(leads[switched:]) == {2}
