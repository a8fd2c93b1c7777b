"""The car's own speed and turn rate, when it recorded them: a CSV, NMEA sentences (RMC / VTG, as many
dashcams write beside the video) or a GPX track. Aligned to the video by time: the telemetry's clock,
counted from its first record, is the video's plus `offset_s` (a CSV's `t_s` is the video's time already,
offset 0). Used instead of the camera's own estimate (perception/motion/), which it is more exact than.

- CSV: a header with `t_s` and `speed_mps`, optionally `yaw_rate_dps` (turning right positive), as
  ../shared/ego/*/truth.csv.
- NMEA 0183 (`.nmea`, `.txt`, `.log`; pynmea2): RMC (time, speed in knots, course over ground) and VTG
  (speed and course, timed by the last RMC/GGA); sentences with a bad checksum are skipped.
- GPX (`.gpx`; gpxpy): track points' times, their speed where recorded, else from the distance between
  points.

Where only a course is known the turn rate is its rate of change (a course is noise below 2 m/s: unknown
there). A time outside the records is unknown, never extrapolated.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perception.core.errors import PerceptionError, first_line
from perception.core.types import EgoMotion

KNOTS_MPS = 1852 / 3600
_COURSE_MIN_SPEED_MPS = 2.0
_SPEED_STD_MPS = 0.2  # a GNSS or CAN speed, after resampling
_YAW_STD_DPS = 1.0
_GAP_S = 2.0  # records farther apart than this leave the time between them unknown
_EDGE_S = 0.5  # a frame this close before the first record or after the last takes that record's values


@dataclass(frozen=True)
class Telemetry:
    t_s: np.ndarray  # the video's time of each record, increasing
    speed_mps: np.ndarray
    yaw_rate_dps: np.ndarray  # NaN where unknown
    path: str

    @property
    def span_s(self) -> tuple[float, float]:
        return float(self.t_s[0]), float(self.t_s[-1])

    def at(self, t_s: float) -> EgoMotion | None:
        """The ego's motion at a video time, interpolated (the first or last record held up to `_EDGE_S`
        before or after them); None outside the records or in a gap."""
        if t_s < self.t_s[0] - _EDGE_S or t_s > self.t_s[-1] + _EDGE_S:
            return None
        i = int(np.searchsorted(self.t_s, t_s))
        lo, hi = max(i - 1, 0), min(i, len(self.t_s) - 1)
        if self.t_s[hi] - self.t_s[lo] > _GAP_S:
            return None
        w = 0.0 if hi == lo else (t_s - self.t_s[lo]) / (self.t_s[hi] - self.t_s[lo])
        speed = float((1 - w) * self.speed_mps[lo] + w * self.speed_mps[hi])
        yaw = float((1 - w) * self.yaw_rate_dps[lo] + w * self.yaw_rate_dps[hi])
        yaw_std = _YAW_STD_DPS if np.isfinite(yaw) else math.nan
        return EgoMotion(speed, _SPEED_STD_MPS, yaw, yaw_std, speed < 0.3)


def load_telemetry(path: str | Path, offset_s: float = 0.0) -> Telemetry:
    """Telemetry from a file (CSV, NMEA or GPX by suffix), on the video's clock; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise PerceptionError(f"telemetry not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            t, speed, yaw = _csv(path)
            course = None
        elif suffix in (".nmea", ".txt", ".log"):
            t, speed, course = _nmea(path)
        elif suffix == ".gpx":
            t, speed, course = _gpx(path)
        else:
            raise PerceptionError(f"telemetry {path}: expected .csv, .nmea/.txt/.log (NMEA) or .gpx")
    except PerceptionError:
        raise
    except (OSError, ValueError, KeyError, UnicodeDecodeError, ImportError) as exc:
        raise PerceptionError(f"telemetry {path}: {first_line(exc)}") from None
    order = np.argsort(t, kind="stable")
    keep = order[np.concatenate(([True], np.diff(t[order]) > 0))]  # one record per time: the first
    t, speed = t[keep] - offset_s, speed[keep]
    yaw = _course_rate(t, speed, course[keep]) if course is not None else yaw[keep]
    if len(t) < 2 or not np.isfinite(speed).all():
        raise PerceptionError(f"telemetry {path}: fewer than 2 timed records with a speed")
    return Telemetry(t, speed, yaw, str(path))


def _csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"t_s", "speed_mps"} <= set(rows[0]):
        raise PerceptionError(f"telemetry {path}: a CSV needs the columns t_s and speed_mps")
    t = np.array([float(r["t_s"]) for r in rows])
    speed = np.array([float(r["speed_mps"]) for r in rows])
    yaw = np.array([float(r.get("yaw_rate_dps") or "nan") for r in rows])
    return t, speed, yaw


def _nmea(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pynmea2  # the `telemetry` extra

    t, speed, course, now = [], [], [], None
    for line in path.read_text(errors="replace").splitlines():
        try:
            msg = pynmea2.parse(line.strip(), check=True)
        except (pynmea2.ParseError, ValueError, AttributeError):
            continue  # not NMEA, or a bad checksum
        kind = msg.sentence_type
        if kind in ("RMC", "GGA") and getattr(msg, "timestamp", None) is not None:
            stamp = msg.timestamp
            day = getattr(msg, "datestamp", None)
            now = stamp.hour * 3600 + stamp.minute * 60 + stamp.second + stamp.microsecond / 1e6
            now += day.toordinal() * 86400 if day is not None else 0
        if kind == "RMC" and now is not None and msg.status == "A" and msg.spd_over_grnd is not None:
            t.append(now), speed.append(float(msg.spd_over_grnd) * KNOTS_MPS)
            course.append(float(msg.true_course) if msg.true_course is not None else np.nan)
        elif kind == "VTG" and now is not None and msg.spd_over_grnd_kmph is not None:
            t.append(now), speed.append(float(msg.spd_over_grnd_kmph) / 3.6)
            course.append(float(msg.true_track) if msg.true_track is not None else np.nan)
    if not t:
        raise PerceptionError(f"telemetry {path}: no valid NMEA RMC or VTG sentence with a speed")
    t_arr = np.array(t)
    return t_arr - t_arr.min(), np.array(speed), np.array(course)


def _gpx(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import gpxpy  # the `telemetry` extra
    import gpxpy.geo

    with path.open() as f:
        gpx = gpxpy.parse(f)
    points = [p for track in gpx.tracks for seg in track.segments for p in seg.points if p.time is not None]
    if len(points) < 2:
        raise PerceptionError(f"telemetry {path}: fewer than 2 timed track points")
    t0 = points[0].time
    t = np.array([(p.time - t0).total_seconds() for p in points])
    speed, course = np.full(len(points), np.nan), np.full(len(points), np.nan)
    for i, p in enumerate(points):
        q = points[i + 1] if i + 1 < len(points) else points[i - 1]
        a, b = (p, q) if i + 1 < len(points) else (q, p)
        dt = (b.time - a.time).total_seconds()
        speed[i] = p.speed if p.speed is not None else (a.distance_2d(b) / dt if dt > 0 else np.nan)
        course[i] = gpxpy.geo.get_course(a.latitude, a.longitude, b.latitude, b.longitude)
    return t, speed, course


def _course_rate(t: np.ndarray, speed: np.ndarray, course_deg: np.ndarray) -> np.ndarray:
    """Turn rate (deg/s, right positive: a course grows clockwise) by central differences of the unwrapped
    course; unknown where slow (a course is noise there) or missing."""
    ok = np.isfinite(course_deg) & (speed >= _COURSE_MIN_SPEED_MPS)
    yaw = np.full(len(t), np.nan)
    if ok.sum() < 2:
        return yaw
    unwrapped = np.degrees(np.unwrap(np.radians(course_deg[ok])))
    yaw[ok] = np.gradient(unwrapped, t[ok])
    return yaw
