"""The frame processor: everything that happens to one stream's frame after detection, in one object.

`FrameProcessor.step(frame, detections)` tracks, ranges, estimates time to collision and assesses the
threat, and returns the frame's `FrameResult`. It owns the per-stream state (tracks, TTC histories, the
warning state machine, the camera at the stream's current size), so one processor serves one stream and
every loop that turns detections into threats (the threaded pipeline, the benchmark's sequential loop,
eval-ttc, eval-mot, the soak and tracker benchmarks) runs the same code.

The three parts are behind small protocols, so another tracker or warning policy drops in:
`ObjectTracker`, `TimeToCollision`, `ThreatAssessor`. `build_processor(cfg)` wires the project's own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from perception.core.camera_profile import CameraProfile, load_camera_profile
from perception.core.config import Config
from perception.core.errors import PerceptionError
from perception.core.events import FcwEvent, Stage
from perception.core.types import CollisionWarning, Detections, EgoMotion, Frame, FrameResult, Tracks
from perception.motion.camera_motion import CameraMotionEstimator
from perception.motion.ego import EgoMotionEstimator, GroundCamera
from perception.sources.telemetry import Telemetry, load_telemetry
from perception.threat.camera import LEFT, RIGHT, Camera, Ranging
from perception.threat.fcw import ForwardCollisionWarning
from perception.threat.ttc import TTCEstimator
from perception.track.tracker import Tracker


class ObjectTracker(Protocol):
    """Detections in, confirmed tracks out, driven by timestamps (seconds), not frame counts. A tracker that
    also has `apply_camera_motion(warp_2x3)` is given the camera's motion before each update."""

    def update(
        self, detections: Detections, t_s: float, unobserved_classes: np.ndarray | None = None
    ) -> Tracks:
        """`unobserved_classes`: classes no detector looked for in this frame (carried, not missed)."""
        ...

    def reset(self) -> None:
        """Forget every track; IDs may start again (the processor keeps them unique)."""
        ...


class TimeToCollision(Protocol):
    """Per-track motion from the tracks' history: `update` fills `ttc_s`, `ttc_std_s` and `ttc_plausible`
    (and the distance of boxes whose bottom is cut, carried from earlier frames); `update_lateral` fills
    the lateral speed from the lateral positions placed on the tracks in between."""

    def update(
        self,
        tracks: Tracks,
        t_s: float,
        image: np.ndarray | None,
        cut: np.ndarray | None,
        precise: np.ndarray | None,
        dist_rate_std_mps: np.ndarray | None,
    ) -> np.ndarray: ...

    def update_lateral(self, tracks: Tracks, t_s: float, measured: np.ndarray, focal_px: float) -> None: ...

    def reset(self) -> None: ...


class ThreatAssessor(Protocol):
    """Fills `tracks.in_path` (and lead, cut-in), steps the warning state; returns it and any level change
    at this frame. `ego`: how the car moves (None: unknown, a straight path). `wants_precise_ttc`: the
    tracks whose TTC may matter soon (worth the costlier cue)."""

    def update(
        self, tracks: Tracks, t_s: float, camera: Camera, frame_index: int, ego: EgoMotion | None = None
    ) -> tuple[CollisionWarning, list[FcwEvent]]: ...

    def wants_precise_ttc(self, tracks: Tracks) -> np.ndarray: ...

    def reset(self) -> None: ...


class FrameProcessor:
    """Tracking, ranging, TTC and threat assessment for one stream.

    Boxes and histories are in pixels: when a stream comes back at another resolution they describe nothing
    any more, so every part restarts; track IDs then continue above the highest one reported, so an ID never
    names two objects in one run.
    """

    def __init__(
        self,
        tracker: ObjectTracker,
        camera_profile: CameraProfile | None = None,
        ranging: Ranging | None = None,
        ttc: TimeToCollision | None = None,
        threats: ThreatAssessor | None = None,
        clip_to_frame: bool = True,
        motion: CameraMotionEstimator | None = None,
        ego: EgoMotionEstimator | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.tracker = tracker
        self.telemetry = telemetry  # the car's own record of its motion: used instead of the camera's
        self.motion = motion  # camera motion: applied to the tracks (a tracker with apply_camera_motion)
        self.ego = ego  # ego speed and yaw rate from the camera motion (needs a camera profile)
        self._ground: GroundCamera | None = None
        self._last_t_s: float | None = None
        self.clip_to_frame = clip_to_frame  # filtered boxes can overshoot the image: clipped for display,
        # ranging and TTC (a box at the border is cut); MOT scoring keeps the raw estimate
        self.camera_profile = camera_profile
        self.ranging = ranging
        self.ttc = ttc
        self.threats = threats
        self._camera: Camera | None = None
        self._frame_hw: tuple[int, int] | None = None
        self._id_base = 0  # added to the tracker's IDs after a restart
        self._max_id = 0

    def step(
        self,
        frame: Frame,
        detections: Detections,
        latency_ms: dict[str, float] | None = None,
        unobserved_classes: np.ndarray | None = None,
        ego: EgoMotion | None = None,
    ) -> FrameResult:
        """This frame's result; `latency_ms` (the stages so far) gains `track` (camera motion included) and
        `ttc`. `unobserved_classes`: an extra detector's, on frames it skips (their tracks are carried).
        `ego`: how the car moves, when the car says so (telemetry): used instead of the camera's estimate."""
        latency_ms = {} if latency_ms is None else latency_ms
        t0 = time.monotonic_ns()
        frame_hw = frame.image.shape[:2]
        if frame_hw != self._frame_hw:
            self._restart(frame_hw)
        if self.motion is not None:  # the car's own hood is no road user
            own = self.motion.own_car.covers(detections.boxes_xyxy, frame_hw[0])
            detections = detections.subset(~own) if own.any() else detections
        measured = self._camera_motion(frame, detections)
        ego = ego if ego is not None else self._recorded(frame, measured)
        tracks = self._track(detections, frame.source_ts_s, frame_hw, unobserved_classes)
        t1 = time.monotonic_ns()
        warning, events = self._assess(tracks, frame, ego)
        latency_ms[Stage.TRACK] = (t1 - t0) / 1e6
        latency_ms[Stage.TTC] = (time.monotonic_ns() - t1) / 1e6
        return FrameResult(frame, detections, tracks, latency_ms, warning, events, ego)

    def _camera_motion(self, frame: Frame, detections: Detections) -> EgoMotion:
        """Measure how the camera moved since the last frame, move the tracks with it, and say what it
        implies for the ego vehicle."""
        dt_s = 0.0 if self._last_t_s is None else frame.source_ts_s - self._last_t_s
        self._last_t_s = frame.source_ts_s
        if self.motion is None:
            return EgoMotion()
        motion = self.motion.estimate(frame.image, detections.boxes_xyxy)
        apply = getattr(self.tracker, "apply_camera_motion", None)
        if motion.applied and apply is not None:
            apply(motion.warp_2x3)
        if self.ego is not None:
            return self.ego.estimate(motion, self._ground, dt_s)
        stopped = None if not motion.trusted else motion.near_flow_px < self.motion.cfg.still_flow_px
        return EgoMotion(stopped=stopped, camera_motion_confidence=motion.confidence)

    def _recorded(self, frame: Frame, measured: EgoMotion) -> EgoMotion:
        """The telemetry's ego motion at this frame (a turn rate it lacks from the camera), else the camera's
        estimate; a frame the telemetry does not cover is an error (telemetry and video misaligned)."""
        if self.telemetry is None:
            return measured
        told = self.telemetry.at(frame.source_ts_s)
        if told is None:
            first, last = self.telemetry.span_s
            raise PerceptionError(
                f"telemetry {self.telemetry.path} covers {first:.1f}-{last:.1f} s of the video, not frame "
                f"{frame.index} at {frame.source_ts_s:.2f} s (align it with --telemetry-offset)"
            )
        if np.isnan(told.yaw_rate_dps):
            told = replace(
                told, yaw_rate_dps=measured.yaw_rate_dps, yaw_rate_std_dps=measured.yaw_rate_std_dps
            )
        return replace(told, camera_motion_confidence=measured.camera_motion_confidence)

    def _track(
        self, detections: Detections, t_s: float, frame_hw: tuple[int, int], unobserved: np.ndarray | None
    ) -> Tracks:
        tracks = self.tracker.update(detections, t_s, unobserved)
        if len(tracks):
            if self._id_base:
                tracks.ids += self._id_base
            self._max_id = max(self._max_id, int(tracks.ids.max()))
            if self.clip_to_frame:
                h, w = frame_hw
                np.clip(tracks.boxes_xyxy, 0, (w, h, w, h), out=tracks.boxes_xyxy)
        return tracks

    def _assess(
        self, tracks: Tracks, frame: Frame, ego: EgoMotion | None = None
    ) -> tuple[CollisionWarning, list[FcwEvent]]:
        """Per track, set on `tracks`: where it is (distance and lateral position on the road, boxes cut by
        the frame border), how it moves (TTC, lateral speed), whether it is the lead or cutting in; then the
        warning state."""
        if self._camera is None or self.ranging is None:
            return CollisionWarning(), []
        t_s, camera, boxes, labels = frame.source_ts_s, self._camera, tracks.boxes_xyxy, tracks.label_ids
        cut = self.ranging.cut_sides(camera, boxes)
        tracks.truncated[:] = cut.any(axis=1)
        dist, dist_std, ground_share = self.ranging(camera, boxes, labels, cut)  # NaN where the bottom is cut
        tracks.dist_m[:], tracks.dist_std_m[:] = dist, dist_std
        if self.ttc is not None:
            precise = self.threats.wants_precise_ttc(tracks) if self.threats is not None else None
            rate_std = self.ranging.rate_std_mps(camera, dist, ground_share)
            self.ttc.update(tracks, t_s, frame.image, cut, precise, rate_std)  # carries cut boxes' distance
        lateral = self.ranging.lateral(camera, boxes, labels, tracks.dist_m, tracks.dist_std_m)
        tracks.lateral_m[:], tracks.width_m[:], tracks.lateral_std_m[:] = lateral
        if self.ttc is not None:
            self.ttc.update_lateral(tracks, t_s, ~(cut[:, LEFT] | cut[:, RIGHT]), camera.fx)
        if self.threats is None:
            return CollisionWarning(), []
        return self.threats.update(tracks, t_s, camera, frame.index, ego)

    def _restart(self, frame_hw: tuple[int, int]) -> None:
        if self._frame_hw is not None:
            self.tracker.reset()
            for part in (self.ttc, self.threats):
                if part is not None:
                    part.reset()
            self._id_base = self._max_id
        if self.motion is not None:
            self.motion.reset()
        if self.ego is not None:
            self.ego.reset()
        self._frame_hw = frame_hw
        if self.camera_profile is not None:
            c = self._camera = Camera(self.camera_profile, frame_hw)
            self._ground = GroundCamera(c.fx, c.fy, c.cx, c.cy, c.pitch_rad, c.height_m)


def build_processor(cfg: Config | None = None, threats: bool = True) -> FrameProcessor:
    """The project's processor from config. `threats=False`: tracking only, boxes as the tracker estimates
    them (MOT scoring: public detections come without images, and ground truth extends past the border)."""
    cfg = cfg or Config()
    tracker = Tracker(cfg.tracker)
    profile = load_camera_profile(cfg.camera.profile)
    motion = CameraMotionEstimator(cfg.motion, profile.hood_row_frac) if cfg.motion.enabled else None
    if not threats:
        return FrameProcessor(tracker, clip_to_frame=False, motion=motion)
    labels: Sequence[str] = cfg.labels
    return FrameProcessor(
        tracker,
        motion=motion,
        ego=EgoMotionEstimator(cfg.motion) if motion is not None and cfg.motion.ego else None,
        telemetry=load_telemetry(cfg.source.telemetry, cfg.source.telemetry_offset_s)
        if cfg.source.telemetry
        else None,
        camera_profile=profile,
        ranging=Ranging(cfg.ttc, list(labels)),
        ttc=TTCEstimator(cfg.ttc),
        threats=ForwardCollisionWarning(cfg.fcw, list(labels)),
    )
