"""The output folder of a run, made safe before any model loads: created (or a fresh `runs/<name>N` when none
is given), checked writable, and locked so that two runs never write into one folder at once; and the
display `--show` needs, checked before it is too late to fail cleanly.

The lock is an `fcntl.flock` on `.perception.lock` inside the folder, holding the owner's pid: the OS
releases it when the process ends however it ends (`kill -9` included), so a dead run never blocks the
next. The file itself stays (removing it while locked would let two later runs lock two different files).
It also holds a little disk space in reserve (`RESERVE_BYTES`), given back when the run ends
(`free_reserve`): a run stopped by a full disk still has room for the last lines of its event log.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import sys
from pathlib import Path

from perception.core.errors import PerceptionError
from perception.output.video import describe_os_error

LOCK_NAME = ".perception.lock"
RESERVE_BYTES = 16384
RUNS_DIR = Path("runs")


class RunFolder:
    """An output folder held by this process until `release()` (or the process's end)."""

    def __init__(self, path: Path, created: bool, lock_fd: int, owner_bytes: int) -> None:
        self.path = path
        self.created = created  # by this run: removed again if the run fails before writing anything
        self._lock_fd: int | None = lock_fd
        self._owner_bytes = owner_bytes  # the lock file's pid line; the reserve follows it

    @classmethod
    def claim(cls, out: Path | None, name: str, outputs: tuple[str, ...]) -> RunFolder:
        """`out` (created if missing), or `runs/<source name>` with 2, 3, ... appended while that exists
        (as Ultralytics does), locked; every file in `outputs` checked writable."""
        if out is None:
            path, created = _new_numbered(RUNS_DIR / name)
        else:
            path, created = out, not out.exists()
            if out.exists() and not out.is_dir():
                raise PerceptionError(f"cannot write {out}: it is a file, not a folder")
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                why = describe_os_error(exc)
                raise PerceptionError(f"cannot create output folder {out}: {why}") from None
        folder = cls(path, created, *_lock(path))
        try:
            for name in outputs:
                target = path / name
                if target.is_dir() or (target.exists() and not os.access(target, os.W_OK)):
                    why = "it is a folder" if target.is_dir() else "Permission denied"
                    raise PerceptionError(f"cannot write {target}: {why}")
        except BaseException:
            folder.release(failed=True)
            raise
        return folder

    def free_reserve(self) -> None:
        """Give the reserved space back (to the last lines of a run's log)."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, self._owner_bytes)

    def release(self, failed: bool = False) -> None:
        """Unlock; after a run that `failed` before writing anything, a folder this run created goes again."""
        if self._lock_fd is None:
            return
        os.close(self._lock_fd)
        self._lock_fd = None
        if failed and self.created:
            with contextlib.suppress(OSError):
                (self.path / LOCK_NAME).unlink()
                self.path.rmdir()  # only if nothing else is in it


def _new_numbered(base: Path) -> tuple[Path, bool]:
    for n in range(1, 10_000):
        path = base if n == 1 else base.with_name(f"{base.name}{n}")
        try:
            path.mkdir(parents=True)
            return path, True
        except FileExistsError:
            continue
        except OSError as exc:
            raise PerceptionError(f"cannot create output folder {path}: {describe_os_error(exc)}") from None
    raise PerceptionError(f"cannot create output folder {base}: 9999 numbered folders exist")


def _lock(folder: Path) -> tuple[int, int]:
    """Lock the folder for this process (another live run's lock is refused with its pid) and reserve
    space; the descriptor and the size of the owner line."""
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise PerceptionError(f"cannot write {folder}: {describe_os_error(exc)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").split()
        os.close(fd)
        pid = f" (pid {holder[1]})" if len(holder) > 1 and holder[0] == "pid" else ""
        raise PerceptionError(
            f"output folder {folder} is in use by another run{pid}: wait for it, or pass another --out"
        ) from None
    owner = f"pid {os.getpid()}\n".encode()
    try:  # also proves there is room to write
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner, 0)
        try:
            os.posix_fallocate(fd, len(owner), RESERVE_BYTES)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without fallocate
                raise
            os.pwrite(fd, bytes(RESERVE_BYTES), len(owner))
    except OSError as exc:
        os.close(fd)
        raise PerceptionError(f"cannot write {path}: {describe_os_error(exc)}") from None
    return fd, len(owner)


def check_display() -> None:
    """`--show` opens a window: without a display OpenCV's GUI aborts the process, so find out first."""
    import cv2

    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if gui is not None and gui.group(1).upper() == "NONE":
        raise PerceptionError("--show: this OpenCV has no GUI support (a headless build); run without --show")
    if not sys.platform.startswith("linux"):
        return
    wayland, x11 = os.environ.get("WAYLAND_DISPLAY"), os.environ.get("DISPLAY")
    if not wayland and not x11:
        raise PerceptionError(
            "--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set; run without --show "
            "(annotated.mp4 is written either way)"
        )
    if wayland:
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if _can_connect_unix(Path(wayland) if wayland.startswith("/") else Path(runtime) / wayland):
            return
    if x11 and _x11_reachable(x11):
        return
    shown = f"WAYLAND_DISPLAY={wayland}" if wayland and not x11 else f"DISPLAY={x11}"
    raise PerceptionError(f"--show: no display answers at {shown}; run without --show")


def _x11_reachable(display: str) -> bool:
    """An X server at `[host]:N[.S]`: its unix socket (local) or TCP port 6000 + N."""
    match = re.fullmatch(r"(?:unix/)?(?P<host>[^:]*):(?P<n>\d+)(?:\.\d+)?", display)
    if match is None:
        return True  # a form we do not know: let OpenCV try
    host, number = match["host"], int(match["n"])
    if host in ("", "unix"):  # the socket file, or the abstract one Linux X servers also open
        socket_path = f"/tmp/.X11-unix/X{number}"
        return _can_connect_unix(socket_path) or _can_connect_unix("\0" + socket_path)
    with contextlib.suppress(OSError), socket.create_connection((host, 6000 + number), timeout=2):
        return True
    return False


def _can_connect_unix(path: Path | str) -> bool:
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(str(path))
        return True
    return False
