"""Auto-pagination: a list call gives every matching item, fetching the next page only when iteration reaches it.

Pages after the first are fetched by ``next_cursor`` (keyset pagination), not
by page number: a cursor starts right after the last item seen, so meetings
added or removed while you iterate neither repeat nor go missing, and the
hundredth page costs what the first does. Iterating again starts over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Generic, TypeVar

from harmony_client._http import AsyncHttp, SyncHttp
from harmony_client.models import Page

T = TypeVar("T")


class SyncPager(Generic[T]):
    """Every item of a list endpoint: ``for item in pager``; ``pages()`` walks whole pages."""

    def __init__(self, http: SyncHttp, path: str, item: type[T], params: Mapping[str, str | int]) -> None:
        self._http = http
        self._path = path
        self._page = Page[item]  # type: ignore[valid-type]
        self._params = dict(params)

    def pages(self) -> Iterator[Page[T]]:
        cursor: str | None = None
        while True:
            params = self._params if cursor is None else {**self._params, "cursor": cursor}
            page: Page[T] = self._http.get(self._path, self._page, params)
            yield page
            cursor = page.pagination.next_cursor
            if cursor is None:
                return

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.data


class AsyncPager(Generic[T]):
    """Every item of a list endpoint: ``async for item in pager``; ``pages()`` walks whole pages."""

    def __init__(self, http: AsyncHttp, path: str, item: type[T], params: Mapping[str, str | int]) -> None:
        self._http = http
        self._path = path
        self._page = Page[item]  # type: ignore[valid-type]
        self._params = dict(params)

    async def pages(self) -> AsyncIterator[Page[T]]:
        cursor: str | None = None
        while True:
            params = self._params if cursor is None else {**self._params, "cursor": cursor}
            page: Page[T] = await self._http.get(self._path, self._page, params)
            yield page
            cursor = page.pagination.next_cursor
            if cursor is None:
                return

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.data:
                yield item
