"""Issue 18, class 8 ("Edges"), played as the adversary: an assistant holding an agent key, and a curious admin.

- The SMTP host of the E-mail app follows the webhook address policy, when the connection is saved and
  again each time it is opened (DNS rebinding), and the session runs to the address that was checked.
- Test connection never repeats what the remote said: no banner, no reply text, no exception message.
- An agent key cannot upload or change anything over REST; it still reads, and still calls tools over MCP.
- Simulate decides other people's calls without their arguments; explain checks arguments before any rule.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from server.api.router import AGENT_WRITE_REFUSED
from server.app import Companion
from server.services.addresses import HostPolicy
from store.models import AuditEntry, Connection, Meeting, WebhookEndpoint
from tests.conftest import mcp_client
from tests.console import form_post

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
USERNAME = "alice@acme.test"
PASSWORD = "app-password"
SECRET = "SECRET-7f3a"  # what an internal service says; it must never come back to the person


def rest(app_client: Any, key: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=app_client.transport, base_url=f"{BASE}/api/v1", headers={"Authorization": f"Bearer {key}"}
    )


def resolving(table: dict[str, list[str]]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver that answers from ``table`` (changeable while a test runs) and knows no other name."""

    async def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return list(table[host])
        try:
            import ipaddress

            return [str(ipaddress.ip_address(host))]
        except ValueError:
            raise OSError(f"{host} does not resolve") from None

    return resolve


def mail_setup(host: str, port: int = 587, security: str = "none") -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "security": security,
        "verify_tls": False,
        "username": USERNAME,
        "password": PASSWORD,
        "from_address": USERNAME,
    }


async def connect_mail(client: httpx2.AsyncClient, host: str, **setup: Any) -> httpx2.Response:
    return await client.post(
        "/integrations/apps/email/connect",
        json={"scope": "personal", "method": "smtp", "label": "Work mail", "setup": {**mail_setup(host), **setup}},
    )


async def mail_connections(companion: Companion) -> int:
    async with companion.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Connection).where(Connection.app == "email")))


# -- a scripted SMTP-speaking service on 127.0.0.1 --------------------------------------------------------------


@dataclass
class Service:
    """Whatever listens on the port: a mail server, or some internal service that says too much."""

    greeting: bytes | None = b"220 mail.internal ESMTP " + SECRET.encode() + b"\r\n"
    ehlo: bytes = b"250-mail.internal " + SECRET.encode() + b"\r\n250 AUTH PLAIN LOGIN\r\n"
    auth: bytes = b"235 2.7.0 Authentication successful\r\n"
    connections: int = 0
    port: int = 0
    said: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.greeting is None:
                await reader.read()  # never greets
                return
            writer.write(self.greeting)
            await writer.drain()
            while line := await reader.readline():
                self.said.append(line)
                verb = line.split(b" ", 1)[0].strip().upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(self.ehlo)
                elif verb == b"AUTH":
                    writer.write(self.auth)
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 Bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"502 5.5.2 " + SECRET.encode() + b"\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def listening(service: Service) -> AsyncIterator[Service]:
    server = await asyncio.start_server(service.handle, "127.0.0.1", 0)
    service.port = server.sockets[0].getsockname()[1]
    async with server:
        yield service


@pytest.fixture
async def alice_api(app_client: Any, demo_keys: Any) -> AsyncIterator[httpx2.AsyncClient]:
    async with rest(app_client, demo_keys.user_keys["alice@acme.test"]) as client:
        yield client


# -- 1. the SMTP host follows the webhook address policy ---------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("10.0.0.1", "private"),
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("mail.inside.test", "loopback"),  # a name that resolves to 127.0.0.1
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("fd12:3456::1", "private"),  # IPv6 unique local
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("split.inside.test", "private"),  # one public address and one private: refused
    ],
)
async def test_an_smtp_host_on_an_internal_address_is_refused_naming_the_field(companion, alice_api, host, reason):
    companion.integrations.hosts = HostPolicy(
        resolver=resolving(
            {
                "localhost": ["127.0.0.1"],
                "mail.inside.test": ["127.0.0.1"],
                "split.inside.test": ["8.8.8.8", "10.1.1.1"],
            }
        )
    )
    answer = await connect_mail(alice_api, host)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    problem = error["details"]["fields"]["setup.host"]
    assert problem.startswith("SMTP server: the host ") and f"resolves to a {reason} address" in problem
    assert "public addresses" in problem and "setup.host" in error["message"]
    assert PASSWORD not in answer.text
    assert await mail_connections(companion) == 0


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "2130706433", "0x7f.0.0.1", "127.1", "[::ffff:10.0.0.1]"])
async def test_other_spellings_of_an_internal_address_are_refused_by_the_system_resolver(companion, alice_api, host):
    """The check is on what the name resolves to, so no spelling of 127.0.0.1 gets past it."""
    answer = await connect_mail(alice_api, host)
    assert answer.status_code == 422, answer.text
    assert "address; Companion connects only to servers on public addresses" in answer.text
    assert await mail_connections(companion) == 0


async def test_an_smtp_host_that_is_not_a_host_name_is_refused(companion, alice_api):
    for typed in ("smtp.example.com:25", "smtp://smtp.example.com", "alice@smtp.example.com", "a b"):
        answer = await connect_mail(alice_api, typed)
        assert answer.status_code == 422, typed
        assert "no scheme, port, path or user" in answer.json()["error"]["details"]["fields"]["setup.host"]
    assert await mail_connections(companion) == 0


async def test_a_public_host_or_one_that_does_not_resolve_yet_is_saved(companion, alice_api):
    companion.integrations.hosts = HostPolicy(resolver=resolving({"smtp.public.test": ["93.184.216.34"]}))
    assert (await connect_mail(alice_api, "smtp.public.test")).status_code == 201
    # Not resolving now points nowhere: it is saved, and checked again each time the connection is opened.
    assert (await connect_mail(alice_api, "smtp.nowhere.test")).status_code == 201


async def test_changing_the_host_later_is_held_to_the_same_policy(companion, alice_api):
    companion.integrations.hosts = HostPolicy(resolver=resolving({"smtp.public.test": ["93.184.216.34"]}))
    created = (await connect_mail(alice_api, "smtp.public.test")).json()
    changed = await alice_api.put(
        f"/integrations/{created['id']}/credentials", json={"setup": {"host": "10.0.0.1", "password": "new"}}
    )
    assert (
        changed.status_code == 422 and "private address" in changed.json()["error"]["details"]["fields"]["setup.host"]
    )
    async with companion.db.session() as session:
        row = await session.get(Connection, created["id"])
    assert row.setup["host"] == "smtp.public.test"


async def test_the_console_refuses_an_internal_smtp_host_beside_the_field(companion, alice):
    typed = {f"setup.{name}": str(value) for name, value in mail_setup("10.0.0.1").items()}
    typed.update({"method": "smtp", "scope": "personal", "setup.verify_tls": "false"})
    refused = await form_post(alice, "/marketplace/apps/email", "/marketplace/apps/email/connect", typed)
    assert refused.status_code == 422
    assert "resolves to a private address" in html.unescape(refused.text)
    assert PASSWORD not in refused.text
    assert await mail_connections(companion) == 0


async def test_a_name_that_turns_internal_after_saving_is_refused_when_opened(companion, alice_api):
    """DNS rebinding: public when saved, 127.0.0.1 when Test connection opens it. Nothing connects."""
    table = {"mail.rebind.test": ["93.184.216.34"]}
    companion.integrations.hosts = HostPolicy(resolver=resolving(table))
    async with listening(Service()) as service:
        created = await connect_mail(alice_api, "mail.rebind.test", port=service.port)
        assert created.status_code == 201, created.text
        table["mail.rebind.test"] = ["127.0.0.1"]
        tested = (await alice_api.post(f"/integrations/{created.json()['id']}/test")).json()
    assert tested["ok"] is False and tested["code"] == "address_refused"
    assert "resolves to a loopback address" in tested["message"]
    assert service.connections == 0


async def test_the_session_runs_to_the_address_that_was_checked(companion, alice_api):
    """With private addresses allowed (development), a name the system cannot resolve still reaches the
    address the policy returned: the adapter connects to the checked address, not to the name again."""
    table: dict[str, list[str]] = {}
    companion.integrations.hosts = HostPolicy(allow_private=True, resolver=resolving(table))
    async with listening(Service()) as service:
        table["mail.pinned.test"] = ["127.0.0.1"]
        created = (await connect_mail(alice_api, "mail.pinned.test", port=service.port)).json()
        tested = (await alice_api.post(f"/integrations/{created['id']}/test")).json()
    assert tested == {"ok": True, "code": None, "message": f"Connected to mail.pinned.test as {USERNAME}"}
    assert service.connections == 1 and any(line.startswith(b"AUTH") for line in service.said)


# -- 2. Test connection never echoes what the remote said --------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "security", "failure"),
    [
        (Service(greeting=b"554 5.3.2 " + SECRET.encode() + b" go away\r\n"), "none", "connect"),
        (Service(greeting=b"+OK redis " + SECRET.encode() + b" ready\r\n"), "none", None),
        (Service(auth=b"535 5.7.8 " + SECRET.encode() + b" bad credentials\r\n"), "none", "credentials"),
        (Service(), "starttls", "unsupported"),  # no STARTTLS offered; the reply lists SECRET in EHLO
        (Service(), "tls", "tls"),  # TLS from the first byte against a plain service
        (Service(greeting=None), "none", "timeout"),
    ],
)
@pytest.mark.settings(provider_timeout_seconds=0.5)
async def test_a_failed_connection_test_says_what_kind_of_failure_in_fixed_words(
    companion, alice_api, service, security, failure
):
    companion.integrations.hosts = HostPolicy(allow_private=True)
    async with listening(service):
        created = (await connect_mail(alice_api, "127.0.0.1", port=service.port, security=security)).json()
        tested = (await alice_api.post(f"/integrations/{created['id']}/test")).json()
    assert tested["ok"] is False
    if failure is not None:
        assert tested["failure"] == failure
    assert tested["message"].startswith(("The mail server", "Companion could not connect", "A secure (TLS)"))
    shown = (await alice_api.get(f"/integrations/{created['id']}")).json()
    for text in (tested["message"], str(tested), str(shown["last_error"])):
        assert SECRET not in text and "redis" not in text and "554" not in text and "535" not in text
    assert shown["last_error"] == tested["message"]


async def test_a_provider_error_is_not_repeated_by_any_apps_test(companion, alice_api, monkeypatch):
    """Every app's test goes through the same place: a provider's own error text stays out of the answer."""
    from tools.errors import ToolError

    created: list[str] = []
    for code in ("needs_reauth", "provider_unavailable", "provider_timeout", "invalid_request", "provider_error"):

        async def failing(ctx: Any, code: str = code) -> str:
            raise ToolError(f"Linear said: {SECRET} (internal detail)", code=code)

        monkeypatch.setitem(
            companion.registry.hooks, "linear", replace(companion.registry.hooks["linear"], test=failing)
        )
        if not created:
            connected = await alice_api.post(
                "/integrations/apps/linear/connect",
                json={"scope": "personal", "method": "api_key", "setup": {"api_key": "lin_api_key"}},
            )
            assert connected.status_code == 201, connected.text
            created.append(connected.json()["id"])
        tested = (await alice_api.post(f"/integrations/{created[0]}/test")).json()
        assert tested["ok"] is False and tested["code"] == code
        assert SECRET not in str(tested) and "internal detail" not in tested["message"]
        assert "Linear" in tested["message"]


# -- 3. agent keys cannot write over REST ----------------------------------------------------------------------


@pytest.mark.settings(webhooks_allow_private=True)
async def test_an_agent_key_cannot_upload_or_change_anything_over_rest(companion, app_client, demo_keys):
    async with rest(app_client, demo_keys.user_keys["admin@acme.test"]) as admin:
        hook = (
            await admin.post("/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["meeting.processed"]})
        ).json()
        rule = (await admin.post("/rules", json={"effect": "ask", "scope": "workspace", "tool": "harmony_*"})).json()
    audio = {"file": ("call.mp3", b"ID3" + bytes(256), "audio/mpeg"), "transcript": ("t.vtt", b"WEBVTT\n", "text/vtt")}
    attempts = [
        ("POST", "/meetings/upload", {"files": audio, "data": {"title": "Injected", "date": "2026-02-01T10:00:00Z"}}),
        (
            "POST",
            "/meetings/upload",
            {"files": {"file": ("t.vtt", b"WEBVTT\n\n00:00.000 --> 00:01.000\nHi\n", "text/vtt")}},
        ),
        ("POST", "/webhooks", {"json": {"url": "http://127.0.0.1:9/x", "events": ["meeting.processed"]}}),
        ("PATCH", f"/webhooks/{hook['id']}", {"json": {"url": "http://127.0.0.1:9/exfiltrate"}}),
        ("DELETE", f"/webhooks/{hook['id']}", {}),
        ("POST", f"/webhooks/{hook['id']}/rotate-secret", {}),
        ("POST", "/keys", {"json": {"name": "mine now", "kind": "user"}}),
        ("POST", "/rules", {"json": {"effect": "allow", "scope": "user", "tool": "*"}}),
        ("PATCH", f"/rules/{rule['id']}", {"json": {"effect": "allow"}}),
        ("DELETE", f"/rules/{rule['id']}", {}),
        ("POST", "/integrations/apps/linear/connect", {"json": {"method": "api_key", "setup": {"api_key": "k"}}}),
        ("PATCH", "/workspace/in-chat-policy", {"json": {}}),
    ]
    for who in ("alice@acme.test", "admin@acme.test"):
        async with rest(app_client, demo_keys.keys[who]) as agent:
            for method, path, kwargs in attempts:
                answer = await agent.request(method, path, **kwargs)
                assert answer.status_code == 403, (who, method, path, answer.text)
                error = answer.json()["error"]
                assert error["code"] == "forbidden" and set(error) == {"code", "message", "details"}
                assert "agent key" in error["message"].lower() or "Agent key" in error["message"]
            # Reads stay open to agent keys, as documented.
            assert (await agent.get("/meetings")).status_code == 200
            assert (await agent.get("/contacts")).status_code == 200
    async with companion.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Meeting).where(Meeting.title == "Injected")) == 0
        endpoint = await session.get(WebhookEndpoint, hook["id"])
    assert endpoint is not None and endpoint.url == "http://127.0.0.1:9/hook"
    recordings = companion.settings.data_dir / "recordings"
    assert not recordings.exists() or not any(p.is_file() for p in recordings.rglob("*"))
    async with rest(app_client, demo_keys.user_keys["admin@acme.test"]) as admin:
        assert (await admin.get(f"/rules/{rule['id']}")).json()["effect"] == "ask"


async def test_the_upload_refusal_says_what_to_use_instead(app_client, demo_keys):
    async with rest(app_client, demo_keys.keys["alice@acme.test"]) as agent:
        answer = await agent.post("/meetings/upload", files={"file": ("call.mp3", b"ID3", "audio/mpeg")})
    assert answer.json() == {"error": {"code": "forbidden", "message": AGENT_WRITE_REFUSED, "details": {}}}
    assert "user key" in AGENT_WRITE_REFUSED and "MCP" in AGENT_WRITE_REFUSED


async def test_the_openapi_document_lists_the_403_on_every_write(app_client, demo_keys):
    async with rest(app_client, demo_keys.keys["alice@acme.test"]) as agent:
        document = (await agent.get("/openapi.json")).json()
    writes = [
        (path, method, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
        if method in ("post", "put", "patch", "delete")
    ]
    assert writes
    for path, method, operation in writes:
        assert "403" in operation["responses"], (method, path)


async def test_an_agent_key_still_calls_tools_over_mcp(app_client, demo_keys):
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=app_client.transport) as client:
        listed = await client.call_tool("harmony_list_meetings", {"limit": 1})
    assert not listed.is_error


# -- 4. rule what-ifs --------------------------------------------------------------------------------------------


MAIL_BODY = "Your PIN is 4711"
VTT = b"WEBVTT\n\n00:00.000 --> 00:01.000\nHi\n"


async def record_calls(app_client: Any, demo_keys: Any, companion: Companion, who: str, texts: list[str]) -> None:
    async with mcp_client(BASE, demo_keys.keys[who], transport=app_client.transport) as client:
        for text in texts:
            await client.call_tool("harmony_create_action_item", {"meeting_id": "mtg_missing", "text": text})
    await companion.audit.flush()


def guess(pattern: str, scope: str = "workspace") -> dict[str, Any]:
    rule = {
        "effect": "allow",
        "scope": scope,
        "tool": "harmony_create_action_item",
        "conditions": [{"arg": "text", "op": "matches", "value": pattern}],
    }
    return {"changes": {"add": [rule]}}


def outcome(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report[k] for k in ("replayed", "changed", "withheld", "counts", "calls")}


async def test_an_admin_cannot_read_a_members_arguments_by_simulating(app_client, demo_keys, companion):
    await record_calls(app_client, demo_keys, companion, "alice@acme.test", [MAIL_BODY, "Call Bob"])
    async with rest(app_client, demo_keys.user_keys["admin@acme.test"]) as admin:
        answers = [
            (await admin.post("/rules/simulate", json=guess(pattern))).json()
            for pattern in ("Your PIN is 4.*", "Your PIN is 5.*", ".*", "Call.*", "nothing")
        ]
    assert all(outcome(answer) == outcome(answers[0]) for answer in answers)
    assert answers[0]["withheld"] == 2 and answers[0]["changed"] == 0 and answers[0]["calls"] == []
    assert MAIL_BODY not in str(answers)


async def test_the_viewer_own_calls_are_replayed_on_their_arguments(app_client, demo_keys, companion):
    await record_calls(app_client, demo_keys, companion, "alice@acme.test", [MAIL_BODY, "Call Bob"])
    await record_calls(app_client, demo_keys, companion, "admin@acme.test", ["Your PIN is 4000"])
    async with rest(app_client, demo_keys.user_keys["admin@acme.test"]) as admin:
        mine = (await admin.post("/rules/simulate", json=guess("Your PIN is 4.*"))).json()
    assert mine["changed"] == 1 and mine["withheld"] == 2
    assert {call["user_id"] for call in mine["calls"]} == {await user_id(companion, "admin@acme.test")}
    async with rest(app_client, demo_keys.user_keys["alice@acme.test"]) as alice:
        hers = (await alice.post("/rules/simulate", json=guess("Your PIN is 4.*", scope="user"))).json()
    assert hers["changed"] == 1 and hers["withheld"] == 0 and hers["replayed"] == 2


async def test_others_calls_are_still_replayed_on_what_is_not_an_argument(app_client, demo_keys, companion):
    await record_calls(app_client, demo_keys, companion, "alice@acme.test", [MAIL_BODY])
    widen = {"effect": "allow", "scope": "workspace", "tool": "harmony_create_action_item"}
    async with rest(app_client, demo_keys.user_keys["admin@acme.test"]) as admin:
        report = (await admin.post("/rules/simulate", json={"changes": {"add": [widen]}})).json()
    assert report["withheld"] == 0 and report["changed"] == 1 and report["counts"] == {"ask->allow": 1}


async def test_the_console_simulation_reveals_nothing_of_a_members_arguments(admin, app_client, demo_keys, companion):
    await record_calls(app_client, demo_keys, companion, "alice@acme.test", [MAIL_BODY, "Call Bob"])

    async def simulated(pattern: str) -> str:
        form = {
            "effect": "allow",
            "scope": "workspace",
            "app": "harmony",
            "tool": "harmony_create_action_item",
            "conditions.0.arg": "text",
            "conditions.0.op": "matches",
            "conditions.0.value": pattern,
            "action": "simulate",
        }
        page = await form_post(admin, "/rules/new", "/rules/new", form)
        assert page.status_code == 200, page.text
        section = re.search(r'<section class="card stack simulation".*?</section>', page.text, re.S)
        assert section is not None
        return section.group(0)

    right, wrong = await simulated("Your PIN is 4.*"), await simulated("Your PIN is 5.*")
    assert right == wrong
    assert "Alice Archer" not in right
    async with companion.db.session() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEntry)) >= 2


async def user_id(companion: Companion, email: str) -> str:
    from store.directory import user_by_email

    async with companion.db.session() as session:
        return (await user_by_email(session, email)).id


LONE_SURROGATE = "<lone surrogate>"


@pytest.mark.parametrize(
    ("tool", "arguments", "field_named"),
    [
        ("harmony_create_action_item", {"meeting_id": "m1", "text": 5}, "arguments.text"),
        ("harmony_create_action_item", {"meeting_id": "m1", "text": "x", "nope": 1}, "arguments.nope"),
        ("harmony_create_action_item", {"meeting_id": "m1", "text": LONE_SURROGATE}, "arguments.text"),
        ("email_send_email", {"to": ["not an address"], "subject": "Hi"}, "arguments.to.0"),
        ("email_send_email", {"to": "bob@partner.test", "subject": "Hi"}, "arguments.to"),
        ("email_send_email", {"to": ["bob@partner.test"], "subject": "Hi\nBcc: eve@evil.test"}, "arguments.subject"),
    ],
)
async def test_explain_refuses_arguments_the_tool_would_refuse_before_any_rule(
    app_client, demo_keys, companion, monkeypatch, tool, arguments, field_named
):
    reached: list[Any] = []
    original = companion.rulebook.index_for

    async def watched(workspace_id: str) -> Any:
        reached.append(workspace_id)
        return await original(workspace_id)

    monkeypatch.setattr(companion.rulebook, "index_for", watched)
    async with rest(app_client, demo_keys.user_keys["admin@acme.test"]) as admin:
        # Sent as the JSON text itself, so a lone surrogate travels as its escape (\\ud800), as an attacker sends it.
        body = json.dumps({"tool": tool, "arguments": arguments}).replace(json.dumps(LONE_SURROGATE), '"\\ud800"')
        answer = await admin.post("/rules/explain", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_arguments" and field_named in error["details"]["fields"]
    assert reached == []


async def test_explain_with_valid_arguments_still_answers(app_client, demo_keys):
    async with rest(app_client, demo_keys.user_keys["alice@acme.test"]) as alice:
        partial = await alice.post(
            "/rules/explain", json={"tool": "harmony_create_action_item", "arguments": {"text": "x"}}
        )
        empty = await alice.post("/rules/explain", json={"tool": "email_send_email", "arguments": {}})
    assert partial.status_code == 200 and partial.json()["effect"] == "ask"
    assert empty.status_code == 200


async def test_the_console_explain_names_the_bad_argument(admin):
    tool = "harmony_create_action_item"
    extra = await admin.get(f"/rules/explain?tool={tool}&go=1&json=%7B%22nope%22%3A1%7D")
    assert extra.status_code == 422 and "nope" in html.unescape(extra.text)
    mail = await admin.get("/rules/explain?tool=email_send_email&go=1&arg.to=not-an-address&arg.subject=Hi")
    assert mail.status_code == 422
    assert re.search(r'id="f-arg-to-error">[^<]*to\.0', mail.text), mail.text[:200]
