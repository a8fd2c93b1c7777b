"""Tracker behaviour on hand-made box sequences at 25 fps timestamps, with exact expected IDs."""

from __future__ import annotations

import numpy as np
import pytest

from perception.core.config import Config
from perception.core.types import Detections, Tracks
from perception.track.tracker import Tracker, iou_matrix

KIND = "unit"

DT = 0.04  # 25 fps
PEDESTRIAN, VEHICLE = 0, 2  # label ids in the default taxonomy


def running_tracker(tracker_cfg) -> Tracker:
    """A tracker past start-up (one empty frame long ago): objects appearing now are new and must be
    confirmed, unlike those in view at start-up (test_objects_in_view_at_start_up_are_reported_at_once)."""
    tracker = Tracker(tracker_cfg)
    tracker.update(Detections.empty(), -10.0)
    return tracker


def _dets(boxes: list[list[float]], labels: list[int] | None = None) -> Detections:
    n = len(boxes)
    labels = [VEHICLE] * n if labels is None else labels
    return Detections(
        boxes_xyxy=np.array(boxes, np.float32).reshape(n, 4),
        scores=np.full(n, 0.9, np.float32),
        class_ids=np.array([0 if lab == PEDESTRIAN else 2 for lab in labels], np.int32),
        label_ids=np.array(labels, np.int32),
    )


def _box(x1: float, y1: float, w: float = 80.0, h: float = 60.0) -> list[float]:
    return [x1, y1, x1 + w, y1 + h]


def _moving_box(i: int, x0: float = 100.0, vx: float = 8.0, y0: float = 300.0) -> list[float]:
    """Box of a car moving right at vx px per frame (200 px/s at 25 fps)."""
    return _box(x0 + vx * i, y0)


def _iou(a: np.ndarray | list[float], b: np.ndarray | list[float]) -> float:
    return float(iou_matrix(np.array([a], np.float64), np.array([b], np.float64))[0, 0])


def _ids(tracks: Tracks) -> list[int]:
    return [int(i) for i in tracks.ids]


def test_constant_velocity_one_id_reported_from_third_frame(cfg: Config) -> None:
    tracker = running_tracker(cfg.tracker)
    reported = []
    for i in range(20):
        out = tracker.update(_dets([_moving_box(i)]), i * DT)
        reported.append(_ids(out))
        if out.ids.size:
            assert _iou(out.boxes_xyxy[0], _moving_box(i)) > 0.9
            assert out.label_ids.tolist() == [VEHICLE]
            assert out.scores.tolist() == pytest.approx([0.9])
            assert np.isnan(out.ttc_s).all()
    assert reported == [[], []] + [[1]] * 18
    assert tracker.active_count == 1


def test_id_kept_through_three_missed_frames(cfg: Config) -> None:
    tracker = running_tracker(cfg.tracker)
    missed = {10, 11, 12}
    reported = []
    for i in range(20):
        dets = Detections.empty() if i in missed else _dets([_moving_box(i)])
        out = tracker.update(dets, i * DT)
        reported.append(_ids(out))
        if i in missed:
            assert tracker.active_count == 1  # kept as lost, not dropped
    assert reported == [[], []] + [[1]] * 8 + [[], [], []] + [[1]] * 7


@pytest.mark.parametrize(
    ("speed", "dy", "n_overlapping"),
    [(10.0, 6.0, 7), (4.0, 6.0, 19), (4.0, 0.0, 19)],
    ids=["fast-offset", "slow-offset", "slow-same-height"],
)
def test_crossing_objects_keep_their_ids(cfg: Config, speed: float, dy: float, n_overlapping: int) -> None:
    """A moves right, B moves left (dy px lower); they cross half way, their boxes overlapping a while."""
    tracker = running_tracker(cfg.tracker)

    def box_a(i: int) -> list[float]:
        return _box(100.0 + speed * i, 300.0)

    def box_b(i: int) -> list[float]:
        return _box(700.0 - speed * i, 300.0 + dy)

    n_frames = int(600 / speed) + 1
    overlapping = [i for i in range(n_frames) if _iou(box_a(i), box_b(i)) > 0]
    assert len(overlapping) == n_overlapping  # the boxes really overlap while crossing
    id_of_a, id_of_b = [], []
    for i in range(n_frames):
        # alternate detection order so the tracker cannot rely on the row order
        boxes = [box_a(i), box_b(i)] if i % 2 else [box_b(i), box_a(i)]
        out = tracker.update(_dets(boxes), i * DT)
        if i < 2:
            assert len(out) == 0
            continue
        assert len(out) == 2
        if _iou(box_a(i), box_b(i)) > 0.5:
            continue  # the two true boxes are nearly the same: which is which is not observable here
        ious_a = [_iou(b, box_a(i)) for b in out.boxes_xyxy]
        ious_b = [_iou(b, box_b(i)) for b in out.boxes_xyxy]
        assert max(ious_a) > 0.5 and max(ious_b) > 0.5
        id_of_a.append(int(out.ids[int(np.argmax(ious_a))]))
        id_of_b.append(int(out.ids[int(np.argmax(ious_b))]))
    # B's detection comes first on even frames, so it gets ID 1 at frame 0
    assert set(id_of_a) == {2}
    assert set(id_of_b) == {1}
    assert tracker.active_count == 2


def test_dropped_frames_keep_one_id_and_box_follows(cfg: Config) -> None:
    """Every 2nd frame removed, timestamps kept (dt = 0.08 s): one ID, box near the true one."""
    tracker = running_tracker(cfg.tracker)
    reported = []
    for i in range(0, 40, 2):
        out = tracker.update(_dets([_moving_box(i)]), i * DT)
        reported.append(_ids(out))
        if out.ids.size:
            assert _iou(out.boxes_xyxy[0], _moving_box(i)) > 0.7
    # Confirmation is in seconds (confirm_s = 0.06): at dt = 0.08 s the 2nd processed frame confirms.
    assert reported == [[]] + [[1]] * 19


def test_dropped_frames_prediction_uses_timestamps(cfg: Config) -> None:
    """After a 3-frame gap in the timestamps (no update calls), the track continues with the same ID."""
    tracker = running_tracker(cfg.tracker)
    frames = list(range(10)) + list(range(14, 20))
    reported = [_ids(tracker.update(_dets([_moving_box(i, vx=12.0)]), i * DT)) for i in frames]
    assert reported == [[], []] + [[1]] * 14
    assert tracker.active_count == 1


def test_pedestrian_does_not_continue_vehicle_track(cfg: Config) -> None:
    tracker = running_tracker(cfg.tracker)
    box = _box(400.0, 300.0)
    for i in range(5):
        out = tracker.update(_dets([box], [VEHICLE]), i * DT)
    assert _ids(out) == [1]
    reported, labels = [], []
    for i in range(5, 10):  # the vehicle is replaced by a pedestrian box at exactly the same place
        out = tracker.update(_dets([box], [PEDESTRIAN]), i * DT)
        reported.append(_ids(out))
        labels.append(out.label_ids.tolist())
    assert reported == [[], [], [2], [2], [2]]  # a new, tentative track; the vehicle's ID is not reused
    assert labels == [[], [], [PEDESTRIAN], [PEDESTRIAN], [PEDESTRIAN]]
    assert tracker.active_count == 2  # the vehicle track is lost, not taken over


def test_class_consistency_holds_with_zero_iou_threshold(cfg: Config) -> None:
    """match_iou_threshold = 0 is a valid config; class gating must still hold."""
    tracker = running_tracker(cfg.tracker.model_copy(update={"match_iou_threshold": 0.0}))
    box = _box(400.0, 300.0)
    for i in range(5):
        tracker.update(_dets([box], [VEHICLE]), i * DT)
    out = tracker.update(_dets([box], [PEDESTRIAN]), 5 * DT)
    assert _ids(out) == []  # a pedestrian seen once is tentative; it must not inherit confirmed vehicle 1


def test_track_lost_longer_than_max_lost_gets_new_id(cfg: Config) -> None:
    assert cfg.tracker.max_lost_s == 1.0
    box = _box(400.0, 300.0)
    tracker = running_tracker(cfg.tracker)
    for i in range(5):
        tracker.update(_dets([box]), i * DT)
    # 30 empty frames: unmatched from t = 0.16 s to t = 1.36 s (1.2 s > max_lost_s)
    for i in range(5, 35):
        assert len(tracker.update(Detections.empty(), i * DT)) == 0
    assert tracker.active_count == 0
    reported = [_ids(tracker.update(_dets([box]), i * DT)) for i in range(35, 40)]
    assert reported == [[], [], [2], [2], [2]]


def test_track_lost_shorter_than_max_lost_keeps_id(cfg: Config) -> None:
    """Counterpart of the test above: 0.8 s unmatched is bridged."""
    box = _box(400.0, 300.0)
    tracker = running_tracker(cfg.tracker)
    for i in range(5):
        tracker.update(_dets([box]), i * DT)
    for i in range(5, 25):  # unmatched from t = 0.16 s to t = 0.96 s
        assert len(tracker.update(Detections.empty(), i * DT)) == 0
    assert tracker.active_count == 1
    reported = [_ids(tracker.update(_dets([box]), i * DT)) for i in range(25, 28)]
    assert reported == [[1], [1], [1]]


def test_track_expires_across_a_timestamp_gap_without_frames(cfg: Config) -> None:
    """No frames at all for 2 s (a stalled source): the track was unmatched > max_lost_s, so expired."""
    box = _box(400.0, 300.0)
    tracker = running_tracker(cfg.tracker)
    for i in range(5):
        tracker.update(_dets([box]), i * DT)
    t_back = 4 * DT + 2.0
    reported = [_ids(tracker.update(_dets([box]), t_back + k * DT)) for k in range(3)]
    assert reported == [[], [], [2]]


def test_iou_matrix_exact_values() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 20, 10]], np.float32)
    b = np.array(
        [
            [0, 0, 10, 10],  # identical to a[0]
            [5, 0, 15, 10],  # half overlap: 50 / 150
            [5, 5, 15, 15],  # quarter overlap: 25 / 175
            [10, 0, 20, 10],  # shares an edge only
            [2, 2, 4, 4],  # inside a[0]: 4 / 100
            [30, 30, 40, 40],  # disjoint
        ],
        np.float32,
    )
    expected = np.array(
        [
            [1.0, 1 / 3, 1 / 7, 0.0, 0.04, 0.0],
            [0.5, 0.5, 0.2, 0.5, 0.02, 0.0],
        ]
    )
    got = iou_matrix(a, b)
    assert got.shape == (2, 6)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(iou_matrix(b, a), expected.T, rtol=1e-6, atol=1e-7)


def test_iou_matrix_empty_and_degenerate() -> None:
    boxes = np.array([[0, 0, 10, 10]], np.float32)
    assert iou_matrix(np.zeros((0, 4), np.float32), boxes).shape == (0, 1)
    assert iou_matrix(boxes, np.zeros((0, 4), np.float32)).shape == (1, 0)
    point = np.array([[5, 5, 5, 5]], np.float32)  # zero-area boxes: union 0 gives IoU 0, not NaN
    assert iou_matrix(point, point).tolist() == [[0.0]]


def test_kalman_bank_matches_filterpy_step_by_step(cfg: Config) -> None:
    """The stacked filters are filterpy's KalmanFilter maths (its Joseph-form update), with F, Q and R
    built from each step's own time step: checked against filterpy itself on irregular steps."""
    from filterpy.kalman import KalmanFilter

    from perception.track.tracker import KalmanBank

    rng = np.random.default_rng(7)
    first = np.array([[100.0, 80.0, 40.0, 90.0], [300.0, 200.0, 20.0, 30.0]])
    bank = KalmanBank(cfg.tracker)
    bank.add(first)
    refs = []
    for row in range(2):
        kf = KalmanFilter(dim_x=8, dim_z=4)
        kf.H = np.eye(4, 8)
        kf.x = np.concatenate((first[row], np.zeros(4)))[:, None]
        kf.P = bank.P[row].copy()
        refs.append(kf)
    truth = first.copy()
    for _ in range(30):
        dt = float(rng.choice([0.04, 0.08, 0.12, 0.033]))
        truth += np.array([30.0, -10.0, 2.0, 4.0]) * dt
        q = bank.process_noise(dt)
        F = np.eye(8)
        F[:4, 4:] = np.eye(4) * dt
        for row, kf in enumerate(refs):
            kf.predict(F=F, Q=np.diag(q[row]))
        bank.predict(dt)
        z = truth + rng.normal(0, 1.0, truth.shape)
        measured = np.array([0, 1]) if rng.random() > 0.3 else np.array([1])  # sometimes one is missed
        r = bank.measurement_noise(z[measured])
        for k, row in enumerate(measured):
            refs[row].update(z[row][:, None], R=np.diag(r[k]))
        bank.update(measured, z[measured])
        for row, kf in enumerate(refs):
            np.testing.assert_allclose(bank.x[row], kf.x[:, 0], rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(bank.P[row], kf.P, rtol=1e-9, atol=1e-9)


def test_objects_in_view_at_start_up_are_reported_at_once(cfg: Config) -> None:
    tracker = Tracker(cfg.tracker)
    first = tracker.update(_dets([_moving_box(0)]), 0.0)
    assert _ids(first) == [1]
    late = tracker.update(_dets([_moving_box(1), [600.0, 100.0, 650.0, 180.0]]), DT)
    assert _ids(late) == [1]  # the newcomer waits for confirmation


def test_assignment_shortcut_is_exact() -> None:
    """Pairing unambiguous track/detection pairs directly must give the Hungarian optimum."""
    from scipy.optimize import linear_sum_assignment

    from perception.track.tracker import _assign

    rng = np.random.default_rng(3)
    for _ in range(300):
        n, m = rng.integers(1, 12, 2)
        score = rng.uniform(0, 1, (n, m)) * (rng.uniform(0, 1, (n, m)) < 0.25)
        admissible = score > 0.3
        masked = np.where(admissible, score, 0.0)
        rows, cols = _assign(masked, admissible)
        assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
        assert admissible[rows, cols].all()
        r, c = linear_sum_assignment(masked, maximize=True)
        assert masked[rows, cols].sum() == pytest.approx(masked[r, c].sum())


def test_tracks_of_a_detector_that_skips_frames_are_carried() -> None:
    """An extra detector runs on every 3rd frame only (its classes are unobserved in between): its tracks
    are reported on every frame at their predicted boxes, with one ID; a car seen by the main detector on
    every frame is unaffected. Without `unobserved_classes` the same gaps are misses and the sign is lost."""
    SIGN_CLASS, SIGN_LABEL = 100, 4  # a class of the extra detector, label traffic_sign

    def frame(i: int, sign_due: bool) -> Detections:
        car = _dets([_moving_box(i)])
        if not sign_due:
            return car
        sign = Detections(
            np.array([_box(600 + 2 * i, 100, 30, 30)], np.float32),
            np.array([0.8], np.float32),
            np.array([SIGN_CLASS], np.int32),
            np.array([SIGN_LABEL], np.int32),
        )
        return Detections(
            *(
                np.concatenate((a, b))
                for a, b in zip(
                    (car.boxes_xyxy, car.scores, car.class_ids, car.label_ids),
                    (sign.boxes_xyxy, sign.scores, sign.class_ids, sign.label_ids),
                    strict=True,
                )
            )
        )

    carried, missed = Tracker(), Tracker()
    for i in range(12):
        due = i % 3 == 0
        unobserved = None if due else np.array([SIGN_CLASS])
        with_carry = carried.update(frame(i, due), i * DT, unobserved)
        without = missed.update(frame(i, due), i * DT)
        signs = with_carry.ids[with_carry.class_ids == SIGN_CLASS]
        assert signs.tolist() == [2], i  # every frame, one ID
        assert len(with_carry.ids[with_carry.class_ids == 2]) == 1  # the car as ever
        assert (SIGN_CLASS in without.class_ids.tolist()) == due  # plain tracker: reported when detected only
    box = with_carry.boxes_xyxy[with_carry.class_ids == SIGN_CLASS][0]
    assert 600 + 2 * 9 <= box[0] <= 600 + 2 * 11 + 1  # predicted forward from its motion, not frozen
