"""The console's pages with something on each: Alice's apps connected, an action item and an e-mail waiting, a
workspace rule, and an assistant asking for her consent; and, seen by others, a rule that needs two of Bob and
Carol, a call of the admin's it holds that Bob has voted on, and its e-mailed link's page. For the phone and
accessibility tests and the pictures."""

from __future__ import annotations

from dataclasses import dataclass

import httpx2
from playwright.async_api import Page
from sqlalchemy import select

from approvals.rules import Rule
from server.services.approval_flow import decide_elsewhere
from store import approval_links
from store.directory import add_member, member_principal, user_by_email, workspace_by_slug
from store.models import Approval, Connection, Meeting, Role, User
from tests.browser.conftest import Console
from tests.browser.test_inbox import a_meeting_of, ask
from tests.browser.test_rules import admin_rule
from tests.browser.test_screenshots import connect_alices_apps
from tests.conftest import mcp_client
from tests.oauth_browser import authorize_url, pkce

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
REDIRECT = "http://127.0.0.1:33418/callback"


async def register_assistant(base_url: str, name: str, site: str) -> str:
    """An assistant registers itself, as a hosted one does on its first connection; its client id."""
    async with httpx2.AsyncClient(base_url=base_url) as http:
        registered = await http.post(
            "/register",
            json={
                "client_name": name,
                "client_uri": site,
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none",
            },
        )
    return str(registered.json()["client_id"])


@dataclass
class Pages:
    """What the pages show: one of each kind, with the ids their addresses need."""

    approval: str
    mail: str
    meeting: str
    meeting_title: str
    paths: dict[str, str]
    # Where an assistant asking for consent sends a signed-in person (it ends on the consent page).
    consent: str
    # Pages as someone else sees them: name -> (whose browser, None for one signed in as no one; the path).
    seen_by: dict[str, tuple[str | None, str]]


async def own_rule(console: Console) -> Rule:
    """A rule of Alice's own, which she may edit and delete."""
    async with console.companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        alice = await user_by_email(session, "alice@acme.test")
        actor = await member_principal(session, workspace.id, alice.id, acting_as="test")
        assert actor is not None
        rule = Rule.model_validate(
            {"effect": "allow", "scope": "user", "app": "harmony", "tool": "harmony_create_action_item",
             "description": "Action items on my meetings", "conditions": [
                 {"arg": "assignee_email", "op": "domain_in", "value": ["acme.test"]}]}
        )  # fmt: skip
        return await console.companion.rulebook.create(session, actor, rule)


TWO_OF_BOB_AND_CAROL = {
    "effect": "ask", "scope": "workspace", "app": "harmony", "tool": "harmony_create_action_item",
    "context": {"roles": ["admin"]}, "description": "An admin's action items need two of Bob and Carol",
    "approvers": {"people": ["bob@acme.test", "carol@acme.test"], "count": 2}, "no_self_approval": True,
    "escalate_after_minutes": 30, "escalate_to": "admins",
}  # fmt: skip


async def voted_on(console: Console) -> tuple[Rule, str, str]:
    """Carol joins; a rule needs two of Bob and Carol for an admin's action items; the admin's assistant asks for
    one and Bob approves it. The rule, the approval's id and Bob's e-mailed link's path."""
    companion = console.companion
    async with companion.db.transaction() as session:
        await add_member(session, await workspace_by_slug(session, "acme"), email="carol@acme.test", role=Role.MEMBER)
    rule = await admin_rule(console, **TWO_OF_BOB_AND_CAROL)
    meeting = await a_meeting_of(console, "admin@acme.test")
    async with mcp_client(console.base_url, console.keys.keys["admin@acme.test"]) as assistant:
        asked = await assistant.call_tool(
            "harmony_create_action_item", {"meeting_id": meeting, "text": "Book the offsite venue"}
        )
    approval_id = asked.structured_content["approval_id"]
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        bob = await user_by_email(session, "bob@acme.test")
        actor = await member_principal(session, workspace.id, bob.id, acting_as="test")
        approval = await session.get(Approval, approval_id)
        assert actor is not None and approval is not None
        secret = await approval_links.issue(
            session, approval_id=approval_id, user_id=bob.id, expires_at=approval.expires_at
        )
    await decide_elsewhere(
        companion.gateway.flow, companion.registry.tools, actor, approval_id, approve=True, via="web"
    )
    return rule, approval_id, f"/approvals/{approval_id}/by-link?token={secret}"


async def every_page(console: Console) -> Pages:
    """Alice's apps connected, two calls waiting, a rule, and an assistant asking for consent: each page has
    something to show."""
    await connect_alices_apps(console)
    meeting = await a_meeting_of(console, "alice@acme.test")
    rule = await admin_rule(
        console,
        effect="ask",
        scope="workspace",
        app="email",
        tool="email_send_email",
        description="Mail outside acme.test asks",
        conditions=[{"arg": "@recipients", "op": "domain_in", "value": ["client.com"]}],
    )
    own = await own_rule(console)
    waiting = await ask(console, {"meeting_id": meeting, "text": "Send Carol the pricing sheet"})
    async with mcp_client(console.base_url, console.keys.keys["alice@acme.test"]) as assistant:
        mail = await assistant.call_tool(
            "email_send_email",
            {
                "to": ["bob@client.com"],
                "cc": ["dana@client.com"],
                "bcc": ["erin@partner.io"],
                "subject": "Q3 proposal",
                "body_text": "Hi Bob,\n\nthe Q3 proposal is attached.\n\nAlice",
            },
        )
    await console.companion.audit.flush()
    async with console.companion.db.session() as session:
        alice = await session.scalar(select(User.id).where(User.email == "alice@acme.test"))
        linear = await session.scalar(
            select(Connection.id).where(Connection.app == "linear", Connection.user_id == alice)
        )
        title = await session.scalar(select(Meeting.title).where(Meeting.id == meeting))
    approval = waiting.structured_content["approval_id"]
    group_rule, group_approval, bobs_link = await voted_on(console)
    client_id = await register_assistant(console.base_url, "Claude", "https://claude.ai")
    consent = authorize_url(
        console.base_url, client_id=client_id, redirect_uri=REDIRECT, code_challenge=pkce()[1],
        code_challenge_method="S256", scope="tools api:read", resource=console.base_url,
    )  # fmt: skip
    return Pages(
        approval=approval,
        mail=mail.structured_content["approval_id"],
        meeting=meeting,
        meeting_title=str(title),
        paths={
            "inbox": "/inbox",
            "history": "/inbox/history",
            "approval": f"/approvals/{approval}",
            "edit approval": f"/approvals/{approval}/edit",
            "decide several": "/approvals/batch",
            "marketplace": "/marketplace",
            "installed": "/marketplace/installed",
            "models": "/marketplace/models",
            "app": "/marketplace/apps/linear",
            "integration": f"/integrations/{linear}",
            "rules": "/rules",
            "new rule": "/rules/new",
            "edit rule": f"/rules/{own.id}/edit",
            "delete rule": f"/rules/{own.id}/delete",
            "edit workspace rule": f"/rules/{rule.id}/edit",
            "explain": "/rules/explain",
            "audit": "/audit",
            "settings": "/settings",
            "assistants": "/assistants",
        },
        consent=consent,
        seen_by={
            "new workspace rule": ("admin@acme.test", "/rules/new"),
            "rule with approvers": ("admin@acme.test", f"/rules/{group_rule.id}/edit"),
            "workspace rules": ("admin@acme.test", "/rules?scope=workspace"),
            "card after voting": ("bob@acme.test", f"/approvals/{group_approval}"),
            "card its asker may not approve": ("admin@acme.test", f"/approvals/{group_approval}"),
            "link after voting": (None, bobs_link),
        },
    )


async def sideways(page: Page) -> int:
    return int(await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"))
