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


async def first(stop: asyncio.Event, *awaitables: Awaitable[T]) -> tuple[int, T] | None:
    """The position and result of whichever of ``awaitables`` finishes first, or None if ``stop`` is set first.

    The others are cancelled: a prompt answered elsewhere is no longer waited for.
    """
    racing = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    stopping = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait((*racing, stopping), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (*racing, stopping):
            task.cancel()
    winner = next((index for index, task in enumerate(racing) if task in done), None)
    return None if winner is None else (winner, racing[winner].result())
