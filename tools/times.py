"""How Harmony states times, the same for the assistant's tools and the REST API."""

from __future__ import annotations

from datetime import UTC, date, datetime, time


def hms(seconds: float) -> str:
    """An offset into a recording as HH:MM:SS, as Harmony's transcripts show it."""
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def start_of(day: date) -> datetime:
    """Midnight UTC: date filters take whole UTC days."""
    return datetime.combine(day, time.min, tzinfo=UTC)
