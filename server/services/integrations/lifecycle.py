"""The life of a connection: connect, test, rotate its key, change its options, disconnect, delete.

Every step checks who may do it first: a workspace connection needs an admin
or a member with the integration permission; a personal one belongs to its
user alone. Nothing here touches data at the provider.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.services.addresses import HostPolicy
from server.services.integrations.setup import SetupProblems, check_hosts, check_options, split_setup
from store.connections import ConnectionView, add_connection, open_credentials
from store.crypto import SecretBox
from store.db import Database
from store.errors import CompanionError
from store.events import record_event
from store.invalidation import Topic, announce
from store.models import Approval, Connection, ConnectionScope, ConnectionStatus, RuleRow, SyncRun
from store.principal import Principal
from store.sealing import credentials_context
from tools.context import ToolContext
from tools.errors import ToolError
from tools.manifest import Manifest
from tools.registry import Registry
from tools.tokens import TokenKeeper

log = logging.getLogger(__name__)


class IntegrationError(CompanionError):
    """A refused step of connecting, syncing or managing a connection; ``code`` says which kind (not_found,
    forbidden, conflict, invalid_request, oauth_refused...), and ``fields`` names the bad setup fields."""

    def __init__(self, code: str, message: str, *, fields: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code, details={"fields": fields} if fields else None)
        self.fields = fields or {}


def invalid_setup(problems: SetupProblems) -> IntegrationError:
    return IntegrationError("invalid_request", f"Invalid setup: {problems}", fields=problems.fields)


def _when(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def connection_json(row: Connection, manifest: Manifest | None) -> dict[str, Any]:
    """A connection as people and the API see it: never its credentials."""
    return {
        "id": row.id,
        "app": row.app,
        "app_name": manifest.name if manifest else row.app,
        "scope": row.scope.value,
        "label": row.label,
        "status": row.status.value,
        "auth_method": row.auth_method,
        "setup": row.setup or {},
        "options": row.options or {},
        "mappings": row.mappings or {},
        "has_credentials": row.credentials is not None,
        "last_error": row.last_error,
        "owner_id": row.user_id,
        "created_at": _when(row.created_at),
        "updated_at": _when(row.updated_at),
        "last_sync_at": _when(row.last_sync_at),
    }


def app_json(manifest: Manifest, *, oauth_ready: bool) -> dict[str, Any]:
    return {
        "id": manifest.id,
        "name": manifest.name,
        "description": manifest.description,
        "category": manifest.category,
        "scopes": list(manifest.scopes),
        "methods": manifest.auth.methods,
        "oauth_configured": oauth_ready if manifest.auth.type == "oauth2" else None,
        "setup_fields": [f.model_dump(exclude_none=True) for f in manifest.auth.fields],
        "options": [f.model_dump(exclude_none=True) for f in manifest.options],
        "syncs": manifest.sync.object if manifest.sync else None,
        "sync_fields": (
            {"provider_fields": manifest.sync.provider_fields, "default_mappings": manifest.sync.default_mappings}
            if manifest.sync
            else None
        ),
        "tools": [{"name": t.name, "title": t.title, "risk": t.risk.value} for t in manifest.tools],
    }


@dataclass
class Integrations:
    """Connections as a person manages them, over the API and the CLI alike."""

    db: Database
    box: SecretBox
    registry: Registry
    keeper: TokenKeeper
    http: httpx.AsyncClient
    #: Where hosts typed into setup fields may point: public addresses only, unless the deployment allows
    #: private ones (``server.services.addresses.host_policy(settings)``, the webhook address policy).
    hosts: HostPolicy = field(default_factory=HostPolicy)

    def manifest(self, app: str) -> Manifest:
        manifest = self.registry.manifests.get(app)
        if manifest is None or manifest.auto_install:
            raise IntegrationError("not_found", f"There is no app {app!r} to connect.")
        return manifest

    def available(self) -> list[dict[str, Any]]:
        return [
            app_json(m, oauth_ready=m.id in self.keeper.policy.oauth_clients)
            for m in sorted(self.registry.manifests.values(), key=lambda m: m.name)
            if not m.auto_install
        ]

    # -- reading ---------------------------------------------------------------------------------

    async def installed(self, session: AsyncSession, actor: Principal) -> list[Connection]:
        """The workspace's connections and the actor's own personal ones, disconnected ones included.

        Harmony's own data is built in, not installed, so it is not listed.
        """
        built_in = [m.id for m in self.registry.manifests.values() if m.auto_install]
        rows = await session.scalars(
            select(Connection)
            .where(
                or_(
                    (Connection.scope == ConnectionScope.WORKSPACE) & (Connection.workspace_id == actor.workspace_id),
                    (Connection.scope == ConnectionScope.PERSONAL) & (Connection.user_id == actor.user_id),
                ),
                Connection.app.not_in(built_in),
            )
            .order_by(Connection.created_at, Connection.id)
        )
        return list(rows)

    async def get(self, session: AsyncSession, actor: Principal, connection_id: str, *, manage: bool) -> Connection:
        row = await session.get(Connection, connection_id)
        visible = (
            row is not None
            and row.app in self.registry.manifests
            and (
                (row.scope is ConnectionScope.WORKSPACE and row.workspace_id == actor.workspace_id)
                or (row.scope is ConnectionScope.PERSONAL and row.user_id == actor.user_id)
            )
        )
        if row is None or not visible or self.registry.manifests[row.app].auto_install:
            raise IntegrationError("not_found", f"There is no connection {connection_id} that you can see.")
        if manage:
            self.check_may_manage(actor, row.scope)
        return row

    @staticmethod
    def check_may_manage(actor: Principal, scope: ConnectionScope) -> None:
        if scope is ConnectionScope.WORKSPACE and not actor.may_manage_workspace_integrations:
            raise IntegrationError(
                "forbidden", "Workspace integrations are managed by admins and members with the integration permission."
            )

    def context(self, actor: Principal, row: Connection) -> ToolContext:
        view = ConnectionView.of(row)
        context = ToolContext(
            principal=actor,
            connection=view,
            sessions=self.db.sessions,
            http=self.http,
            credentials=open_credentials(self.box, view),
            manifest=self.registry.manifests[row.app],
            keeper=self.keeper,
            hosts=self.hosts,
        )
        return context

    async def check_hosts(self, manifest: Manifest, method: str, plain: dict[str, Any]) -> None:
        """Refuse setup fields naming internal hosts (422 naming the field); a name that does not resolve yet passes."""
        try:
            await check_hosts(manifest, method, plain, self.hosts, unresolved_ok=True)
        except SetupProblems as exc:
            raise invalid_setup(exc) from None

    # -- connecting with typed credentials ---------------------------------------------------------

    def scope_of(self, manifest: Manifest, requested: str | None) -> ConnectionScope:
        scope = requested or manifest.scopes[0]
        if scope not in manifest.scopes:
            raise IntegrationError(
                "invalid_request",
                f"{manifest.name} connects as {' or '.join(manifest.scopes)}, not {scope}.",
                fields={"scope": f"must be one of {', '.join(manifest.scopes)}"},
            )
        return ConnectionScope(scope)

    def method_of(self, manifest: Manifest, requested: str | None) -> str:
        method = requested or manifest.auth.type
        if method not in manifest.auth.methods:
            raise IntegrationError(
                "invalid_request",
                f"{manifest.name} connects with {' or '.join(manifest.auth.methods)}.",
                fields={"method": f"must be one of {', '.join(manifest.auth.methods)}"},
            )
        return method

    async def connect(
        self,
        actor: Principal,
        app: str,
        *,
        scope: str | None,
        method: str | None,
        label: str,
        setup: dict[str, Any],
    ) -> dict[str, Any]:
        """Connect with an API key, basic or SMTP credentials; OAuth goes through ``oauth.start`` instead."""
        manifest = self.manifest(app)
        connection_scope = self.scope_of(manifest, scope)
        chosen = self.method_of(manifest, method)
        if chosen == "oauth2":
            raise IntegrationError("conflict", f"{manifest.name} connects through OAuth: start it with /oauth/start.")
        self.check_may_manage(actor, connection_scope)
        try:
            plain, secrets = split_setup(manifest, chosen, setup)
        except SetupProblems as exc:
            raise invalid_setup(exc) from None
        await self.check_hosts(manifest, chosen, plain)
        async with self.db.transaction() as session:
            row = await add_connection(
                session,
                self.box,
                app=app,
                scope=connection_scope,
                workspace_id=actor.workspace_id,
                user_id=actor.user_id,
                label=label or manifest.name,
                setup=plain,
                credentials={"method": chosen, **secrets},
            )
            row.auth_method = chosen
            row.created_by = actor.user_id
            row.mappings = self.default_mappings(manifest)
            record_event(session, "connection.created", **self._subject(row), data={"app": app, "by": actor.user_id})
            await session.flush()
            return connection_json(row, manifest)

    @staticmethod
    def default_mappings(manifest: Manifest) -> dict[str, Any]:
        if manifest.sync is None:
            return {}
        defaults: dict[str, Any] = {
            "fields": dict(manifest.sync.default_mappings),
            "direction": "bidirectional" if manifest.sync.push else "to_harmony",
            "auto_sync": False,
        }
        if manifest.sync.provider_objects:
            defaults["objects"] = {manifest.sync.object: manifest.sync.provider_objects[0]}
        return defaults

    @staticmethod
    def _subject(row: Connection) -> dict[str, Any]:
        return {"workspace_id": row.workspace_id, "user_id": row.user_id, "subject_id": row.id}

    async def update_credentials(self, actor: Principal, connection_id: str, setup: dict[str, Any]) -> dict[str, Any]:
        """Rotate an API key or password in place: settings, options and mappings stay."""
        async with self.db.session() as session:
            found = await self.get(session, actor, connection_id, manage=True)
            manifest = self.registry.manifests[found.app]
            if found.auth_method == "oauth2":
                raise IntegrationError("conflict", f"{manifest.name} uses OAuth: re-authenticate it instead.")
            try:
                typed, _ = split_setup(manifest, found.auth_method, {**found.setup, **setup}, require_secrets=True)
            except SetupProblems as exc:
                raise invalid_setup(exc) from None
        # A changed host is checked before the write, outside its transaction (resolving may take seconds).
        await self.check_hosts(manifest, found.auth_method, typed)
        async with self.db.transaction() as session:
            row = await self.get(session, actor, connection_id, manage=True)
            try:
                plain, secrets = split_setup(manifest, row.auth_method, {**row.setup, **setup}, require_secrets=True)
            except SetupProblems as exc:
                raise invalid_setup(exc) from None
            row.setup = plain
            row.credentials = self.box.seal_json(
                {"method": row.auth_method, **secrets}, context=credentials_context(row.id)
            )
            row.status = ConnectionStatus.ACTIVE
            row.last_error = None
            record_event(session, "connection.credentials_updated", **self._subject(row), data={"app": row.app})
            await session.flush()
            await announce(session, Topic.CONNECTIONS)
            return connection_json(row, manifest)

    # -- managing ------------------------------------------------------------------------------------

    async def learn_account(self, actor: Principal, connection_id: str) -> None:
        """Ask the provider who a connection acts as, and keep it for every call's summary.

        Anything but an answer clears it: after a re-authentication, an account from the old grant must
        never stand for the new one. Approvals asked as the old account then no longer run (the runner
        compares), and what "remember" allowed on this connection is forgotten: it was said of the old one.
        """
        async with self.db.session() as session:
            row = await session.get(Connection, connection_id)
        if row is None:
            return
        hook = self.registry.hooks[row.app].account
        if hook is None:
            return
        try:
            answer = str(await hook(self.context(actor, row)))
            # Only a plain line that fits is kept; a cut or mended one could name someone else.
            account: str | None = answer if answer and plain_line(answer, limit=320) == answer else None
        except Exception:
            log.warning("could not learn the account of connection %s (%s)", connection_id, row.app)
            account = None
        if account == row.account:
            return
        async with self.db.transaction() as session:
            await session.execute(update(Connection).where(Connection.id == connection_id).values(account=account))
            await announce(session, Topic.CONNECTIONS)
            if row.account is not None:
                remembered = select(Approval.remember_rule_id).where(
                    Approval.connection_id == connection_id, Approval.remember_rule_id.is_not(None)
                )
                await session.execute(delete(RuleRow).where(RuleRow.id.in_(remembered)))
                await announce(session, Topic.RULES)

    async def test(self, actor: Principal, connection_id: str) -> dict[str, Any]:
        """One cheap provider call: OK, or what kind of failure it was, in fixed words.

        Nothing the remote said reaches the answer or the connection's last error: no banner, no
        provider error text, no exception message. A server typed into a setup field could be any
        service inside the network, and an echo would let a person read it through this button.
        """
        async with self.db.session() as session:
            row = await self.get(session, actor, connection_id, manage=False)
        manifest = self.registry.manifests[row.app]
        hook = self.registry.hooks[row.app].test
        if row.status is ConnectionStatus.DISCONNECTED or row.credentials is None:
            return {"ok": False, "code": "not_connected", "message": f"{manifest.name} is disconnected."}
        if hook is None:
            return {"ok": True, "code": None, "message": f"{manifest.name} needs no connection test."}
        try:
            await check_hosts(manifest, row.auth_method, row.setup or {}, self.hosts, unresolved_ok=True)
            message = await hook(self.context(actor, row))
        except SetupProblems as exc:
            failure, code, said = "address", "address_refused", "; ".join(exc.fields.values())
        except ToolError as exc:
            failure = test_failure(exc)
            code = exc.code
            said = str(exc) if failure in OUR_OWN_WORDS else failure_message(manifest, failure)
        except Exception:
            log.exception("the connection test of %s failed inside Companion", row.app)
            failure, code, said = "unexpected", "server_error", failure_message(manifest, "unexpected")
        else:
            return {"ok": True, "code": None, "message": plain_line(str(message))}
        async with self.db.transaction() as session:
            await session.execute(update(Connection).where(Connection.id == row.id).values(last_error=said))
        return {"ok": False, "code": code, "failure": failure, "message": said}

    async def set_options(self, actor: Principal, connection_id: str, values: dict[str, Any]) -> dict[str, Any]:
        async with self.db.transaction() as session:
            row = await self.get(session, actor, connection_id, manage=True)
            manifest = self.registry.manifests[row.app]
            try:
                checked = check_options(manifest, values)
            except SetupProblems as exc:
                raise invalid_setup(exc) from None
            row.options = {**(row.options or {}), **checked}
            await session.flush()
            await announce(session, Topic.CONNECTIONS)
            return connection_json(row, manifest)

    async def choices(self, actor: Principal, connection_id: str, option: str) -> list[dict[str, Any]]:
        """The provider's current choices for an option, e.g. the calendars to pick from (Refresh list)."""
        async with self.db.session() as session:
            row = await self.get(session, actor, connection_id, manage=False)
        hook = self.registry.hooks[row.app].choices.get(option)
        if hook is None:
            raise IntegrationError("not_found", f"{row.app} has no option {option!r} with choices.")
        try:
            return await hook(self.context(actor, row))
        except ToolError as exc:
            # Like Test connection: the kind of failure in fixed words, never the provider's own text.
            failure = test_failure(exc)
            manifest = self.registry.manifests[row.app]
            said = str(exc) if failure in OUR_OWN_WORDS else failure_message(manifest, failure)
            raise IntegrationError("provider_unreachable", said) from None

    async def set_mappings(self, actor: Principal, connection_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Object and field mappings (Harmony -> provider), sync direction and auto sync."""
        async with self.db.transaction() as session:
            row = await self.get(session, actor, connection_id, manage=True)
            manifest = self.registry.manifests[row.app]
            if manifest.sync is None:
                raise IntegrationError("conflict", f"{manifest.name} does not sync, so it has no mappings.")
            current = {**self.default_mappings(manifest), **(row.mappings or {})}
            problems: dict[str, str] = {}
            if "fields" in changes:
                for harmony_field, provider_field in changes["fields"].items():
                    if provider_field not in manifest.sync.provider_fields:
                        problems[f"fields.{harmony_field}"] = (
                            f"{provider_field!r} is not a {manifest.name} field; "
                            f"choose from {', '.join(manifest.sync.provider_fields)}"
                        )
                    if harmony_field not in HARMONY_FIELDS[manifest.sync.object]:
                        problems[f"fields.{harmony_field}"] = (
                            f"not a Harmony {manifest.sync.object} field; "
                            f"choose from {', '.join(HARMONY_FIELDS[manifest.sync.object])}"
                        )
                current["fields"] = dict(changes["fields"])
            if "objects" in changes:
                for harmony_object, provider_object in changes["objects"].items():
                    if harmony_object != manifest.sync.object:
                        problems[f"objects.{harmony_object}"] = f"{manifest.name} syncs {manifest.sync.object} only"
                    elif provider_object not in manifest.sync.provider_objects:
                        choices = ", ".join(manifest.sync.provider_objects) or "none to choose from"
                        problems[f"objects.{harmony_object}"] = f"{provider_object!r} is not one of {choices}"
                current["objects"] = dict(changes["objects"])
            if "direction" in changes:
                if changes["direction"] in ("bidirectional", "to_provider") and manifest.sync.push is None:
                    problems["direction"] = f"{manifest.name} syncs one way, into Harmony"
                current["direction"] = changes["direction"]
            if "auto_sync" in changes:
                current["auto_sync"] = bool(changes["auto_sync"])
            if problems:
                raise IntegrationError("invalid_request", "Invalid mappings", fields=problems)
            row.mappings = current
            await session.flush()
            await announce(session, Topic.CONNECTIONS)
            return connection_json(row, manifest)

    async def disconnect(self, actor: Principal, connection_id: str) -> dict[str, Any]:
        """Stop sync and delete the credentials; keep settings, mappings and the data synced so far."""
        async with self.db.transaction() as session:
            row = await self.get(session, actor, connection_id, manage=True)
            row.status = ConnectionStatus.DISCONNECTED
            row.credentials = None
            row.refresh_lease_until = None
            row.refresh_lease_owner = None
            row.mappings = {**(row.mappings or {}), "auto_sync": False} if row.mappings else {}
            record_event(session, "connection.disconnected", **self._subject(row), data={"app": row.app})
            await session.flush()
            await announce(session, Topic.CONNECTIONS)
            return connection_json(row, self.registry.manifests.get(row.app))

    async def delete(self, actor: Principal, connection_id: str) -> None:
        """Remove the connection and its configuration too; data synced into Harmony stays."""
        async with self.db.transaction() as session:
            row = await self.get(session, actor, connection_id, manage=True)
            record_event(session, "connection.deleted", **self._subject(row), data={"app": row.app})
            await session.execute(delete(SyncRun).where(SyncRun.connection_id == row.id))
            await session.delete(row)
            await announce(session, Topic.CONNECTIONS)

    async def sync_logs(self, actor: Principal, connection_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        async with self.db.session() as session:
            await self.get(session, actor, connection_id, manage=False)
            runs = await session.scalars(
                select(SyncRun)
                .where(SyncRun.connection_id == connection_id)
                .order_by(SyncRun.started_at.desc(), SyncRun.id.desc())
                .limit(limit)
            )
            return [run_json(run) for run in runs]


#: What Test connection says for each kind of failure: fixed words, never the remote's.
TEST_FAILURES: dict[str, str] = {
    "connect": "Companion could not connect to {who}. Check the server's address and port, and that it is running.",
    "timeout": "{who} did not answer in time. Try again in a moment; if it keeps happening, check the address.",
    "tls": (
        "A secure (TLS) connection to {who} could not be set up. Check that the security setting suits the port "
        "(tls for 465, starttls for 587) and that the server's certificate is valid."
    ),
    "credentials": (
        "{who} no longer accepts these credentials. Check them and reconnect "
        "(Marketplace > Installed > Re-authenticate)."
    ),
    "refused": "{who} accepted the connection but refused the test request. Check the account's permissions.",
    "rate_limited": "{who} is limiting requests right now. Try again in a minute.",
    "unsupported": "{who} does not support this connection's settings. Check the security setting and the port.",
    "unexpected": "{who} did not answer the test as expected. Check the connection's settings, or try again later.",
}
#: Failure kinds whose message is Companion's own (a missing setting, a refused address), so it is shown.
OUR_OWN_WORDS = frozenset({"settings", "address"})
_BY_CODE = {
    "needs_reauth": "credentials",
    "provider_timeout": "timeout",
    "provider_unavailable": "connect",
    "rate_limited": "rate_limited",
    "forbidden": "refused",
    "not_found": "refused",
    "invalid_request": "refused",
    "not_configured": "settings",
    "not_connected": "settings",
    "address_refused": "address",
}


def test_failure(exc: ToolError) -> str:
    """The kind of a failed connection test: the adapter's own mark where it made one, else by error code."""
    marked = getattr(exc, "failure", None)
    if isinstance(marked, str) and (marked in TEST_FAILURES or marked in OUR_OWN_WORDS):
        return marked
    return _BY_CODE.get(exc.code, "unexpected")


def failure_message(manifest: Manifest, failure: str) -> str:
    who = "The mail server" if manifest.auth.type == "smtp" else manifest.name
    text = TEST_FAILURES.get(failure, TEST_FAILURES["unexpected"]).format(who=who)
    return text[0].upper() + text[1:]


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def plain_line(text: str, limit: int = 200) -> str:
    """A success message as one short line: an account name from a provider cannot add lines or pages."""
    line = _CONTROL.sub(" ", text).strip()
    return line if len(line) <= limit else line[: limit - 1] + "…"


HARMONY_FIELDS: dict[str, tuple[str, ...]] = {
    "contacts": ("name", "email", "company", "title", "phone"),
    "events": ("title", "date", "end", "attendees"),
    "users": ("name", "email"),
}


def run_json(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "connection_id": run.connection_id,
        "full": run.full,
        "status": run.status,
        "triggered_by": run.triggered_by,
        "started_at": _when(run.started_at),
        "finished_at": _when(run.finished_at),
        "counts": run.counts or {},
        "errors": run.errors or [],
    }
