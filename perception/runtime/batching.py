"""Where the latency policy lives: each stream's inbox between its grab thread and the shared detector,
and the batcher that takes frames from every inbox for one detector call.

- A live stream's inbox holds one frame: a newer frame replaces an unread one (counted as dropped), so the
  detector never works on a backlog. A replay's inbox holds a few frames and makes its grab thread wait, so
  none is lost.
- The batcher collects up to `max_batch` frames across streams, round robin (one frame per stream per pass,
  so a fast replay cannot starve a live camera), waiting at most `timeout_s` after the first frame for the
  batch to fill. A stream that stalls or reconnects simply has nothing in its inbox: it never holds the
  others back.
- A live frame that has already waited longer than `max_age_s` when detection could start is dropped as
  stale: its result would be of no use.
- A stream's end is handed on as a marker in a batch, after its last frame, so the stages downstream of
  the detector see every stream's frames in order and then its end.

All inboxes share one condition variable, so the batcher sleeps until any stream has a frame.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from perception.core.events import Stage
from perception.core.types import Frame

END = object()  # a stream's end-of-stream marker


@dataclass(slots=True)
class Item:
    """A frame (or a stream's END) on its way through the detector."""

    stream: int
    frame: Any  # Frame, or END
    latency_ms: dict[str, float]
    detections: Any = None  # Detections, once detected
    unobserved: Any = None  # class ids no detector looked for in this frame (an extra detector skipped it)


class Inbox:
    """One stream's frames waiting for detection. Guarded by the batcher's condition variable."""

    def __init__(self, live: bool, capacity: int, max_age_s: float) -> None:
        self.live = live
        self.capacity = 1 if live else capacity
        self.max_age_ms = max_age_s * 1e3 if live else float("inf")
        self.items: deque[tuple[Frame, dict[str, float]]] = deque()
        self.dropped = 0  # live: replaced by a newer frame before detection took it
        self.stale = 0  # live: too old when detection could start
        self.ended = False  # the grab thread is done
        self.end_sent = False  # its END marker went into a batch


class FrameBatcher:
    """Inboxes for every stream, and batches taken from them for the detector."""

    def __init__(self, inboxes: list[Inbox], max_batch: int, timeout_s: float) -> None:
        self.inboxes = inboxes
        self.max_batch = max(1, max_batch)
        self.timeout_s = timeout_s if self.max_batch > 1 else 0.0
        self._cond = threading.Condition()
        self._next = 0  # the stream the next batch starts with (round robin)
        self._stopped = False

    # -- the grab side --------------------------------------------------------------------------------------
    def put(self, stream: int, frame: Frame, latency_ms: dict[str, float]) -> bool:
        """Hand a grabbed frame in; a replay waits while its inbox is full. False once stopped."""
        inbox = self.inboxes[stream]
        with self._cond:
            while not inbox.live and len(inbox.items) >= inbox.capacity and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return False
            if inbox.live and inbox.items:
                inbox.items.popleft()
                inbox.dropped += 1
            inbox.items.append((frame, latency_ms))
            self._cond.notify_all()
            return True

    def end(self, stream: int) -> None:
        with self._cond:
            self.inboxes[stream].ended = True
            self._cond.notify_all()

    def stop(self) -> None:
        """Wake everyone: puts return False, take returns None."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    # -- the detector side ----------------------------------------------------------------------------------
    def take(self) -> list[Item] | None:
        """The next batch: frames in stream order and, per stream, in frame order, plus END markers of
        streams that finished. None when every stream has ended (or the run stops)."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                batch = self._collect([])
                self._cond.notify_all()  # room in the inboxes: replays may put again
                if any(item.frame is not END for item in batch):
                    break
                if batch:  # only ends: hand them on at once
                    return batch
                if all(inbox.end_sent for inbox in self.inboxes):
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.timeout_s
            while self._frames(batch) < self.max_batch and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
                batch = self._collect(batch)
                self._cond.notify_all()
            return batch

    @staticmethod
    def _frames(batch: list[Item]) -> int:
        return sum(item.frame is not END for item in batch)

    def _collect(self, batch: list[Item]) -> list[Item]:
        """Add frames round robin until the batch is full or the inboxes are empty (caller holds the lock)."""
        n = len(self.inboxes)
        order = [(self._next + k) % n for k in range(n)]
        progress = True
        while progress and self._frames(batch) < self.max_batch:
            progress = False
            for stream in order:
                inbox = self.inboxes[stream]
                item = self._take_one(stream, inbox)
                if item is not None:
                    batch.append(item)
                    progress = progress or item.frame is not END
                    if self._frames(batch) >= self.max_batch:
                        break
        self._next = (self._next + 1) % n
        return batch

    @staticmethod
    def _take_one(stream: int, inbox: Inbox) -> Item | None:
        now = time.monotonic_ns()
        while inbox.items:
            frame, latency_ms = inbox.items.popleft()
            latency_ms[Stage.WAIT] = (now - frame.capture_ns) / 1e6
            if latency_ms[Stage.WAIT] + latency_ms.get(Stage.BACKLOG, 0.0) > inbox.max_age_ms:
                inbox.stale += 1
                continue
            return Item(stream, frame, latency_ms)
        if inbox.ended and not inbox.end_sent:
            inbox.end_sent = True
            return Item(stream, END, {})
        return None
