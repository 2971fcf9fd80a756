"""Find the channel layer, tell whether it reaches other processes, and send to it boundedly.

The database is the truth and every subscribe gets a snapshot from it, so an event the layer
does not take is dropped rather than waited for: a hung layer (a Redis that accepts the
connection but never answers) must cost the engine a bounded delay, never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import Any

from ..logs import brief

logger = logging.getLogger(__name__)

# Seconds one ``group_send`` may take before it is given up. A healthy layer answers in about
# a millisecond (channels_redis: 0.7 ms median, 25 ms at p99 with 100 group members; see
# research/realtime.md section 5), so one second only ever cuts off a layer that is down or
# hung, and a stopping worker waits for a hung layer this long per batch, not forever.
SEND_TIMEOUT = 1.0

# Layers whose last send failed, with the number of events dropped since: an outage is
# logged once when it starts and once when it ends, whatever the number of events.
_outages: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def get_layer() -> Any:
    """Return the default channel layer, or None when Channels is absent or unconfigured."""
    try:
        from channels.layers import get_channel_layer
    except ImportError:
        return None
    return get_channel_layer()


def crosses_processes(layer: Any) -> bool:
    """True unless ``layer`` is Channels' in-memory layer, which reaches this process only."""
    from channels.layers import InMemoryChannelLayer

    return not isinstance(layer, InMemoryChannelLayer)


def may_have_members(layer: Any, group: str) -> bool:
    """False only when nobody can be in ``group``: ``layer`` is in-memory and holds no such group.

    The in-memory layer lives in this process, so its groups are all there is; each of its
    sends scans every group it holds, so a send nobody can receive is worth skipping. Any
    other layer may have members elsewhere: always True.
    """
    from channels.layers import InMemoryChannelLayer

    return not isinstance(layer, InMemoryChannelLayer) or group in layer.groups


async def group_send(layer: Any, group: str, message: dict[str, Any]) -> bool:
    """Send ``message`` to ``group`` within ``SEND_TIMEOUT`` seconds; return whether it went.

    Never raises (but for cancellation): a failed or timed-out send is dropped, and logged at
    WARNING only if it starts an outage.
    """
    try:
        async with asyncio.timeout(SEND_TIMEOUT):
            await layer.group_send(group, message)
    except Exception as exc:
        if layer not in _outages:
            _outages[layer] = 0
            reason = f"no answer within {SEND_TIMEOUT:g}s" if isinstance(exc, TimeoutError) else brief(exc)
            logger.warning(
                "channel layer did not take a task event (%s); dropping events until it answers, "
                "clients catch up from the database when they subscribe",
                reason,
            )
        return False
    dropped = _outages.pop(layer, None)
    if dropped is not None:
        logger.info("channel layer answers again; %d task events were dropped meanwhile", dropped)
    return True


async def task_group_send(layer: Any, group: str, message: dict[str, Any]) -> bool:
    """``group_send`` to one task's group; return whether it went.

    With the in-memory layer the message goes straight to the group's channels: its own
    ``group_send`` first scans every group it holds (to expire old memberships), so publishing
    a change of each of N watched tasks cost N times all groups (2,000 watched: 1.2 ms a send,
    2.4 s of the event loop for one bulk change). The list-group message of each chunk of
    events still goes through ``group_send``, so that scan runs once a chunk, not once a task.
    """
    from channels.exceptions import ChannelFull
    from channels.layers import InMemoryChannelLayer

    if not isinstance(layer, InMemoryChannelLayer):
        return await group_send(layer, group, message)
    for channel in list(layer.groups.get(group, ())):
        # As group_send does: a client that does not read loses its events, not the others.
        with contextlib.suppress(ChannelFull):
            await layer.send(channel, message)
    return True


def count_dropped(layer: Any, events: int) -> None:
    """Add to the events dropped during the layer's current outage (reported when it ends)."""
    if layer in _outages:
        _outages[layer] += events
