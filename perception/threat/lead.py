"""Which objects may raise a forward collision warning: the lead, and objects cutting in ahead of it.

The reasoning follows a driver's (and openpilot's planner's): one object sets the pace, the nearest one
in the ego path; another takes its place only once it is clearly nearer for a while, so the choice does
not flicker between two cars. Everything behind the lead is shielded by it. An object outside the path
matters only if it is moving into it fast enough to be there before the ego is.

- In path: the object's lateral extent on the road (metres, from the ground plane) overlaps the ego
  corridor by more than its lateral uncertainty; it leaves when it is as clearly outside. Either change
  must hold `in_path_hold_s`.
- Occluded: an object whose box lies mostly within the columns of a nearer in-path object's box (its
  bottom edge higher, i.e. farther on the road) is behind it or hidden by it: its box is only the part in
  view, its bottom edge the other's roofline. It is never the lead, and its TTC is not trusted.
- Lead: the nearest in-path, unoccluded object of a threatening label with a distance; it changes to a
  nearer one only after that one has been nearer beyond both distance uncertainties for
  `lead_switch_s`, and survives a missed detection for as long.
- Cut-in: not (yet) held in the path but already reaching into the corridor, moving further in at
  `cut_in_min_speed_mps` or more and `cut_in_sigmas` above its speed uncertainty, and nearer than the
  lead.
- Crossing: beside the path, but on a course that puts it in the ego's swept path when the ego gets there
  (perception/threat/path.py), with a crossing speed well above what a box's wobble reads as.

The corridor follows the ego's path (path.py): an arc from its yaw rate and speed when known (straighter
the less sure), else straight ahead.
"""

from __future__ import annotations

import numpy as np

from perception.core.config import FCWConfig
from perception.core.types import Tracks
from perception.threat.path import EgoPath, crossing_course

# Why a track may threaten (FcwEvent.reason), as codes in an int8 column
NONE, LEAD, CUT_IN, CROSSING = 0, 1, 2, 3
REASONS = {LEAD: "lead", CUT_IN: "cut_in", CROSSING: "crossing"}


class TrackMemory:
    """Per-track values kept between frames, keyed by track ID, as numpy columns (no per-track Python).
    Rows of tracks not seen for `keep_s` are dropped, so memory follows the live tracks."""

    def __init__(self, defaults: dict[str, tuple[type, object]], keep_s: float) -> None:
        self._defaults = defaults
        self._keep_s = keep_s
        self._ids = np.zeros(0, np.int64)
        self._seen_s = np.zeros(0)
        self._cols = {name: np.zeros(0, dtype) for name, (dtype, _) in defaults.items()}
        self._last_get: tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]] | None = None

    def get(self, ids: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(known mask, values per column) for these IDs; defaults where unknown. The same IDs asked again
        before a `put` (a frame asks twice) get the same answer, not computed again: do not modify it."""
        last = self._last_get
        if last is not None and np.array_equal(last[0], ids):
            return last[1], last[2]
        idx = np.minimum(np.searchsorted(self._ids, ids), max(len(self._ids) - 1, 0))
        known = (self._ids[idx] == ids) if len(self._ids) else np.zeros(len(ids), bool)
        values = {
            name: np.where(known, self._cols[name][idx] if len(self._ids) else fill, fill).astype(dtype)
            for name, (dtype, fill) in self._defaults.items()
        }
        self._last_get = ids.copy(), known, values
        return known, values

    def put(self, ids: np.ndarray, t_s: float, values: dict[str, np.ndarray]) -> None:
        """Store these IDs' values as of t_s; keep the others' until they expire."""
        self._last_get = None
        # np.isin, without its overhead for these few live tracks
        keep = ~(self._ids[:, None] == ids).any(1) & (self._seen_s >= t_s - self._keep_s)
        all_ids = np.concatenate((self._ids[keep], ids))
        order = np.argsort(all_ids, kind="stable")
        self._ids = all_ids[order]
        self._seen_s = np.concatenate((self._seen_s[keep], np.full(len(ids), t_s)))[order]
        for name in self._defaults:
            self._cols[name] = np.concatenate((self._cols[name][keep], values[name]))[order]

    def clear(self) -> None:
        self.__init__(self._defaults, self._keep_s)


class LeadSelector:
    """Per frame: in-path, occluded, lead and cut-in flags for every track (see the module docstring)."""

    def __init__(self, cfg: FCWConfig, labels: list[str], keep_s: float = 2.0) -> None:
        """labels: the taxonomy's labels, in order (label_ids index them). keep_s: how long a track's
        state outlives its last report (a missed detection or two must not reset its in-path hold)."""
        self.cfg = cfg
        self._label_mask = np.array([label in cfg.labels for label in labels], bool)
        self._crossing_min_mps = np.array([cfg.crossing_min_speed_mps.get(x, np.inf) for x in labels])
        self._memory = TrackMemory(
            {
                "in_path": (bool, False),
                "changing_since_s": (float, np.nan),  # the wanted in-path state has differed since
                "relevant": (bool, True),  # may threaten soon: its TTC is worth measuring precisely
            },
            keep_s,
        )
        self.reset()

    def reset(self) -> None:
        self._memory.clear()
        self.lead_id: int | None = None
        self._lead_seen_s = -np.inf
        self._challenger_id: int | None = None
        self._challenger_since_s = 0.0

    def wants_precise_ttc(self, tracks: Tracks) -> np.ndarray:
        """Tracks whose TTC may matter soon, as of the last frame: in or near the path, moving toward
        it, or not yet placed. The others can do with the cheaper box-size cue."""
        known, mem = self._memory.get(tracks.ids)
        return self._label_mask[tracks.label_ids] & (~known | mem["relevant"])

    def update(self, tracks: Tracks, t_s: float, path: EgoPath | None = None) -> np.ndarray:
        """Set `in_path`, `lead` and `cut_in` on the tracks, clear `ttc_plausible` of occluded ones, and
        return why each track may raise a warning (NONE, LEAD, CUT_IN or CROSSING, int8). `path`: the ego's
        (straight when None)."""
        cfg = self.cfg
        path = path or EgoPath()
        known, mem = self._memory.get(tracks.ids)
        label_ok = self._label_mask[tracks.label_ids]
        half = cfg.corridor_width_m / 2
        width = tracks.width_m.astype(np.float64)
        dist, dist_std = tracks.dist_m.astype(np.float64), tracks.dist_std_m.astype(np.float64)
        offset, _ = path.offset_m(dist)  # its uncertainty already shrank the bend (path.py)
        centre = tracks.lateral_m.astype(np.float64) - np.nan_to_num(offset)  # from the path's centre line
        lat_std = tracks.lateral_std_m.astype(np.float64)

        # In path, with hysteresis by uncertainty and by time.
        overlap = np.minimum(centre + width / 2, half) - np.maximum(centre - width / 2, -half)
        margin = cfg.lateral_sigmas * lat_std
        placed = np.isfinite(overlap)
        want = np.where(mem["in_path"], ~(overlap < -margin), overlap > margin)
        want = np.where(placed, want, mem["in_path"])
        changing = want != mem["in_path"]
        since = np.where(np.isnan(mem["changing_since_s"]), t_s, mem["changing_since_s"])
        since = np.where(changing, since, np.nan)
        flip = changing & (t_s - since >= cfg.in_path_hold_s - 1e-9)
        in_path = np.where(flip, want, mem["in_path"])
        since = np.where(flip, np.nan, since)

        occluded = _behind_in_path(tracks.boxes_xyxy, in_path & label_ok)
        tracks.in_path[:] = in_path & label_ok
        tracks.ttc_plausible &= ~occluded

        eligible = in_path & label_ok & ~occluded & np.isfinite(dist)
        lead = self._select_lead(tracks.ids, eligible, dist, dist_std, t_s)
        tracks.lead[:] = False
        if lead is not None:
            tracks.lead[lead] = True

        # Cut-ins: reaching into the path ahead of the lead and moving further in, not yet held in it.
        gap = np.abs(centre) - width / 2 - half  # > 0: outside the corridor
        # on the road: less the sideways motion the ego's own turning gives everything at that distance
        toward = -np.sign(centre) * (tracks.lateral_speed_mps + path.yaw_rate_rps * np.nan_to_num(dist))
        speed_std = tracks.lateral_speed_std_mps
        speed_ok = (toward >= cfg.cut_in_min_speed_mps) & (toward >= cfg.cut_in_sigmas * speed_std)
        lead_dist = dist[lead] if lead is not None else np.inf
        tracks.cut_in[:] = ~in_path & label_ok & ~occluded & (gap < 0) & speed_ok & (dist < lead_dist)

        beside = ~in_path & label_ok & ~occluded & ~tracks.cut_in & tracks.ttc_plausible & (gap >= 0)
        crossing = crossing_course(tracks, path, cfg, beside, self._crossing_min_mps[tracks.label_ids])

        reach = np.maximum(toward + 2 * speed_std, 0.0) * cfg.caution_ttc_s
        relevant = in_path | tracks.lead | tracks.cut_in | crossing | ~placed | ~(gap - margin > reach)
        state = {"in_path": in_path, "changing_since_s": since, "relevant": relevant}
        self._memory.put(tracks.ids, t_s, state)
        reason = np.zeros(len(tracks), np.int8)
        reason[crossing] = CROSSING
        reason[tracks.cut_in] = CUT_IN
        reason[tracks.lead] = LEAD
        return reason

    def _select_lead(
        self, ids: np.ndarray, eligible: np.ndarray, dist: np.ndarray, dist_std: np.ndarray, t_s: float
    ) -> int | None:
        """Row of the lead among these tracks (None: no lead this frame)."""
        rows = np.flatnonzero(ids == self.lead_id) if self.lead_id is not None else np.zeros(0, np.int64)
        if len(rows) == 0 and t_s - self._lead_seen_s <= self.cfg.lead_switch_s:
            return None  # the lead was not reported this frame (a missed detection): keep it a while
        if len(rows) == 0 or not eligible[rows[0]]:
            self._challenger_id = None
            if not eligible.any():
                self.lead_id = None
                return None
            row = int(np.argmin(np.where(eligible, dist, np.inf)))
            self.lead_id, self._lead_seen_s = int(ids[row]), t_s
            return row
        row = int(rows[0])
        self._lead_seen_s = t_s
        nearer = eligible & (dist < dist[row] - np.hypot(dist_std[row], dist_std))
        if not nearer.any():
            self._challenger_id = None
            return row
        challenger = int(np.argmin(np.where(nearer, dist, np.inf)))
        if self._challenger_id != int(ids[challenger]):
            self._challenger_id, self._challenger_since_s = int(ids[challenger]), t_s
        if t_s - self._challenger_since_s >= self.cfg.lead_switch_s - 1e-9:
            self.lead_id, self._challenger_id = int(ids[challenger]), None
            return challenger
        return row


def _behind_in_path(boxes_xyxy: np.ndarray, in_path: np.ndarray) -> np.ndarray:
    """Boxes lying mostly (half their width or more) within the columns of a nearer in-path box, nearer
    meaning a lower bottom edge (on a flat road, the nearer contact point)."""
    b = boxes_xyxy.astype(np.float64)
    if len(b) < 2 or not in_path.any():
        return np.zeros(len(b), bool)
    front = b[in_path]  # (F, 4) possible occluders, against every box (N)
    shared = np.minimum(front[:, None, 2], b[None, :, 2]) - np.maximum(front[:, None, 0], b[None, :, 0])
    width = np.maximum(b[:, 2] - b[:, 0], 1e-6)
    nearer = front[:, None, 3] > b[None, :, 3]
    return (nearer & (shared >= 0.5 * width[None, :])).any(axis=0)
