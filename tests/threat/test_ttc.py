"""Time-to-collision maths on exact box sequences from a pinhole camera model."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import cv2
import numpy as np
import pytest

from perception.core.config import Config
from perception.core.types import Tracks
from perception.threat.camera import cut_sides
from perception.threat.linefit import nanmedian_rows
from perception.threat.ttc import TTCEstimator

KIND = "unit"

FRAME_HW = (720, 1280)
FOCAL_PX = 800.0
WIDTH_M, HEIGHT_M = 1.8, 1.5
DT = 0.04  # 25 fps


def _pinhole_box(z_m: float, cx: float = 640.0, cy: float = 360.0) -> np.ndarray:
    """Box of a 1.8 m x 1.5 m object at distance z_m, centred on (cx, cy)."""
    w, h = FOCAL_PX * WIDTH_M / z_m, FOCAL_PX * HEIGHT_M / z_m
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _tracks(boxes: list[np.ndarray], ids: list[int] | None = None) -> Tracks:
    n = len(boxes)
    return Tracks.new(
        ids=np.array(list(range(1, n + 1)) if ids is None else ids, np.int64),
        boxes_xyxy=np.array(boxes, np.float32).reshape(n, 4),
        scores=np.full(n, 0.9, np.float32),
        class_ids=np.full(n, 2, np.int32),
        label_ids=np.full(n, 2, np.int32),
    )


def _run(est: TTCEstimator, distance: Callable[[float], float], times: np.ndarray) -> np.ndarray:
    """Feed one track (ID 1) through `times`; return the TTC reported at each time."""
    return np.array([est.update(_tracks([_pinhole_box(distance(t))]), float(t))[0] for t in times])


def _approaching(t: float) -> float:
    return 30.0 - 10.0 * t  # Z0 = 30 m, closing at v = 10 m/s: true TTC = Z / v


def _irregular_times(seed: int, duration_s: float) -> np.ndarray:
    """25 fps timestamps with about a third of the frames dropped at random (runs of drops included)."""
    rng = np.random.default_rng(seed)
    idx = np.arange(int(round(duration_s / DT)) + 1)
    keep = rng.random(len(idx)) > 0.35
    keep[0] = True
    return idx[keep] * DT


@pytest.mark.parametrize("sampling", ["every-frame", "random-drops"])
def test_ttc_of_constant_speed_approach(cfg: Config, sampling: str) -> None:
    """Z(t) = 30 - 10 t: once the fit has enough history, TTC is within 5 % of Z / v."""
    times = np.arange(51) * DT if sampling == "every-frame" else _irregular_times(7, 2.0)
    ttc = _run(TTCEstimator(cfg.ttc), _approaching, times)
    known = ~np.isnan(ttc)
    assert known.sum() >= 20
    true_ttc = np.array([_approaching(t) / 10.0 for t in times])  # 3.0 s down to 1.0 s
    rel_err = np.abs(ttc[known] - true_ttc[known]) / true_ttc[known]
    assert rel_err.max() < 0.05, (
        f"worst at t={times[known][rel_err.argmax()]:.2f} s: "
        f"estimated {ttc[known][rel_err.argmax()]:.3f} s, true {true_ttc[known][rel_err.argmax()]:.3f} s"
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ttc_uses_timestamps_not_frame_counts(cfg: Config, seed: int) -> None:
    """The same boxes at the same irregular frames, but with every timestamp halved (the object closing
    twice as fast): TTC must halve exactly. An estimator counting frames would return the same values.
    window_s covers the whole history so both runs fit the same samples."""
    est_cfg = cfg.ttc.model_copy(update={"window_s": 10.0, "min_span_s": 0.1})
    times = _irregular_times(seed, 2.0)
    assert np.diff(times).max() >= 3 * DT  # the sampling really is irregular
    slow = _run(TTCEstimator(est_cfg), _approaching, times)
    fast = _run(TTCEstimator(est_cfg), lambda t: _approaching(2.0 * t), times / 2.0)
    known = ~np.isnan(slow)
    assert known.sum() >= 20
    assert (np.isnan(fast) == np.isnan(slow)).all()
    np.testing.assert_allclose(fast[known], slow[known] / 2.0, rtol=1e-4)


def test_ttc_nan_until_min_samples(cfg: Config) -> None:
    """min_span_s small: the first min_samples - 1 samples give NaN, the min_samples-th a value."""
    est = TTCEstimator(cfg.ttc.model_copy(update={"min_samples": 6, "min_span_s": 0.01}))
    times = np.arange(12) * DT
    ttc = _run(est, _approaching, times)
    assert np.isnan(ttc[:5]).all()
    assert np.isfinite(ttc[5:]).all()
    assert (ttc[5:] > 0).all()


def test_ttc_nan_until_min_span(cfg: Config) -> None:
    """Samples every 1/16 s, min_span_s = 0.25 s (both exact in binary): known from the 5th sample on."""
    est = TTCEstimator(cfg.ttc.model_copy(update={"min_samples": 2, "min_span_s": 0.25}))
    times = np.arange(10) / 16.0
    ttc = _run(est, _approaching, times)
    assert np.isnan(ttc[:4]).all()
    assert np.isfinite(ttc[4:]).all()


def one_second_window(cfg: Config):
    """The settings these tests' expected frame numbers were worked out for."""
    return cfg.ttc.model_copy(update={"window_s": 1.0, "min_span_s": 0.4, "min_samples": 6})


def test_ttc_default_config_first_known_frame(cfg: Config) -> None:
    """Defaults (6 samples spanning 0.4 s) at 25 fps: unknown for frames 0..9 (span < 0.4 s), known from
    frame 11 on; frame 10 sits exactly on the 0.4 s boundary in floating point and is not checked."""
    ttc = _run(TTCEstimator(one_second_window(cfg)), _approaching, np.arange(20) * DT)
    assert np.isnan(ttc[:10]).all()
    assert np.isfinite(ttc[11:]).all()


@pytest.mark.parametrize(
    ("name", "distance"),
    [
        ("receding", lambda t: 20.0 + 10.0 * t),
        ("constant-distance", lambda t: 20.0 + 0.0 * t),
        ("slower-than-max-ttc", lambda t: 100.0 - 2.0 * t),  # TTC about 50 s > max_ttc_s = 20 s
    ],
)
def test_ttc_nan_when_not_closing(cfg: Config, name: str, distance: Callable[[float], float]) -> None:
    ttc = _run(TTCEstimator(cfg.ttc), distance, np.arange(50) * DT)
    assert np.isnan(ttc).all(), name


def _update_cut(est: TTCEstimator, tracks: Tracks, t_s: float) -> np.ndarray:
    """As the frame processor does: the sides cut by the frame border go with the boxes."""
    return est.update(tracks, t_s, cut=cut_sides(tracks.boxes_xyxy, FRAME_HW, 0.04))


@pytest.mark.parametrize("edge", ["left", "top", "right", "bottom"])
def test_box_cut_by_one_edge_keeps_its_ttc_from_the_other_dimension(cfg: Config, edge: str) -> None:
    """A box against one frame edge may be cut there, so its size along that axis says nothing; its
    extent along the other axis still grows with the approach: TTC within 5 % once known, as uncut."""
    est = TTCEstimator(cfg.ttc)
    h, w = FRAME_HW
    ttc = []
    for i in range(40):
        box = _pinhole_box(_approaching(i * DT))
        bw, bh = box[2] - box[0], box[3] - box[1]
        cx, cy = {
            "left": (bw / 2 + 1.5, 360.0),
            "top": (640.0, bh / 2 + 1.5),
            "right": (w - bw / 2 - 1.5, 360.0),
            "bottom": (640.0, h - bh / 2 - 1.5),
        }[edge]
        ttc.append(_update_cut(est, _tracks([_pinhole_box(_approaching(i * DT), cx, cy)]), i * DT)[0])
    ttc = np.array(ttc)
    true_ttc = np.array([_approaching(i * DT) / 10.0 for i in range(40)])
    assert np.isfinite(ttc[15:]).all()
    assert (np.abs(ttc[15:] - true_ttc[15:]) / true_ttc[15:]).max() < 0.05


def test_box_cut_at_a_corner_has_no_size_cue(cfg: Config) -> None:
    """Cut on a side and at the bottom: neither extent is the object's, and without the image (no optical
    flow) nothing measures its growth: no TTC, rather than one from a box that grows as it enters."""
    est = TTCEstimator(cfg.ttc)
    h, _ = FRAME_HW
    for i in range(30):
        box = _pinhole_box(_approaching(i * DT))
        bw, bh = box[2] - box[0], box[3] - box[1]
        out = _update_cut(
            est, _tracks([_pinhole_box(_approaching(i * DT), bw / 2 + 1.0, h - bh / 2 - 1.0)]), i * DT
        )
        assert np.isnan(out[0])


def test_ttc_empty_tracks(cfg: Config) -> None:
    out = TTCEstimator(cfg.ttc).update(Tracks.empty(), 0.0)
    assert out.shape == (0,)
    assert out.dtype == np.float32


def test_ttc_output_follows_track_order(cfg: Config) -> None:
    """Two tracks listed in alternating order get, per ID, exactly what each gets when tracked alone."""
    together, alone_a, alone_b = TTCEstimator(cfg.ttc), TTCEstimator(cfg.ttc), TTCEstimator(cfg.ttc)

    def fast(t: float) -> float:
        return 30.0 - 12.0 * t

    def slow(t: float) -> float:
        return 40.0 - 6.0 * t

    for i in range(40):
        t = i * DT
        a, b = _pinhole_box(fast(t), cx=400.0), _pinhole_box(slow(t), cx=900.0)
        if i % 2:
            out = together.update(_tracks([a, b], ids=[11, 22]), t)
            by_id = {11: out[0], 22: out[1]}
        else:
            out = together.update(_tracks([b, a], ids=[22, 11]), t)
            by_id = {22: out[0], 11: out[1]}
        expected_a = alone_a.update(_tracks([a], ids=[11]), t)[0]
        expected_b = alone_b.update(_tracks([b], ids=[22]), t)[0]
        np.testing.assert_array_equal([by_id[11], by_id[22]], [expected_a, expected_b])
    assert out.dtype == np.float32
    assert 0 < by_id[11] < by_id[22]  # the faster approach has the shorter TTC


def test_ttc_memory_bounded_with_many_short_lived_tracks(cfg: Config) -> None:
    """600 track IDs, each seen for 5 frames, one after another over 120 s: slots are recycled."""
    est = TTCEstimator(one_second_window(cfg))
    capacity = est._ring["t"].shape[0]
    i, most_slots = 0, 0
    for track_id in range(1, 601):
        for _ in range(5):
            est.update(_tracks([_pinhole_box(_approaching(0.0))], ids=[track_id]), i * DT)
            most_slots = max(most_slots, len(est._slot_of))
            i += 1
    # a track unseen for 2 windows (2 s = 50 frames = 10 tracks back) is released: 11 held at most
    assert most_slots == 11
    assert len(est._slot_of) == 11
    assert all(ring.shape[0] == capacity for ring in est._ring.values())


def test_ttc_slot_released_after_two_windows_and_reused(cfg: Config) -> None:
    est = TTCEstimator(one_second_window(cfg))
    times = np.arange(30) * DT
    assert np.isfinite(_run(est, _approaching, times)[-1])
    assert est._slot_of == {1: 0}
    # seen 1.9 s ago (< 2 windows): the slot is kept
    est.update(_tracks([_pinhole_box(15.0)], ids=[98]), times[-1] + 1.9)
    assert est._slot_of == {1: 0, 98: 1}
    # seen 2.1 s ago (> 2 windows): released, and the new track takes the freed slot
    out = est.update(_tracks([_pinhole_box(15.0)], ids=[99]), times[-1] + 2.1)
    assert np.isnan(out).all()  # a new track has no history
    assert est._slot_of == {98: 1, 99: 0}


@pytest.mark.parametrize("shape", [(5, 64), (1, 1), (3, 2), (7, 630), (0, 5), (4, 0)])
def test_nanmedian_rows_matches_numpy(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(30):
        values = rng.normal(size=shape)
        values[rng.random(shape) < rng.random()] = np.nan
        if values.size and rng.random() < 0.3:
            values.flat[0] = np.inf
        with warnings.catch_warnings():  # all-NaN rows
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = np.nanmedian(values, axis=1) if shape[1] else np.full(shape[0], np.nan)
        np.testing.assert_allclose(nanmedian_rows(values), expected, equal_nan=True)


class _WholeFrameGrey(TTCEstimator):
    """The estimator as it was: the whole frame converted to grey on every frame."""

    @staticmethod
    def _to_gray(image: np.ndarray, gray: np.ndarray, prev_boxes: np.ndarray) -> None:
        cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=gray)


def test_grey_converted_only_where_the_flow_reads_changes_nothing(cfg: Config) -> None:
    """The estimator converts only the parts of a frame the optical flow reads, now and at the next frame;
    the rest of its grey buffers is stale. Its results must be those of a whole-frame conversion, through
    tracks that come and go, a frame without tracks and a repeated timestamp."""
    texture = cv2.GaussianBlur(
        np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8), (0, 0), 1.5
    )
    base = [np.array(b, float) for b in ((100, 80, 160, 140), (200, 60, 260, 130), (30, 150, 90, 220))]
    # (t_s, track IDs present): IDs 1-3 are the boxes above, zoomed with the frame
    schedule = [(k * DT, (1, 2, 3)) for k in range(6)] + [
        (6 * DT, (1, 2)),
        (7 * DT, ()),
        (8 * DT, (1, 3)),
        (9 * DT, (1, 2)),
        (9 * DT, (1, 3)),
        (10 * DT, (1, 2, 3)),
        (11 * DT, (2, 3)),
    ]
    estimators = {
        "regions": TTCEstimator(cfg.ttc),
        "whole": _WholeFrameGrey(cfg.ttc),
        "boxes": TTCEstimator(cfg.ttc),
    }
    results: dict[str, list[np.ndarray]] = {name: [] for name in estimators}
    for k, (t_s, ids) in enumerate(schedule):
        scale = 1.0 + 0.02 * k  # the scene zooms about the centre: every object approaches
        warp = np.float32([[scale, 0, (1 - scale) * 160], [0, scale, (1 - scale) * 120]])
        image = cv2.warpAffine(texture, warp, (320, 240), borderMode=cv2.BORDER_REFLECT)
        centre = np.array([160.0, 120.0, 160.0, 120.0])
        boxes = [(base[i - 1] - centre) * scale + centre for i in ids]
        for name, est in estimators.items():
            tracks = _tracks(boxes, list(ids))
            tracks.dist_m[:] = 20.0 / scale
            tracks.dist_std_m[:] = 1.0
            est.update(tracks, t_s, None if name == "boxes" else image)
            results[name].append(np.concatenate((tracks.ttc_s, tracks.ttc_std_s, tracks.ttc_plausible)))
    for regions, whole in zip(results["regions"], results["whole"], strict=True):
        np.testing.assert_array_equal(regions, whole)
    flow_used = [
        not np.array_equal(a, b, equal_nan=True)
        for a, b in zip(results["regions"], results["boxes"], strict=True)
    ]
    assert any(flow_used)  # the flow measured the growth (else this test would compare box sizes only)
