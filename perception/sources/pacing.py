"""Replay pacing shared by the finite sources (video files, image folders, bags) in `realtime` mode."""

from __future__ import annotations

import time


class Pacer:
    """Holds each frame back until its timestamp is due, measured from the first frame."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._origin_ns: int | None = None

    def wait(self, source_ts_s: float) -> None:
        if not self.enabled:
            return
        now = time.monotonic_ns()
        if self._origin_ns is None:
            self._origin_ns = now - int(source_ts_s * 1e9)
            return
        delay_ns = self._origin_ns + int(source_ts_s * 1e9) - now
        if delay_ns > 0:
            time.sleep(delay_ns / 1e9)
