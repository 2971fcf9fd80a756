"""Find the channel layer, and tell whether it reaches other processes."""

from __future__ import annotations

from typing import Any


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
