"""Return running tasks to pending when a server process ends with its engine still running.

Under ``manage.py runserver`` (Django's autoreloader, serving through Daphne) the server's loop
runs in a daemon thread and no shutdown reaches it: Ctrl-C ends the main thread, and the
reloader kills the process a quarter of a second later. That leaves no time for a grace period
or a stop on the loop, so the running tasks are released at once, for the next worker to run,
instead of waiting for their lease to expire. (A task finishing meanwhile cannot overwrite the
release: outcome writes apply only to rows still running under this worker.)

At exit is too late on a busy machine: the kernel may hand SIGINT to any thread, and then the
main thread notices it only when its reloader's one-second sleep ends. So under the
autoreloader the signal itself releases them: Python's wakeup fd is written by whichever thread
receives it, and a thread of ours waits on the other end.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asgi import EmbeddedEngine

logger = logging.getLogger(__name__)

_engines: list[EmbeddedEngine] = []
# Held while releasing: the signal's thread, the main thread's handler and the exit hook may
# each try; the later ones wait for the first and find nothing left (re-entrant: a Ctrl-C in
# the exit hook itself).
_releasing = threading.RLock()


def register(engine: EmbeddedEngine) -> None:
    """Release ``engine``'s running tasks if the process ends (or runserver is interrupted)
    while it runs."""
    if not _engines:
        atexit.register(release_all)
    _engines.append(engine)


def release_all() -> None:
    """Return the running tasks of every registered engine still running to pending (each once)."""
    with _releasing:
        while _engines:
            _release(_engines.pop())


def _release(embedded: EmbeddedEngine) -> None:
    worker, loop = embedded.worker, embedded._loop
    # Called off the server's loop thread: a loop still running is that thread's.
    if worker is None or loop is None or not loop.is_running():
        return
    from . import store

    try:
        released = store.release(worker.worker_id, worker.running_task_ids())
        store.mark_worker_stopped(worker.worker_id)
    except Exception:
        logger.exception("could not return running tasks to pending at exit")
        return
    logger.info("process exiting: returned %d running tasks to pending", released)


def watch_interrupts() -> None:
    """Under runserver's autoreloader, release the running tasks at Ctrl-C itself.

    Called from the app's ``ready()``, in the main thread (the only one that may set signal
    handlers). Leaves everything as it is elsewhere, and when SIGINT or the wakeup fd are
    already someone else's.
    """
    from django.utils.autoreload import DJANGO_AUTORELOAD_ENV

    if os.environ.get(DJANGO_AUTORELOAD_ENV) != "true":
        return
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)  # the wakeup fd must never block the thread a signal lands on
    if signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False) != -1:
        signal.set_wakeup_fd(-1)  # never happens under runserver, whose main thread runs no loop
        reader.close()
        writer.close()
        return
    waiter = threading.Thread(target=_wait_for_interrupt, args=(reader, writer), name="atw-interrupt")
    waiter.daemon = True
    waiter.start()

    def interrupted(signum: int, frame: Any) -> None:
        release_all()
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, interrupted)


def _wait_for_interrupt(reader: socket.socket, writer: socket.socket) -> None:
    """Release at the first SIGINT, wherever it landed (``writer`` stays open with the fd)."""
    while True:
        received = reader.recv(64)
        if not received or signal.SIGINT in received:
            break
    release_all()
