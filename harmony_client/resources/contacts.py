"""``client.contacts``: the people met in meetings, and the meetings each attended."""

from __future__ import annotations

from harmony_client._http import AsyncHttp, SyncHttp, query, segment
from harmony_client.models import Contact, Meeting
from harmony_client.pagination import AsyncPager, SyncPager


class Contacts:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http

    def list(self, *, query: str | None = None, per_page: int = 20) -> SyncPager[Contact]:
        """Every contact by name; ``query`` matches words in the name, e-mail or company."""
        return SyncPager(self._http, "/contacts", Contact, _params(query, per_page))

    def get(self, contact_id: str) -> Contact:
        return self._http.get(f"/contacts/{segment(contact_id)}", Contact)

    def meetings(self, contact_id: str, *, per_page: int = 20) -> SyncPager[Meeting]:
        """The meetings this contact attended that the key may see, newest first."""
        return SyncPager(self._http, f"/contacts/{segment(contact_id)}/meetings", Meeting, {"per_page": per_page})


class AsyncContacts:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    def list(self, *, query: str | None = None, per_page: int = 20) -> AsyncPager[Contact]:
        return AsyncPager(self._http, "/contacts", Contact, _params(query, per_page))

    async def get(self, contact_id: str) -> Contact:
        return await self._http.get(f"/contacts/{segment(contact_id)}", Contact)

    def meetings(self, contact_id: str, *, per_page: int = 20) -> AsyncPager[Meeting]:
        return AsyncPager(self._http, f"/contacts/{segment(contact_id)}/meetings", Meeting, {"per_page": per_page})


def _params(words: str | None, per_page: int) -> dict[str, str | int]:
    return query(query=words, per_page=per_page)
