"""One exception type for every problem a user can fix (bad path, bad model, bad config, dead stream), and
the one way to turn any exception into the single line a user sees."""

from __future__ import annotations

import re

# Lines that frame a message rather than say what is wrong. OpenVINO puts the source location of each layer
# the error passed through first ("Exception from src/inference/src/cpp/core.cpp:84:", "Check 'x' failed
# at src/...:887:") and the node being checked ("While validating node ...") before the cause.
_FRAMING = re.compile(
    r"^(Exception from \S+:\d+:?|Check '.*' failed at \S+:\d+:?|While validating node .*|"
    r"Shape inference input shapes .*)$"
)


class PerceptionError(Exception):
    """A user-facing failure: its message is printed as the one-line error, without a traceback."""


class DetectorUnavailable(PerceptionError):
    """The detector's server cannot be reached right now, so this frame gets no detections (it is dropped).

    Raised by backends that run inference elsewhere (`--backend triton`) while they reconnect. A pipeline
    that counts such frames and goes on survives the outage (the backend recovers by itself, and reports
    the outage through its `on_health` callback); one that does not ends with this one-line error."""


def first_line(error: BaseException, with_type: bool = False) -> str:
    """The first line of an exception's message that says what is wrong (empty lines and the framing
    lines some libraries put first are skipped), or its type name when the message is empty. `with_type`
    prefixes the type, for errors we did not raise ourselves (`ValueError: ...`), so a user can tell them
    from ours."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not _FRAMING.match(line)] or lines
    name = type(error).__name__
    if not useful:
        return name
    return f"{name}: {useful[0]}" if with_type else useful[0]
