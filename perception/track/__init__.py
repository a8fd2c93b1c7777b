"""Stage 3, tracks: stacked Kalman filters and two-stage association (`tracker`)."""

from perception.track.tracker import Tracker, TrackState

__all__ = ["TrackState", "Tracker"]
