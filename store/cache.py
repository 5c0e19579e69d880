"""A per-process cache of database lookups that a busy server can lean on.

Two things a plain TTL cache gets wrong under load. When an entry expires
while a hundred requests are queued on the event loop, each of them misses
and asks the database, all before the first answer arrives; here the misses
for one key share one lookup. And a lookup that started before a change was
announced (``store.invalidation``) would otherwise store what it read after
the cache was cleared, bringing the old value back for a whole TTL; here a
clear detaches every lookup in flight, whose results are then used once but
not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TTLCache

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Abandoned(Exception):
    """The shared lookup was cancelled: whoever waited on it looks up for itself."""


class SharedCache(Generic[K, V]):
    def __init__(self, seconds: float, *, maxsize: int = 10_000, timer: Callable[[], float] = time.monotonic) -> None:
        # seconds == 0 keeps nothing, but concurrent misses still share a lookup.
        self._values: TTLCache[K, V] | None = TTLCache(maxsize=maxsize, ttl=seconds, timer=timer) if seconds else None
        self._pending: dict[K, asyncio.Future[V]] = {}
        self._generation = 0  # counts clears: a lookup keeps its result only if none happened meanwhile

    async def get(self, key: K, lookup: Callable[[], Awaitable[V]], *, keep: Callable[[V], bool] | None = None) -> V:
        """The cached value for ``key``, or ``lookup()``'s, kept when ``keep`` (if given) says so."""
        if self._values is not None:
            # One reading: between a membership test and a read the entry can expire, and the read then raises.
            with contextlib.suppress(KeyError):
                return self._values[key]
        pending = self._pending.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except _Abandoned:
                return await lookup()
        generation = self._generation
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        # Marks a failure as seen even if nobody else waited for this lookup, so asyncio does not report it.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._pending[key] = future
        try:
            value = await lookup()
        except Exception as exc:
            future.set_exception(exc)
            raise
        except BaseException:
            future.set_exception(_Abandoned())
            raise
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
        if self._values is not None and generation == self._generation and (keep is None or keep(value)):
            self._values[key] = value
        future.set_result(value)
        return value

    def clear(self) -> None:
        """Forget every value, and keep none that a lookup already under way returns."""
        self._generation += 1
        self._pending.clear()
        if self._values is not None:
            self._values.clear()
