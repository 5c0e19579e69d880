"""Pagination for list endpoints: ``page``/``per_page`` as Harmony's API page shows, or a keyset ``cursor``.

Page numbers are what people expect and give a ``total``; a deep page costs an
OFFSET scan, and rows inserted meanwhile shift the pages. A cursor carries the
sort key of the last row seen, so the next page starts right after it however
the data changed, and page 5,000 costs what page 1 costs. Every answer carries
``next_cursor``, so a client can start with pages and continue with cursors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Select, SQLColumnExpression, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.services.errors import InvalidInput
from tools.errors import InvalidArguments
from tools.pagination import encode_cursor, keyset

T = TypeVar("T")


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: int = Field(default=1, ge=1, le=1_000_000, description="Page number, from 1 (ignored with a cursor)")
    per_page: int = Field(default=20, ge=1, le=100, description="Items per page (max 100)")
    cursor: str | None = Field(
        default=None, max_length=500, description="next_cursor from the previous answer: keyset pagination"
    )

    @model_validator(mode="after")
    def _one_way(self) -> PageQuery:
        if self.cursor is not None and self.page != 1:
            raise ValueError("page: give either page or cursor, not both")
        return self


class Pagination(BaseModel):
    page: int | None = Field(description="The page number; null when paging by cursor")
    per_page: int
    total: int | None = Field(description="Items matching the filters; null when paging by cursor")
    has_more: bool
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last one")


class Page(BaseModel, Generic[T]):
    data: list[T]
    pagination: Pagination


async def paginate(
    session: AsyncSession,
    query: Select[*tuple[Any, ...]],
    order: tuple[SQLColumnExpression[Any], SQLColumnExpression[Any]],
    paging: PageQuery,
    *,
    key: Callable[[Any], tuple[Any, ...]],
    descending: bool = True,
    scalars: bool = True,
) -> tuple[Sequence[Any], Pagination]:
    """One page of ``query`` ordered by ``order`` (sort key, unique id), by number or by cursor.

    A column of ``order`` may be a Core column or a mapped attribute (``Meeting.date``), as in ``tools.pagination``.
    """
    size = paging.per_page
    if paging.cursor is not None:
        try:
            limited = keyset(query, order, cursor=paging.cursor, limit=size, descending=descending)
        except InvalidArguments:
            raise InvalidInput({"cursor": "not a cursor this endpoint returned"}) from None
        rows = list(await (session.scalars(limited) if scalars else session.execute(limited)))
        total = None
        page_number = None
    else:
        total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
        ordering = (order[0].desc(), order[1].desc()) if descending else order
        offset = (paging.page - 1) * size
        limited = query.order_by(*ordering).offset(offset).limit(size + 1)
        rows = list(await (session.scalars(limited) if scalars else session.execute(limited)))
        page_number = paging.page
    has_more = len(rows) > size
    rows = rows[:size]
    next_cursor = encode_cursor(*key(rows[-1])) if has_more and rows else None
    return rows, Pagination(page=page_number, per_page=size, total=total, has_more=has_more, next_cursor=next_cursor)
