"""One exception type for every problem a user can fix (bad path, bad model, bad config, dead stream)."""


class PerceptionError(Exception):
    """A user-facing failure: its message is printed as the one-line error, without a traceback."""
