"""The process's notifier thread: NOTIFY workers elsewhere of added tasks, once per burst.

A NOTIFY inside every adding transaction serializes their commits on PostgreSQL's
notification queue lock; one thread sending each queue's name once per burst of adds, on a
connection of its own and after the tasks are committed, does not (``wakeup.notify_processes``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterable

from django.db import connections

from . import store
from .logs import brief

logger = logging.getLogger(__name__)

# Seconds the interpreter's exit waits for the notifier to send what it holds.
NOTIFIER_EXIT_WAIT = 2.0
# Least seconds from one NOTIFY to the next. The first add after a quiet moment is announced at
# once; a stream of adds then costs one NOTIFY per gap instead of one per commit, each a
# statement and commit here and a wake-up (and claim) in every listening worker. Workers are
# busy claiming what the first one announced meanwhile.
NOTIFY_GAP = 0.002


class Notifier:
    """One thread per process that NOTIFYs added queues on its own connection, coalescing bursts.

    ``send`` only records the names and wakes the thread; the thread sends every name recorded
    meanwhile with one statement (``store.announce_added``), at least ``gap`` seconds after its
    previous one, so a burst of adds from many threads costs one NOTIFY per queue per gap,
    committed by one connection instead of contending for the server's notification lock at
    each add's commit. A failed send is retried once on a
    new connection, then logged and dropped: the tasks are stored, and workers poll.

    The thread starts on the first ``send`` (again in a forked child) and ends with ``close``,
    which sends what is pending and closes the connection (also at interpreter exit).
    """

    def __init__(self, gap: float = NOTIFY_GAP) -> None:
        self._gap = gap
        self._reset()
        atexit.register(self.close, NOTIFIER_EXIT_WAIT)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._pending: set[str] = set()
        self._sending = False
        self._idle = False  # the thread waits for names (not for its gap): a send must wake it
        self._closing = False
        self._failing = False
        self._thread: threading.Thread | None = None
        self._last_sent = -math.inf

    def send(self, queues: Iterable[str]) -> None:
        """Have the thread NOTIFY ``queues`` soon (the tasks in them must be committed)."""
        with self._changed:
            self._pending.update(queues)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="atw-notifier", daemon=True)
                self._thread.start()
            elif self._idle:
                # Only then: during its gap the thread sends what is pending when the gap ends,
                # and waking it at every add cost a thread switch per add (an eighth of its CPU).
                self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every name sent so far is NOTIFYed (or dropped); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._sending, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Send what is pending, close the connection and end the thread (a later send restarts it)."""
        with self._changed:
            thread = self._thread
            if thread is None:
                return
            self._closing = True
            self._changed.notify_all()
        thread.join(timeout)
        with self._changed:
            if self._thread is thread and not thread.is_alive():
                self._thread = None
                self._closing = False

    def _run(self) -> None:
        try:
            while True:
                with self._changed:
                    self._idle = True
                    self._changed.wait_for(lambda: self._pending or self._closing)
                    self._idle = False
                    if not self._pending:
                        return  # closing, nothing left
                    held = self._last_sent + self._gap - time.monotonic()
                    if held > 0:
                        self._changed.wait_for(lambda: self._closing, held)  # gather the burst
                    self._last_sent = time.monotonic()
                    queues = sorted(self._pending)
                    self._pending.clear()
                    self._sending = True
                try:
                    self._send(queues)
                finally:
                    with self._changed:
                        self._sending = False
                        self._changed.notify_all()
        finally:
            connections.close_all()

    def _send(self, queues: list[str]) -> None:
        for attempt in (1, 2):
            try:
                store.announce_added(queues)
            except Exception as exc:
                with contextlib.suppress(Exception):  # a dropped connection stays broken: reconnect
                    connections["default"].close()
                if attempt == 1:
                    continue
                if not self._failing:
                    logger.warning(
                        "could not NOTIFY added tasks (%s); workers in other processes will poll",
                        brief(exc),
                    )
                self._failing = True
                return
            if self._failing:
                logger.info("NOTIFY of added tasks works again")
                self._failing = False
            return


NOTIFIER = Notifier()
