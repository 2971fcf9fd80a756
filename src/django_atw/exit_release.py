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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .asgi import EmbeddedEngine

logger = logging.getLogger(__name__)

_engines: list[EmbeddedEngine] = []
# Held while releasing: the thread woken by SIGINT and the exit hook may both try; the later
# waits for the first and finds nothing left.
_releasing = threading.Lock()


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
        # Stopped first, so that no claim succeeds after the release; then every task running
        # under this worker, claimed or started: a claim committed just before the signal has
        # tasks the engine has not started (nor counted as running) yet.
        store.mark_worker_stopped(worker.worker_id)
        released = store.release(worker.worker_id)
    except Exception:
        logger.exception("could not return running tasks to pending at exit")
        return
    logger.info("process exiting: returned %d running tasks to pending", released)


def watch_interrupts() -> None:
    """Under runserver's autoreloader, release the running tasks at Ctrl-C itself.

    Called from the app's ``ready()``, in the main thread (the only one that may set the wakeup
    fd). Leaves everything as it is elsewhere, and when the wakeup fd is already someone else's.
    """
    from django.utils.autoreload import DJANGO_AUTORELOAD_ENV

    if os.environ.get(DJANGO_AUTORELOAD_ENV) != "true":
        return
    if threading.current_thread() is not threading.main_thread():
        return
    reader, writer = socket.socketpair()
    writer.setblocking(False)  # the wakeup fd must never block the thread a signal lands on
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    if previous != -1:  # never so under runserver, whose main thread runs no event loop
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        return
    waiter = threading.Thread(target=_wait_for_interrupt, args=(reader, writer), name="atw-interrupt")
    waiter.daemon = True
    waiter.start()


def _wait_for_interrupt(reader: socket.socket, writer: socket.socket) -> None:
    """Release at the first SIGINT, wherever it landed (``writer`` stays open with the fd).

    The main thread goes on to raise KeyboardInterrupt when it wakes; the exit hook then waits
    for this release to end (``_releasing``) rather than running one of its own.
    """
    while True:
        received = reader.recv(64)
        if not received or signal.SIGINT in received:
            break
    release_all()
