"""Waiting for something unless the process is told to stop first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def unless(stop: asyncio.Event, awaitable: Awaitable[T]) -> tuple[bool, T | None]:
    """``(True, result)`` of ``awaitable``, or ``(False, None)`` if ``stop`` is set first; the loser is cancelled."""
    waiting = asyncio.ensure_future(awaitable)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait((waiting, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        waiting.cancel()
    return (True, waiting.result()) if waiting in done else (False, None)
