"""The warning state machine on hand-made tracks whose estimates are known: kinematic timing, persistence,
hysteresis, cooldown, the ego path (straight and bending), crossing road users, a warning per object, and
what a warning event says."""

from __future__ import annotations

import numpy as np
import pytest

from perception.core.camera_profile import load_camera_profile
from perception.core.config import Config
from perception.core.types import EgoMotion, Tracks
from perception.threat.camera import Camera
from perception.threat.fcw import ForwardCollisionWarning
from perception.threat.path import EgoPath, required_decel_mps2

KIND = "unit"


WARM_UP = 10  # frames with no threat first: the track is held in the path after fcw.in_path_hold_s
CLOSING_MPS = 15.0  # 54 km/h: a TTC of 3 s is then 45 m, and needs 5 m/s^2 after a 1.5 s reaction


def tracks_of(rows: list[dict]) -> Tracks:
    """Objects whose estimates are all known and trusted (the FCW's inputs, not the estimators'): each row
    gives id, ttc_s, dist_m and optionally lateral_m, lateral_speed_mps, width_m, label_id (2: vehicle)."""
    n = len(rows)
    tracks = Tracks.new(
        ids=np.array([r["id"] for r in rows]),
        boxes_xyxy=np.tile(np.array([[440.0, 300.0, 520.0, 380.0]], np.float32), (n, 1)),
        scores=np.full(n, 0.9, np.float32),
        class_ids=np.array([r.get("label_id", 2) for r in rows], np.int32),
        label_ids=np.array([r.get("label_id", 2) for r in rows], np.int32),
    )
    ttc = np.array([r["ttc_s"] for r in rows], np.float64)
    tracks.ttc_s[:], tracks.ttc_std_s[:], tracks.ttc_plausible[:] = ttc, 0.05 * ttc, True
    dist = np.array([r["dist_m"] for r in rows])
    tracks.dist_m[:], tracks.dist_std_m[:] = dist, 0.05 * dist
    tracks.lateral_m[:] = [r.get("lateral_m", 0.0) for r in rows]
    tracks.width_m[:] = [r.get("width_m", 1.8) for r in rows]
    tracks.lateral_std_m[:] = 0.1
    tracks.lateral_speed_mps[:] = [r.get("lateral_speed_mps", 0.0) for r in rows]
    tracks.lateral_speed_std_mps[:] = 0.1
    return tracks


def one_track(ttc_s: float, lateral_m: float = 0.0, closing_mps: float = CLOSING_MPS) -> Tracks:
    return tracks_of([{"id": 7, "ttc_s": ttc_s, "dist_m": closing_mps * ttc_s, "lateral_m": lateral_m}])


def run_frames(cfg: Config, frames: list[Tracks], ego: EgoMotion | None = None) -> tuple[list, list]:
    """Levels and events over the frames, 25 fps."""
    camera = Camera(load_camera_profile("dashcam"), (540, 960))
    fcw = ForwardCollisionWarning(cfg.fcw, cfg.labels)
    levels, events = [], []
    for i, tracks in enumerate(frames):
        state, new = fcw.update(tracks, i * 0.04, camera, i, ego)
        levels.append(state.level.label)
        events += new
    return levels, events


def run_fcw(
    cfg: Config, ttc_by_frame: list[float], lateral_m: float = 0.0, closing_mps: float = CLOSING_MPS
) -> tuple[list, list]:
    """Levels and events over the sequence (after the warm-up), 25 fps."""
    ttcs = [10.0] * WARM_UP + list(ttc_by_frame)
    levels, events = run_frames(cfg, [one_track(t, lateral_m, closing_mps) for t in ttcs])
    assert set(levels[:WARM_UP]) == {"none"}
    return levels[WARM_UP:], events


def test_warning_needs_persistence_then_holds_with_hysteresis(cfg: Config) -> None:
    # 0.2 s persistence = 5 frames at 25 fps: a 3-frame dip does nothing
    levels, events = run_fcw(cfg, [6.0] * 5 + [2.0] * 3 + [6.0] * 5)
    assert set(levels) == {"none"} and events == []
    # a sustained threat: warning after 5 frames needing more than 4 m/s^2 (TTC 3.0 s at 15 m/s: 5 m/s^2)
    levels, events = run_fcw(cfg, [6.0] * 3 + [3.0] * 10)
    assert levels.index("warning") == 3 + 5
    assert [e.level for e in events] == ["warning"] and events[0].track_id == 7
    # hysteresis: TTC 3.5 s needs 3.75 m/s^2 (below 4 but within 15 %): the warning holds; 4.0 s drops it
    assert float(required_decel_mps2(np.array([52.5]), np.array([3.5]), 1.5)[0]) == pytest.approx(3.75)
    levels, _ = run_fcw(cfg, [3.0] * 10 + [3.5] * 30)
    assert levels[-1] == "warning"
    levels, _ = run_fcw(cfg, [3.0] * 10 + [4.0] * 30)
    assert levels[-1] != "warning"


def test_the_same_ttc_warns_at_speed_not_in_a_slow_approach(cfg: Config) -> None:
    """3.6 s at 5 m/s (18 m) needs 1.2 m/s^2 of braking: normal driving. At 20 m/s (72 m): 4.8 m/s^2."""
    levels, events = run_fcw(cfg, [3.6] * 30, closing_mps=5.0)
    assert set(levels) == {"none"} and events == []
    levels, events = run_fcw(cfg, [3.6] * 30, closing_mps=20.0)
    assert levels[-1] == "warning" and events[0].required_decel_mps2 == pytest.approx(4.76, abs=0.01)


def test_warning_clears_and_cooldown_holds_the_next_back(cfg: Config) -> None:
    ttc = [3.0] * 10 + [10.0] * 20 + [3.0] * 20  # warn, clear (0.5 s), threat again within 3 s
    levels, events = run_fcw(cfg, ttc)
    assert [e.level for e in events] == ["warning", "none", "caution"]
    assert "warning" not in levels[30:]  # cooldown: caution only


def test_out_of_path_tracks_never_warn(cfg: Config) -> None:
    levels, events = run_fcw(cfg, [1.5] * 30, lateral_m=-3.5)  # the next lane, left
    assert set(levels) == {"none"} and events == []


def test_warning_event_names_the_lead(cfg: Config) -> None:
    _, events = run_fcw(cfg, [3.0] * 10)
    assert events[0].reason == "lead" and events[0].lateral_m == 0.0 and events[0].truncated is False
    assert events[0].required_decel_mps2 == pytest.approx(5.0)


def test_a_warning_follows_its_object(cfg: Config) -> None:
    """Car 7 warns, then leaves the path (a lane change): its level falls with the usual hold. Car 8 then
    threatens while 7's warning is still up: it raises its own event."""
    a = {"id": 7, "ttc_s": 3.0, "dist_m": 45.0}
    b = {"id": 8, "ttc_s": 2.5, "dist_m": 37.5, "lateral_m": -3.5}  # first in the next lane
    frames = [tracks_of([{**a, "ttc_s": 10.0, "dist_m": 150.0}, b])] * WARM_UP
    frames += [tracks_of([a, b])] * 10  # 7 warns
    frames += [tracks_of([{**a, "lateral_m": 3.5}, {**b, "lateral_m": 0.0}])] * 30  # 7 out, 8 in
    levels, events = run_frames(cfg, frames)
    assert [(e.track_id, e.previous, e.level) for e in events] == [
        (7, "none", "warning"),
        (8, "none", "warning"),  # 8's own, while 7's is still held
        (7, "warning", "none"),
    ]
    assert set(levels[WARM_UP + 5 :]) == {"warning"}


def test_a_car_beside_a_curve_warns_only_on_a_straight_path(cfg: Config) -> None:
    """A car standing 18 m ahead, 1 m left of the camera axis, TTC 1.5 s at 12 m/s: in a straight corridor it
    is the lead; with the ego turning right (25 deg/s at 12 m/s: a 27.5 m radius) the path bends 6.7 m right
    by then, and the car is beside it."""
    car = tracks_of([{"id": 3, "ttc_s": 1.5, "dist_m": 18.0, "lateral_m": -1.0}])
    turning = EgoMotion(12.0, 0.3, 25.0, 1.0)
    offset, std = EgoPath.of(turning, cfg.fcw).offset_m(np.array([18.0]))
    assert 6.4 < offset[0] < 7.0 and std[0] < 0.5  # 27.5 - sqrt(27.5^2 - 18^2) = 6.7
    straight, _ = run_frames(cfg, [car] * 30)
    curved, events = run_frames(cfg, [car] * 30, turning)
    assert straight[-1] == "warning" and set(curved) == {"none"} and events == []


PEDESTRIAN = 0  # label id of the taxonomy's first label


def crossing(lateral_m: float, speed_mps: float, ttc_s: float = 2.5, closing_mps: float = 10.0) -> Tracks:
    return tracks_of([{
        "id": 5, "ttc_s": ttc_s, "dist_m": closing_mps * ttc_s, "lateral_m": lateral_m,
        "lateral_speed_mps": speed_mps, "width_m": 0.6, "label_id": PEDESTRIAN,
    }])  # fmt: skip


def test_a_crossing_pedestrian_warns_before_it_is_in_the_path(cfg: Config) -> None:
    """4 m to the right, walking left at 1.5 m/s, reached in 2.5 s: in the path by then (0.25 m right of
    its centre line), so it warns now, outside the corridor. One that stops at the kerb, or one that will
    have crossed clear by then (a cyclist at 5 m/s), does not."""
    levels, events = run_frames(cfg, [crossing(4.0, -1.5)] * 30)
    assert levels[-1] == "warning" and events[0].reason == "crossing" and events[0].lateral_m == 4.0
    levels, _ = run_frames(cfg, [crossing(4.0, 0.0)] * 30)
    assert set(levels) == {"none"}
    levels, _ = run_frames(cfg, [crossing(4.0, -5.0)] * 30)
    assert set(levels) == {"none"}


def test_the_ego_stopped_with_traffic_crossing_never_warns(cfg: Config) -> None:
    """Nothing closes on a stopped car: a crossing car's TTC is unmeasurable (infinite)."""
    stopped = EgoMotion(0.0, 0.1, 0.0, 0.5, stopped=True)
    frames = [crossing(4.0 - 0.4 * i, -10.0, ttc_s=np.inf, closing_mps=0.0) for i in range(30)]
    for t in frames:
        t.dist_m[:] = 12.0
    levels, events = run_frames(cfg, frames, stopped)
    assert set(levels) == {"none"} and events == []
