"""Ctrl-C during start-up, made reliable.

Python raises KeyboardInterrupt wherever the main thread happens to be, and a few C extensions swallow it
when it lands inside their own set-up (importing numpy, SciPy and OpenCV were each seen to return normally
after a Ctrl-C); CPython then also remembers it and, under `python -m`, ends the process by SIGINT whatever
the exit code. So until the pipeline installs its own handler, SIGINT is also recorded here, `check()` is
called at the points start-up passes, and `exit_now` leaves with 130 without the interpreter's say.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import NoReturn

EXIT_SIGINT = 130
_received = threading.Event()


def _handler(signum: int, frame: object) -> None:
    _received.set()
    raise KeyboardInterrupt


def install() -> None:
    """Record SIGINT (and raise KeyboardInterrupt as usual); from the main thread, as early as possible."""
    signal.signal(signal.SIGINT, _handler)


def received() -> bool:
    """Whether a Ctrl-C came (whatever became of its KeyboardInterrupt: swallowed, or turned into another
    error, as OpenVINO's and SciPy's `ImportError: initialization failed`)."""
    return _received.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C came that something swallowed."""
    if _received.is_set():
        raise KeyboardInterrupt


def exit_now(message: str | None = "error: interrupted") -> NoReturn:
    """Leave with 130 at once (nothing is open that needs closing at the points this is used)."""
    if message:
        print(message, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_SIGINT)
