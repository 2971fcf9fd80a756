"""The result cache: AsyncCacheAdapter, key functions, msgpack values, three backends."""

from __future__ import annotations

from .adapter import AsyncCacheAdapter
from .keys import compose_key_functions, extract_key_component, key_component

__all__ = ["AsyncCacheAdapter", "compose_key_functions", "extract_key_component", "key_component"]
