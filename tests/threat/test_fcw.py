"""The warning state machine on hand-made tracks whose estimates are known: persistence, hysteresis,
cooldown, the ego path, and what a warning event says."""

from __future__ import annotations

import numpy as np

from perception.core.camera_profile import load_camera_profile
from perception.core.config import Config
from perception.core.types import Tracks
from perception.threat.camera import Camera
from perception.threat.fcw import ForwardCollisionWarning

KIND = "unit"


WARM_UP = 10  # frames with no threat first: the track is held in the path after fcw.in_path_hold_s


def one_track(ttc_s: float, lateral_m: float = 0.0, dist_m: float = 20.0) -> Tracks:
    """A car whose estimates are all known and trusted (the FCW's inputs, not the estimators')."""
    tracks = Tracks.new(
        ids=np.array([7]),
        boxes_xyxy=np.array([[440.0, 300.0, 520.0, 380.0]], np.float32),
        scores=np.array([0.9], np.float32),
        class_ids=np.array([2], np.int32),
        label_ids=np.array([2], np.int32),
    )
    tracks.ttc_s[:], tracks.ttc_std_s[:], tracks.ttc_plausible[:] = ttc_s, 0.05 * ttc_s, True
    tracks.dist_m[:], tracks.dist_std_m[:] = dist_m, 0.1 * dist_m
    tracks.lateral_m[:], tracks.width_m[:], tracks.lateral_std_m[:] = lateral_m, 1.8, 0.1
    tracks.lateral_speed_mps[:], tracks.lateral_speed_std_mps[:] = 0.0, 0.05
    return tracks


def run_fcw(cfg: Config, ttc_by_frame: list[float], lateral_m: float = 0.0) -> tuple[list, list]:
    """Levels and events over the sequence (after the warm-up), 25 fps."""
    camera = Camera(load_camera_profile("dashcam"), (540, 960))
    fcw = ForwardCollisionWarning(cfg.fcw, cfg.labels)
    levels, events = [], []
    for i, ttc in enumerate([10.0] * WARM_UP + list(ttc_by_frame)):
        state, new = fcw.update(one_track(ttc, lateral_m), i * 0.04, camera, i)
        levels.append(state.level.label)
        events += new
    assert set(levels[:WARM_UP]) == {"none"}
    return levels[WARM_UP:], events


def test_warning_needs_persistence_then_holds_with_hysteresis(cfg: Config) -> None:
    # 0.2 s persistence = 5 frames at 25 fps: a 3-frame dip does nothing
    levels, events = run_fcw(cfg, [6.0] * 5 + [2.0] * 3 + [6.0] * 5)
    assert set(levels) == {"none"} and events == []
    # a sustained threat: warning after 5 frames at or below 3.6 s
    levels, events = run_fcw(cfg, [6.0] * 3 + [3.0] * 10)
    assert levels.index("warning") == 3 + 5
    assert [e.level for e in events] == ["warning"] and events[0].track_id == 7
    # hysteresis: TTC 3.9 s (above 3.6 but within +15 %) keeps the warning
    levels, _ = run_fcw(cfg, [3.0] * 10 + [3.9] * 30)
    assert levels[-1] == "warning"


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
