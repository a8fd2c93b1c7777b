"""The car's own telemetry (perception/sources/telemetry.py): CSV, NMEA RMC/VTG and GPX read onto the
video's clock, interpolated per frame, a turn rate from the course; a run uses it instead of the camera's
estimate, and telemetry that does not cover the video is refused in one line."""

from __future__ import annotations

import datetime as dt
import math
from functools import reduce
from pathlib import Path

import gpxpy.gpx
import numpy as np
import pytest

from perception.core.errors import PerceptionError
from perception.sources.telemetry import KNOTS_MPS, load_telemetry
from tests.conftest import ASSETS, YOLOX_ONNX
from tests.helpers import assert_one_line_error, read_events, run_cli

KIND = "unit"

KITTI_EGO = ASSETS / "ego" / "kitti_odometry_01"


def nmea(body: str) -> str:
    checksum = reduce(lambda a, c: a ^ ord(c), body, 0)
    return f"${body}*{checksum:02X}"


def turning_right(seconds: int, speed_mps: float, yaw_dps: float) -> list[tuple[float, float, float]]:
    """(t_s, speed, course) once a second of a car turning right at a constant rate."""
    return [(t, speed_mps, (30.0 + yaw_dps * t) % 360) for t in range(seconds)]


@pytest.mark.unit
def test_csv_is_on_the_videos_clock(tmp_path: Path) -> None:
    csv = tmp_path / "drive.csv"
    csv.write_text("t_s,speed_mps,yaw_rate_dps\n0.0,10.0,0.0\n1.0,12.0,5.0\n2.0,12.0,\n")
    tel = load_telemetry(csv)
    half = tel.at(0.5)
    assert half.speed_mps == pytest.approx(11.0) and half.yaw_rate_dps == pytest.approx(2.5)
    assert not half.stopped
    assert math.isnan(tel.at(2.0).yaw_rate_dps)  # not recorded: unknown
    assert tel.at(-0.4) is not None and tel.at(-0.6) is None and tel.at(2.6) is None  # held 0.5 s, no more
    shifted = load_telemetry(csv, offset_s=1.0)  # the video starts at the telemetry's 1.0 s
    assert shifted.at(0.0).speed_mps == pytest.approx(12.0)


@pytest.mark.unit
def test_nmea_rmc_and_vtg_give_speed_and_turn_rate(tmp_path: Path) -> None:
    lines = ["garbage line", nmea("GPRMC,120000.00,A,4807.038,N,01131.000,E,0,0,071226,,,A")[:-2] + "00"]
    for t, speed, course in turning_right(10, 15.0, 8.0):
        stamp = f"1200{t:02d}.00"
        knots = speed / KNOTS_MPS
        lines.append(nmea(f"GPRMC,{stamp},A,4807.038,N,01131.000,E,{knots:.3f},{course:.2f},071226,,,A"))
        lines.append(nmea(f"GPVTG,{course:.2f},T,,M,{knots:.3f},N,{speed * 3.6:.3f},K,A"))
    path = tmp_path / "drive.nmea"
    path.write_text("\n".join(lines) + "\n")
    tel = load_telemetry(path)
    assert tel.span_s == (0.0, 9.0)
    got = tel.at(4.5)
    assert got.speed_mps == pytest.approx(15.0, abs=0.01) and got.yaw_rate_dps == pytest.approx(8.0, abs=0.05)


@pytest.mark.unit
def test_gpx_speeds_and_courses(tmp_path: Path) -> None:
    gpx = gpxpy.gpx.GPX()
    segment = gpxpy.gpx.GPXTrackSegment()
    track = gpxpy.gpx.GPXTrack()
    track.segments.append(segment)
    gpx.tracks.append(track)
    start = dt.datetime(2026, 12, 7, 12, 0, 0, tzinfo=dt.timezone.utc)
    lat, lon, heading = 48.0, 11.0, 0.0
    for t in range(12):  # 10 m/s, turning left 6 deg/s
        segment.points.append(gpxpy.gpx.GPXTrackPoint(lat, lon, time=start + dt.timedelta(seconds=t)))
        lat += 10.0 * math.cos(math.radians(heading)) / 111_320
        lon += 10.0 * math.sin(math.radians(heading)) / (111_320 * math.cos(math.radians(lat)))
        heading -= 6.0
    path = tmp_path / "drive.gpx"
    path.write_text(gpx.to_xml())
    got = load_telemetry(path).at(5.0)
    assert got.speed_mps == pytest.approx(10.0, rel=0.02) and got.yaw_rate_dps == pytest.approx(-6.0, abs=0.3)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("missing.csv", None, "telemetry not found"),
        ("drive.kml", "x", "expected .csv"),
        ("drive.csv", "time,speed\n1,2\n", "needs the columns t_s and speed_mps"),
        ("drive.csv", "t_s,speed_mps\n0,abc\n", "could not convert"),
        ("drive.csv", "t_s,speed_mps\n0,1\n", "fewer than 2"),
        ("drive.nmea", "$GPGGA,nothing\n", "no valid NMEA"),
    ],
)
def test_bad_telemetry_is_one_line(tmp_path: Path, name: str, text: str | None, said: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(PerceptionError, match=said) as caught:
        load_telemetry(path)
    assert "\n" not in str(caught.value)


@pytest.mark.integration
def test_a_run_uses_the_telemetry_and_refuses_one_that_does_not_cover_the_video(tmp_path: Path) -> None:
    truth = KITTI_EGO / "truth.csv"
    common = ["--model", YOLOX_ONNX, "--imgsz", "256", "736"]
    out = tmp_path / "out"
    proc = run_cli("run", KITTI_EGO / "image_0", *common, "--telemetry", truth, "--out", out)
    assert proc.returncode == 0, proc.stderr
    frames = [e for e in read_events(out / "events.jsonl") if e["type"] == "frame"]
    rows = {int(r.split(",")[0]): r.split(",") for r in truth.read_text().splitlines()[1:]}
    for f in frames[1:]:
        want = rows.get(f["frame"])
        if want is not None:  # the frame times are the folder's nominal rate, close to the records'
            assert f["ego_speed_mps"] == pytest.approx(float(want[2]), abs=0.3)
            assert f["ego_yaw_rate_dps"] == pytest.approx(float(want[3]), abs=3.0)
            assert f["ego_stopped"] is False
    assert np.mean([f["ego_yaw_rate_dps"] > 5 for f in frames[5:45]]) == 1.0  # the right-hand curve
    proc = run_cli("run", KITTI_EGO / "image_0", *common, "--telemetry", truth, "--telemetry-offset", "3",
                   "--out", tmp_path / "late")  # fmt: skip
    assert_one_line_error(proc, "covers", "which runs 0.0-5.", "--telemetry-offset")
