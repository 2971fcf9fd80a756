"""Wake workers in other processes on the same machine, for SQLite (which has no NOTIFY).

Every worker on a SQLite database binds a Unix datagram socket in a directory named after the
database file (``<tmp>/atw-<hash of its path>/``). When tasks are added or a cancel is
requested, the adding process sends one datagram to each socket there but its own: a
``sendto`` of a few bytes, no server and no extra service. A SQLite database is on one
machine, so every process that uses it can reach the directory.

A lost ring costs only latency: the worker's poll still finds the task. A socket whose worker
was killed refuses the datagram and is removed by the next ring. The directory is private to
the user (mode 0700): processes of another user are not rung, and poll.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import itertools
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from django.db import connections

logger = logging.getLogger(__name__)

SUFFIX = ".sock"
# Message kinds, one per line of a datagram: "q <queue>" tasks added, "c <task id>" cancel.
ADDED = "q"
CANCEL = "c"
_counter = itertools.count()


def folder(alias: str = "default") -> Path | None:
    """The doorbell folder of the SQLite database ``alias``; None where there is none.

    None for other databases, for in-memory SQLite, and where Unix sockets do not exist.
    """
    if not hasattr(socket, "AF_UNIX"):
        return None
    conn = connections[alias]
    if conn.vendor != "sqlite":
        return None
    return _folder_of(str(conn.settings_dict["NAME"]))


@functools.lru_cache(maxsize=32)
def _folder_of(name: str) -> Path | None:
    if not name or name == ":memory:" or "mode=memory" in name:
        return None
    digest = hashlib.sha256(os.path.realpath(name).encode()).hexdigest()[:16]
    # A short path: a Unix socket's path must fit in 108 bytes.
    return Path(tempfile.gettempdir()) / f"atw-{digest}"


def bind(where: Path) -> socket.socket:
    """Create and bind this worker's non-blocking datagram socket in ``where``."""
    where.mkdir(mode=0o700, exist_ok=True)
    path = where / f"{os.getpid()}-{next(_counter)}{SUFFIX}"
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a killed process whose pid this one got
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(str(path))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def unbind(sock: socket.socket) -> None:
    """Close a socket made by ``bind`` and remove its file."""
    path = sock.getsockname()
    sock.close()
    if isinstance(path, str) and path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def ring(*, queues: Iterable[str] = (), cancel: str | None = None, alias: str = "default") -> None:
    """Tell the workers of other processes on this database that tasks were added to ``queues``
    or that ``cancel`` should be cancelled. Never raises: polling covers a lost ring."""
    where = folder(alias)
    if where is None:
        return
    lines = [f"{ADDED} {queue}" for queue in sorted(set(queues))]
    if cancel is not None:
        lines.append(f"{CANCEL} {cancel}")
    if not lines:
        return
    targets = _others(where)
    if not targets:
        return
    message = "\n".join(lines).encode()
    for path in targets:
        try:
            _sender().sendto(message, path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(OSError):
                os.unlink(path)  # its worker is gone
        except OSError:
            pass  # its queue is full: it has rings to read already


# The sockets of other processes' workers, by folder: (folder mtime, when listed, paths). A ring
# costs one stat while no worker starts or stops. File times tick coarsely (a few ms), so a
# listing is also renewed after LISTING_AGE seconds: a worker that bound within the tick of
# the last listing is rung after at most that long (it polls meanwhile).
LISTING_AGE = 1.0
_listed: dict[Path, tuple[int, float, list[str]]] = {}
_sender_lock = threading.Lock()
_sender_socket: socket.socket | None = None


def _others(where: Path) -> list[str]:
    try:
        changed = os.stat(where).st_mtime_ns
    except OSError:
        return []  # no worker has bound yet (or the folder is not ours)
    now = time.monotonic()
    known = _listed.get(where)
    if known is not None and known[0] == changed and now - known[1] < LISTING_AGE:
        return known[2]
    own = f"{os.getpid()}-"
    try:
        paths = [
            entry.path
            for entry in os.scandir(where)
            if entry.name.endswith(SUFFIX) and not entry.name.startswith(own)  # own: woken in memory
        ]
    except OSError:
        return []
    _listed[where] = (changed, now, paths)
    return paths


def _sender() -> socket.socket:
    """The process's unbound datagram socket for ringing (sendto is safe from any thread)."""
    global _sender_socket
    with _sender_lock:
        if _sender_socket is None:
            _sender_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            _sender_socket.setblocking(False)
            atexit.register(_sender_socket.close)
        return _sender_socket


def parse(datagram: bytes) -> tuple[set[str], list[str]]:
    """Return the queues with added tasks and the task ids to cancel that a datagram names."""
    queues: set[str] = set()
    cancels: list[str] = []
    for line in datagram.decode(errors="replace").splitlines():
        kind, _, value = line.partition(" ")
        if kind == ADDED and value:
            queues.add(value)
        elif kind == CANCEL and value:
            cancels.append(value)
    return queues, cancels
