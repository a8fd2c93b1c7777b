"""One exception type for every problem a user can fix (bad path, bad model, bad config, dead stream)."""


class PerceptionError(Exception):
    """A user-facing failure: its message is printed as the one-line error, without a traceback."""


class DetectorUnavailable(PerceptionError):
    """The detector's server cannot be reached right now, so this frame gets no detections (it is dropped).

    Raised by backends that run inference elsewhere (`--backend triton`) while they reconnect. A pipeline
    that counts such frames and goes on survives the outage (the backend recovers by itself, and reports
    the outage through its `on_health` callback); one that does not ends with this one-line error."""
