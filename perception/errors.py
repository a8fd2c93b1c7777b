"""One exception type for every problem a user can fix (bad path, bad model, bad config, dead stream), and
the one way to turn any exception into the single line a user sees."""

from __future__ import annotations


class PerceptionError(Exception):
    """A user-facing failure: its message is printed as the one-line error, without a traceback."""


class DetectorUnavailable(PerceptionError):
    """The detector's server cannot be reached right now, so this frame gets no detections (it is dropped).

    Raised by backends that run inference elsewhere (`--backend triton`) while they reconnect. A pipeline
    that counts such frames and goes on survives the outage (the backend recovers by itself, and reports
    the outage through its `on_health` callback); one that does not ends with this one-line error."""


def first_line(error: BaseException, with_type: bool = False) -> str:
    """The first non-empty line of an exception's message (libraries put the useful part first, mostly),
    or its type name when the message is empty. `with_type` prefixes the type, for errors we did not
    raise ourselves (`ValueError: ...`), so a user can tell them from ours."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    name = type(error).__name__
    if not lines:
        return name
    return f"{name}: {lines[0]}" if with_type else lines[0]
