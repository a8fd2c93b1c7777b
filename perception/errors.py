"""One exception type for every problem a user can fix (bad path, bad model, bad config, dead stream), and
the one way to turn any exception into the single line a user sees."""

from __future__ import annotations


class PerceptionError(Exception):
    """A user-facing failure: its message is printed as the one-line error, without a traceback."""


def first_line(error: BaseException, with_type: bool = False) -> str:
    """The first non-empty line of an exception's message (libraries put the useful part first, mostly),
    or its type name when the message is empty. `with_type` prefixes the type, for errors we did not
    raise ourselves (`ValueError: ...`), so a user can tell them from ours."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    name = type(error).__name__
    if not lines:
        return name
    return f"{name}: {lines[0]}" if with_type else lines[0]
