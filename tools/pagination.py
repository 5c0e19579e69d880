"""Keyset pagination with opaque cursors.

A cursor carries the sort key of the last row a page returned, so the next
page starts right after it however the data changed in between, and a deep
page costs what the first one does.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, SQLColumnExpression, tuple_
from sqlalchemy.types import TypeEngine

from tools.errors import InvalidArguments, ToolError

Row = TypeVar("Row")
# Any SELECT, of however many columns: SQLAlchemy types a Select by the types of its columns.
S = TypeVar("S", bound=Select[*tuple[Any, ...]])


def encode_cursor(*key: Any) -> str:
    plain = [value.isoformat() if isinstance(value, datetime) else value for value in key]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int, *, field: str = "cursor") -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidArguments({field: "not a cursor returned by this tool; pass next_cursor from the previous page"})
    return key


def _typed(column_type: TypeEngine[Any], value: Any) -> Any:
    if column_type.python_type is datetime:
        try:
            return datetime.fromisoformat(value)
        except (TypeError, ValueError):
            raise InvalidArguments({"cursor": "not a cursor returned by this tool"}) from None
    return value


def keyset(
    query: S,
    order: tuple[SQLColumnExpression[Any], SQLColumnExpression[Any]],
    *,
    cursor: str | None,
    limit: int,
    descending: bool,
) -> S:
    """Order ``query`` by (sort key, unique id), start after ``cursor``, fetch one row extra.

    A column of ``order`` may be a Core column or a mapped attribute (``Meeting.date``): both are column
    expressions, and the row value built from the two carries each one's SQL type.
    """
    first, second = order
    if cursor:
        # A row-value comparison, not (a < x OR a = x AND b < y): both SQLite and PostgreSQL
        # seek the index straight to it, so a deep page costs what the first does.
        position = tuple_(first, second)
        key = decode_cursor(cursor, 2)
        last_first, last_second = (_typed(t, v) for t, v in zip(position.type.types, key, strict=True))
        last = tuple_(last_first, last_second)
        query = query.where(position < last if descending else position > last)
    ordering = (first.desc(), second.desc()) if descending else (first, second)
    return query.order_by(*ordering).limit(limit + 1)


def page_of(rows: Sequence[Row], limit: int, key: Callable[[Row], tuple[Any, ...]]) -> tuple[list[Row], str | None]:
    """The rows of this page, and the cursor of the next one (None on the last page)."""
    page = list(rows[:limit])
    return page, encode_cursor(*key(page[-1])) if len(rows) > limit else None


PageFetch = Callable[[str | None], Awaitable[tuple[list[Row], str | None]]]


async def every_page(fetch: PageFetch[Row], *, max_pages: int = 1000) -> AsyncIterator[Row]:
    """Every item of a provider's cursor-paginated list: ``fetch(cursor)`` returns (items, next cursor).

    A provider that keeps returning the same cursor would loop forever; that, or
    more than ``max_pages`` pages, is reported instead.
    """
    cursor: str | None = None
    for _ in range(max_pages):
        items, next_cursor = await fetch(cursor)
        for item in items:
            yield item
        if not next_cursor:
            return
        if next_cursor == cursor:
            raise ToolError("The provider returned the same page cursor twice.", code="provider_error")
        cursor = next_cursor
    raise ToolError(f"Stopped after {max_pages} pages; the list is larger than a sync may read.", code="too_large")
