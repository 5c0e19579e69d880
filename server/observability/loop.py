"""How late the event loop runs what is due: the wait that every call in a worker shares.

One event loop serves every call of a worker process. While it runs one thing
(a garbage collection, a burst of requests, a slow synchronous call) everything
else waits, and that wait lands in every caller's latency without belonging to
any phase of any call. A task asks to wake after a fixed interval and records
how much later than that it woke: near zero on a loop with headroom, the length
of the pause when there was one, and climbing when the worker is saturated.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

INTERVAL_SECONDS = 0.25


async def watch_loop_lag(observe: Callable[[float], None], interval: float = INTERVAL_SECONDS) -> None:
    """Forever: sleep ``interval``, and ``observe`` how many seconds late the loop woke this task."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - due))
