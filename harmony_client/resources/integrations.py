"""``client.integrations``: the apps there are, the ones connected, and each step of a connection's life.

These calls need a **user** key: an assistant's agent key gets ``Forbidden``. Workspace connections are
managed by admins and by members an admin trusted with the workspace's integrations; personal ones by
their owner alone.

Connecting with a key, a password or SMTP settings answers the ``Connection`` at once. Connecting an OAuth
app answers an ``OAuthStart``: open its ``authorize_url`` in a browser signed in to the console as the same
person, and the connection appears when the provider sends the browser back.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any, Literal

import httpx

from harmony_client._http import AsyncHttp, Call, SyncHttp, segment
from harmony_client.models import (
    App,
    AppList,
    ChoiceList,
    Connection,
    ConnectionList,
    ConnectionTest,
    Mappings,
    OAuthStart,
    SyncRun,
    SyncRunList,
)

ConnectionScope = Literal["workspace", "personal"]
Method = Literal["oauth2", "api_key", "basic", "smtp"]
Direction = Literal["bidirectional", "to_harmony", "to_provider"]


def _path(connection_id: str, action: str = "") -> str:
    return f"/integrations/{segment(connection_id)}" + (f"/{action}" if action else "")


def _connect(
    app: str,
    scope: ConnectionScope | None,
    method: Method | None,
    label: str,
    setup: Mapping[str, Any] | None,
    return_to: str | None,
) -> Call:
    body: dict[str, Any] = {"label": label, "setup": dict(setup or {})}
    for name, value in (("scope", scope), ("method", method), ("return_to", return_to)):
        if value is not None:
            body[name] = value
    return Call("POST", f"/integrations/apps/{segment(app)}/connect", json=body)


def _reauthenticate(connection_id: str, setup: Mapping[str, Any] | None, return_to: str | None) -> Call:
    body: dict[str, Any] = {"setup": dict(setup or {})}
    if return_to is not None:
        body["return_to"] = return_to
    return Call("POST", _path(connection_id, "reauth"), json=body)


def _mappings(
    connection_id: str,
    objects: Mapping[str, str] | None,
    fields: Mapping[str, str] | None,
    direction: Direction | None,
    auto_sync: bool | None,
) -> Call:
    given = {"objects": objects, "fields": fields, "direction": direction, "auto_sync": auto_sync}
    body = {name: dict(value) if isinstance(value, Mapping) else value for name, value in given.items()}
    return Call("PATCH", _path(connection_id, "mappings"), json={k: v for k, v in body.items() if v is not None})


def _started_or_connected(response: httpx.Response) -> Connection | OAuthStart:
    """202 is an OAuth start, whose connection comes later; 200 and 201 are the connection itself."""
    model: type[Connection] | type[OAuthStart] = OAuthStart if response.status_code == 202 else Connection
    return model.model_validate_json(response.content)


class Integrations:
    def __init__(self, http: SyncHttp) -> None:
        self._http = http

    def apps(self) -> builtins.list[App]:
        """Every app this server can connect, with how it connects, its setup fields and its tools."""
        return self._http.get("/integrations/apps", AppList).data

    def list(self) -> builtins.list[Connection]:
        """The workspace's connections and your personal ones, disconnected ones included."""
        return self._http.get("/integrations", ConnectionList).data

    def get(self, connection_id: str) -> Connection:
        return self._http.get(_path(connection_id), Connection)

    def connect(
        self,
        app: str,
        *,
        scope: ConnectionScope | None = None,
        method: Method | None = None,
        label: str = "",
        setup: Mapping[str, Any] | None = None,
        return_to: str | None = None,
    ) -> Connection | OAuthStart:
        """Connect ``app`` (an id from ``apps()``): a ``Connection`` with a key or password in ``setup``,
        an ``OAuthStart`` for an OAuth app. ``scope`` and ``method`` default to the app's first."""
        return _started_or_connected(self._http.send(_connect(app, scope, method, label, setup, return_to)))

    def reauthenticate(
        self, connection_id: str, *, setup: Mapping[str, Any] | None = None, return_to: str | None = None
    ) -> Connection | OAuthStart:
        """OAuth: a new ``OAuthStart`` for the same connection. Keys and passwords: the new ones, in ``setup``."""
        return _started_or_connected(self._http.send(_reauthenticate(connection_id, setup, return_to)))

    def update_credentials(self, connection_id: str, setup: Mapping[str, Any]) -> Connection:
        """Replace a key or password in place; settings, options and mappings stay."""
        call = Call("PUT", _path(connection_id, "credentials"), json={"setup": dict(setup)})
        return self._http.request(call, Connection)

    def test(self, connection_id: str) -> ConnectionTest:
        """One cheap call to the provider: ``ok``, or the kind of failure in Companion's words."""
        return self._http.request(Call("POST", _path(connection_id, "test")), ConnectionTest)

    def set_options(self, connection_id: str, options: Mapping[str, Any]) -> Connection:
        call = Call("PATCH", _path(connection_id, "options"), json={"options": dict(options)})
        return self._http.request(call, Connection)

    def choices(self, connection_id: str, option: str) -> builtins.list[dict[str, Any]]:
        """The provider's current choices for an option, e.g. the calendars to pick from."""
        return self._http.get(_path(connection_id, f"options/{segment(option)}/choices"), ChoiceList).data

    def mappings(self, connection_id: str) -> Mappings:
        """A syncing connection's field and object mappings, direction and auto sync, with the choices there are."""
        return self._http.get(_path(connection_id, "mappings"), Mappings)

    def set_mappings(
        self,
        connection_id: str,
        *,
        objects: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        direction: Direction | None = None,
        auto_sync: bool | None = None,
    ) -> Connection:
        """Change the mappings given; the others stay."""
        return self._http.request(_mappings(connection_id, objects, fields, direction, auto_sync), Connection)

    def sync(self, connection_id: str, *, full: bool = True) -> SyncRun:
        """Start a sync in the background; ``sync_logs`` shows when it ends."""
        return self._http.request(Call("POST", _path(connection_id, "sync"), json={"full": full}), SyncRun)

    def sync_logs(self, connection_id: str) -> builtins.list[SyncRun]:
        """The last 50 sync runs, newest first."""
        return self._http.get(_path(connection_id, "sync/logs"), SyncRunList).data

    def disconnect(self, connection_id: str) -> Connection:
        """Stop sync and delete the credentials; the settings and the data synced so far stay."""
        return self._http.request(Call("POST", _path(connection_id, "disconnect")), Connection)

    def delete(self, connection_id: str) -> None:
        """Remove the connection and its settings; data synced into Harmony stays."""
        self._http.send(Call("DELETE", _path(connection_id)))


class AsyncIntegrations:
    def __init__(self, http: AsyncHttp) -> None:
        self._http = http

    async def apps(self) -> builtins.list[App]:
        return (await self._http.get("/integrations/apps", AppList)).data

    async def list(self) -> builtins.list[Connection]:
        return (await self._http.get("/integrations", ConnectionList)).data

    async def get(self, connection_id: str) -> Connection:
        return await self._http.get(_path(connection_id), Connection)

    async def connect(
        self,
        app: str,
        *,
        scope: ConnectionScope | None = None,
        method: Method | None = None,
        label: str = "",
        setup: Mapping[str, Any] | None = None,
        return_to: str | None = None,
    ) -> Connection | OAuthStart:
        return _started_or_connected(await self._http.send(_connect(app, scope, method, label, setup, return_to)))

    async def reauthenticate(
        self, connection_id: str, *, setup: Mapping[str, Any] | None = None, return_to: str | None = None
    ) -> Connection | OAuthStart:
        return _started_or_connected(await self._http.send(_reauthenticate(connection_id, setup, return_to)))

    async def update_credentials(self, connection_id: str, setup: Mapping[str, Any]) -> Connection:
        call = Call("PUT", _path(connection_id, "credentials"), json={"setup": dict(setup)})
        return await self._http.request(call, Connection)

    async def test(self, connection_id: str) -> ConnectionTest:
        return await self._http.request(Call("POST", _path(connection_id, "test")), ConnectionTest)

    async def set_options(self, connection_id: str, options: Mapping[str, Any]) -> Connection:
        call = Call("PATCH", _path(connection_id, "options"), json={"options": dict(options)})
        return await self._http.request(call, Connection)

    async def choices(self, connection_id: str, option: str) -> builtins.list[dict[str, Any]]:
        return (await self._http.get(_path(connection_id, f"options/{segment(option)}/choices"), ChoiceList)).data

    async def mappings(self, connection_id: str) -> Mappings:
        return await self._http.get(_path(connection_id, "mappings"), Mappings)

    async def set_mappings(
        self,
        connection_id: str,
        *,
        objects: Mapping[str, str] | None = None,
        fields: Mapping[str, str] | None = None,
        direction: Direction | None = None,
        auto_sync: bool | None = None,
    ) -> Connection:
        return await self._http.request(_mappings(connection_id, objects, fields, direction, auto_sync), Connection)

    async def sync(self, connection_id: str, *, full: bool = True) -> SyncRun:
        return await self._http.request(Call("POST", _path(connection_id, "sync"), json={"full": full}), SyncRun)

    async def sync_logs(self, connection_id: str) -> builtins.list[SyncRun]:
        return (await self._http.get(_path(connection_id, "sync/logs"), SyncRunList)).data

    async def disconnect(self, connection_id: str) -> Connection:
        return await self._http.request(Call("POST", _path(connection_id, "disconnect")), Connection)

    async def delete(self, connection_id: str) -> None:
        await self._http.send(Call("DELETE", _path(connection_id)))
