"""Ctrl-C (and SIGTERM, as `docker stop` or systemd send it) during start-up, made reliable.

Python raises KeyboardInterrupt wherever the main thread happens to be, and a few C extensions swallow it
when it lands inside their own set-up (importing numpy, SciPy and OpenCV were each seen to return normally
after a Ctrl-C); CPython then also remembers it and, under `python -m`, ends the process by SIGINT whatever
the exit code. So until the pipeline installs its own handler, SIGINT is also recorded here, `check()` is
called at the points start-up passes, and `exit_now` leaves with 130 without the interpreter's say.
SIGTERM is taken the same way (it would otherwise end the process where it stands, a log without its end
line), and leaves with 143.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import NoReturn

EXIT_SIGINT = 130
EXIT_SIGTERM = 143
_received = threading.Event()
_signals: list[int] = []  # the first one received: it decides the exit code


def stop(signum: int, frame: object = None) -> NoReturn:
    """Record the signal and raise KeyboardInterrupt (the handler; also called for a signal held back)."""
    if not _signals:
        _signals.append(signum)
    _received.set()
    raise KeyboardInterrupt


def install() -> None:
    """Record SIGINT and SIGTERM (each raising KeyboardInterrupt, as SIGINT does by default); from the main
    thread, as early as possible."""
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def exit_code(signum: int | None = None) -> int:
    """130 for SIGINT, 143 for SIGTERM: `signum`'s, else the first signal received (SIGINT if none was:
    a KeyboardInterrupt raised some other way)."""
    signum = signum if signum is not None else (_signals[0] if _signals else signal.SIGINT)
    return EXIT_SIGTERM if signum == signal.SIGTERM else EXIT_SIGINT


def message() -> str:
    return "error: terminated" if exit_code() == EXIT_SIGTERM else "error: interrupted"


def received() -> bool:
    """Whether a Ctrl-C or SIGTERM came (whatever became of its KeyboardInterrupt: swallowed, or turned into
    another error, as OpenVINO's and SciPy's `ImportError: initialization failed`)."""
    return _received.is_set()


def check() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C or SIGTERM came that something swallowed."""
    if _received.is_set():
        raise KeyboardInterrupt


def exit_now(code: int | None = None, say: bool = True) -> NoReturn:
    """Leave at once with `code`, else 130 (143 after SIGTERM); nothing is open that needs closing at the
    points this is used."""
    if say:
        print(message(), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code() if code is None else code)
