"""The per-process lookup cache: one lookup for many concurrent misses, and nothing stale kept after a clear."""

from __future__ import annotations

import asyncio
import functools
import itertools

import pytest

from store.cache import SharedCache

pytestmark = pytest.mark.anyio


class Source:
    """A lookup that counts its calls and answers when told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.value = "v1"
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> str:
        self.calls += 1
        value = self.value
        await self.release.wait()
        return value


async def test_concurrent_misses_share_one_lookup():
    cache: SharedCache[str, str] = SharedCache(60)
    source = Source()
    source.release.clear()
    waiting = [asyncio.ensure_future(cache.get("k", source)) for _ in range(20)]
    await asyncio.sleep(0)
    source.release.set()
    assert await asyncio.gather(*waiting) == ["v1"] * 20
    assert source.calls == 1
    assert await cache.get("k", source) == "v1" and source.calls == 1  # kept


async def test_a_lookup_under_way_when_the_cache_is_cleared_is_used_once_but_not_kept():
    cache: SharedCache[str, str] = SharedCache(60)
    source = Source()
    source.release.clear()
    before = asyncio.ensure_future(cache.get("k", source))
    await asyncio.sleep(0)
    source.value = "v2"  # the change commits and is announced while the old read is under way
    cache.clear()
    after = asyncio.ensure_future(cache.get("k", source))  # does not join the old read
    await asyncio.sleep(0)
    source.release.set()
    assert await before == "v1" and await after == "v2"
    assert await cache.get("k", source) == "v2" and source.calls == 2


async def test_a_failed_lookup_fails_its_waiters_and_is_not_kept():
    cache: SharedCache[str, str] = SharedCache(60)
    started = asyncio.Event()

    async def broken() -> str:
        started.set()
        await asyncio.sleep(0.01)
        raise ConnectionError("database away")

    leader = asyncio.ensure_future(cache.get("k", broken))
    await started.wait()
    follower = asyncio.ensure_future(cache.get("k", broken))
    for waiter in (leader, follower):
        with pytest.raises(ConnectionError):
            await waiter
    source = Source()
    assert await cache.get("k", source) == "v1" and source.calls == 1


async def test_when_the_first_caller_is_cancelled_the_others_look_up_for_themselves():
    cache: SharedCache[str, str] = SharedCache(60)
    source = Source()
    source.release.clear()
    leader = asyncio.ensure_future(cache.get("k", source))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(cache.get("k", source))
    await asyncio.sleep(0)
    leader.cancel()
    await asyncio.sleep(0)
    source.release.set()
    assert await follower == "v1" and source.calls == 2


async def test_keep_decides_what_is_kept_and_zero_seconds_keeps_nothing():
    refusing: SharedCache[str, str | None] = SharedCache(60)
    nothing = Source()
    nothing.value = None  # type: ignore[assignment]
    assert await refusing.get("k", nothing, keep=lambda v: v is not None) is None
    assert await refusing.get("k", nothing, keep=lambda v: v is not None) is None
    assert nothing.calls == 2
    uncached: SharedCache[str, str] = SharedCache(0)
    source = Source()
    await uncached.get("k", source)
    await uncached.get("k", source)
    assert source.calls == 2


async def test_an_entry_that_expires_while_it_is_read_is_a_miss_not_an_error():
    """The clock moves between any two readings of it. Here it moves on every reading, by steps of many sizes, so
    some read lands just as its entry expires; that read looks the value up again."""
    for step in (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
        ticks = itertools.count(step=step)
        cache: SharedCache[str, str] = SharedCache(1.0, timer=functools.partial(next, ticks))
        source = Source()
        for _ in range(30):
            assert await cache.get("k", source) == "v1"
        assert source.calls > 1  # entries did expire along the way
