"""Telling every process that something it caches changed: keys, rules or connections.

Each process caches key lookups, compiled rules and connection lists for a
moment (``COMPANION_CACHE_SECONDS``), so a burst of calls costs one lookup. A
change is announced inside the transaction that makes it. At commit, this
process's caches forget the topic; on PostgreSQL a NOTIFY reaches every other
process's LISTEN connection (``store.listener``), whose caches forget it too.
The cache time stays as the bound when a notification is lost (a LISTEN
connection reconnecting, or another process on SQLite).
"""

from __future__ import annotations

import logging
import weakref
from enum import StrEnum
from typing import Protocol

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from store.db import dialect_name

log = logging.getLogger(__name__)

CHANNEL = "companion_changes"
PENDING = "companion.invalidation"


class Topic(StrEnum):
    KEYS = "keys"  # an API key or a membership: who a bearer token is, and with which role
    RULES = "rules"
    CONNECTIONS = "connections"


class Forgetful(Protocol):
    def forget(self, topic: Topic) -> None: ...


# Weak, so a Companion that is closed and dropped (tests make many in one process) stops being told.
_caches: weakref.WeakSet[Forgetful] = weakref.WeakSet()


def subscribe(cache: Forgetful) -> None:
    """Have ``cache.forget(topic)`` called whenever ``topic`` changes, here or on another replica."""
    _caches.add(cache)


def dispatch(payload: str) -> None:
    """Tell every cache of this process that a topic changed (an unknown topic, from a newer replica, is ignored)."""
    try:
        topic = Topic(payload)
    except ValueError:
        log.debug("ignoring a change notification for unknown topic %r", payload)
        return
    for cache in list(_caches):
        cache.forget(topic)


async def announce(session: AsyncSession, topic: Topic) -> None:
    """Say that ``topic`` changed, once this transaction commits."""
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, :topic)"), {"channel": CHANNEL, "topic": topic.value})
    session.sync_session.info.setdefault(PENDING, set()).add(topic)


@event.listens_for(Session, "after_commit")
def _forget_after_commit(session: Session) -> None:
    # This process forgets at once rather than when its own NOTIFY comes back.
    for topic in session.info.pop(PENDING, ()):
        dispatch(topic.value)


@event.listens_for(Session, "after_rollback")
def _nothing_changed(session: Session) -> None:
    session.info.pop(PENDING, None)
