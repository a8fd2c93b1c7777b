"""The events.jsonl schema: records serialise as documented and read back; anything else is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from perception.core.events import (
    EndEvent,
    FcwEvent,
    RunStatus,
    SourceEvent,
    SourceState,
    Stage,
    WarningLevel,
    parse_event,
)
from perception.core.types import CollisionWarning, Detections, EgoMotion, Frame, FrameResult, Tracks
from perception.output.sinks import ego_hud, frame_event

KIND = "unit"


def a_result() -> FrameResult:
    tracks = Tracks.new(
        np.array([3, 9]),
        np.array([[10, 20, 50, 80], [100.04, 5, 180, 60]]),
        np.array([0.91234, 0.5]),
        np.array([2, 0]),
        np.array([2, 0]),
    )
    tracks.ttc_s[0], tracks.dist_m[:] = 4.25, (12.345, np.nan)
    tracks.in_path[0], tracks.lead[0], tracks.ttc_plausible[0], tracks.truncated[1] = True, True, True, True
    tracks.lateral_m[0], tracks.lateral_speed_mps[0] = -0.304, 0.0
    frame = Frame(np.zeros((120, 200, 3), np.uint8), 17, 123_456_789, 0.68)
    latency = {Stage.DETECT: 12.3456, Stage.E2E: 20.0}
    return FrameResult(
        frame, Detections.empty(), tracks, latency, CollisionWarning(WarningLevel.CAUTION, 3, 4.25)
    )


def test_frame_line_round_trip() -> None:
    event = frame_event(
        a_result(), ["pedestrian", "cyclist", "vehicle"], ["person", "bicycle", "car"]
    )
    line = json.dumps(event.to_dict(), allow_nan=False)
    data = json.loads(line)
    assert list(data)[:2] == ["type", "frame"] and data["type"] == "frame" and data["fcw"] == "caution"
    assert data["latency_ms"] == {"detect": 12.346, "e2e": 20.0}
    assert data["tracks"][0] == {
        "id": 3,
        "label": "vehicle",
        "class": "car",
        "box": [10.0, 20.0, 50.0, 80.0],
        "score": 0.912,
        "ttc_s": 4.25,
        "dist_m": 12.35,
        "in_path": True,
        "lateral_m": -0.3,
        "lateral_speed_mps": 0.0,
        "truncated": False,
        "ttc_plausible": True,
        "lead": True,
        "cut_in": False,
    }
    second = data["tracks"][1]
    assert second["ttc_s"] is None and second["dist_m"] is None and second["lateral_m"] is None  # unknown
    assert second["truncated"] and not second["lead"] and not second["ttc_plausible"]
    assert parse_event(line) == event


def test_frame_line_ego_motion_fields() -> None:
    """Unknown ego motion is null; a measured one is rounded and reads back; a string is refused."""
    labels, names = ["pedestrian", "cyclist", "vehicle"], ["person", "bicycle", "car"]
    unknown = frame_event(a_result(), labels, names).to_dict()
    ego_keys = ["ego_speed_mps", "ego_speed_std_mps", "ego_yaw_rate_dps", "ego_yaw_rate_std_dps"]
    ego_keys += ["ego_stopped", "camera_motion_confidence"]
    assert list(unknown)[-6:] == ego_keys and all(unknown[k] is None for k in ego_keys)
    result = a_result()
    result.ego = EgoMotion(9.87654, 0.2, -12.34567, float("nan"), False, 0.93)
    data = json.loads(json.dumps(frame_event(result, labels, names).to_dict(), allow_nan=False))
    assert [data[k] for k in ego_keys] == [9.877, 0.2, -12.346, None, False, 0.93]
    assert parse_event(data) == frame_event(result, labels, names)
    with pytest.raises(ValueError, match="ego_speed_mps"):
        parse_event({**data, "ego_speed_mps": "9.9"})


def test_ego_motion_on_the_video_line() -> None:
    assert ego_hud(EgoMotion()) == ""
    assert ego_hud(EgoMotion(22.5, 1.0, -1.23, 0.1, False, 0.9)) == "  ego 81 km/h -1.2 deg/s"
    assert ego_hud(EgoMotion(yaw_rate_dps=3.0)) == "  ego +3.0 deg/s"
    assert ego_hud(EgoMotion(0.0, float("nan"), 0.0, float("nan"), True, 1.0)) == "  stopped"


def test_source_events_carry_only_their_state_details() -> None:
    event = SourceEvent(
        SourceState.RECONNECTING, "rtsp://cam/live", 5, attempt=2, max_attempts="forever", delay_s=1.0
    )
    data = event.to_dict()
    assert data == {
        "type": "source",
        "state": "reconnecting",
        "source": "rtsp://cam/live",
        "at_ns": 5,
        "attempt": 2,
        "max_attempts": "forever",
        "delay_s": 1.0,
    }
    assert parse_event(json.dumps(data)) == event
    assert event.describe() == "source reconnecting (attempt 2, max_attempts forever, delay_s 1.0)"


def test_end_and_fcw_lines() -> None:
    end = EndEvent(RunStatus.ERROR, 10, 9, 0, 0, 0, 1.5, 6.0, False)
    assert end.to_dict()["status"] == "error"
    assert parse_event(end.to_dict()) == end
    fcw = FcwEvent("warning", "caution", 4, 3.1, 20.5, "crossing", -1.2, 0.8, False, 4.7, 88, 3.52)
    assert fcw.to_dict()["required_decel_mps2"] == 4.7
    assert parse_event(fcw.to_dict()) == fcw
    cleared = FcwEvent("none", "warning", None, None, None, None, None, None, None, None, 95, 3.8)
    assert parse_event(cleared.to_dict()) == cleared


@pytest.mark.parametrize(
    "line, problem",
    [
        ({"type": "telemetry"}, "unknown event type"),
        ({"type": "error", "stage": "detect"}, "message"),  # missing key
        ({"type": "error", "stage": "detect", "message": "x", "extra": 1}, "extra"),  # unknown key
        (
            {
                "type": "fcw",
                "level": "warning",
                "previous": "none",
                "track_id": "4",
                "ttc_s": 1.0,
                "dist_m": 2.0,
                "reason": "lead",
                "lateral_m": 0.0,
                "lateral_speed_mps": 0.0,
                "truncated": False,
                "frame": 1,
                "source_ts_s": 0.1,
            },
            "track_id",
        ),  # a string for a number
        ({"type": "source", "state": "exploded", "source": "x", "at_ns": 1}, "state"),
    ],
)
def test_lines_off_the_schema_are_refused(line: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_event(line)


def test_warning_levels_are_ordered() -> None:
    assert WarningLevel.NONE < WarningLevel.CAUTION < WarningLevel.WARNING
    assert (
        WarningLevel.from_label("caution") is WarningLevel.CAUTION and WarningLevel.WARNING.label == "warning"
    )
