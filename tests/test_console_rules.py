"""The Rules pages: make a rule by picking, read it in plain words, try it on last week's calls, explain a decision.

Members manage only their own rules; a workspace rule's pages and forms answer them 403.
"""

from __future__ import annotations

import html
import re

import httpx2
import pytest
from sqlalchemy import func, select

from approvals.rules import Rule
from store.directory import member_principal
from store.models import Membership, RuleRow, User
from tests.conftest import mcp_client
from tests.console import csrf_of, form_post

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
CREATE_ITEM = "harmony_create_action_item"
MAIL_TO_CLIENTS = {
    "effect": "allow",
    "scope": "workspace",
    "app": "harmony",
    "tool": CREATE_ITEM,
    "conditions.0.arg": "assignee_email",
    "conditions.0.op": "domain_in",
    "conditions.0.value": "client.com, @Partner.io",
    "cap.max": "20",
    "cap.per_seconds": "86400",
    "description": "Items for our clients need no approval",
}


def words(page: str) -> str:
    """The page as a person reads it: no tags, entities decoded, spaces collapsed."""
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))
    return re.sub(r" ([.,:;])", r"\1", text)


def options(page: str, select_name: str) -> list[str]:
    match = re.search(rf'<select[^>]*name="{re.escape(select_name)}"[^>]*>(.*?)</select>', page, re.S)
    assert match, f"no select {select_name}"
    return re.findall(r'<option value="([^"]*)"', match.group(1))


def error_beside(page: str, field: str) -> str:
    match = re.search(rf'id="f-{re.escape(field.replace(".", "-"))}-error">([^<]*)<', page)
    return match.group(1) if match else ""


async def rule_count(companion) -> int:
    async with companion.db.session() as session:
        return await session.scalar(select(func.count()).select_from(RuleRow))


async def saved_rules(companion) -> list[Rule]:
    async with companion.db.session() as session:
        workspace_id = await session.scalar(select(RuleRow.workspace_id).limit(1))
        return await companion.rulebook.rules_of(session, workspace_id)


async def only_rule(companion) -> Rule:
    (rule,) = await saved_rules(companion)
    return rule


async def principal_of(companion, email: str):
    async with companion.db.session() as session:
        user_id = await session.scalar(select(User.id).where(User.email == email))
        workspace_id = await session.scalar(select(Membership.workspace_id).where(Membership.user_id == user_id))
        return await member_principal(session, workspace_id, user_id, acting_as="test")


async def create(companion, email: str, **rule) -> Rule:
    async with companion.db.transaction() as session:
        return await companion.rulebook.create(session, await principal_of(companion, email), Rule(**rule))


async def test_a_rule_made_by_picking_is_listed_in_plain_words(admin, companion):
    saved = await form_post(admin, "/rules/new", "/rules/new", {**MAIL_TO_CLIENTS, "action": "save"})
    assert saved.status_code == 303 and saved.headers["location"].startswith("/rules#rule-")
    rule = await only_rule(companion)
    assert [c.model_dump() for c in rule.conditions] == [
        {"arg": "assignee_email", "op": "domain_in", "value": ["client.com", "partner.io"]}
    ]
    assert (rule.cap.max, rule.cap.per_seconds) == (20, 86400)
    listed = words((await admin.get("/rules")).text)
    assert "Rule created." in listed
    assert "Allow Create an action item harmony_create_action_item" in listed
    assert "when assignee_email is only at domains client.com, partner.io" in listed
    assert "at most 20 a day per person, then ask" in listed
    assert "Workspace set by Ada Admin · admin@acme.test" in listed
    assert "Enforced" in listed


async def test_the_form_offers_only_the_tools_arguments_and_the_operators_that_fit_them(admin):
    page = await admin.get(f"/rules/new?app=harmony&tool={CREATE_ITEM}")
    assert "harmony_list_meetings" in options(page.text, "tool")  # the app's other tools
    assert "gmail_send_email" not in options(page.text, "tool")
    choose = {"effect": "allow", "scope": "workspace", "app": "harmony", "tool": CREATE_ITEM}
    added = await form_post(admin, "/rules/new", "/rules/new", {**choose, "action": "add-condition"})
    assert options(added.text, "conditions.0.arg") == ["", "meeting_id", "text", "assignee_email", "due_date"]
    email = await admin.post(
        "/rules/new",
        data={**choose, "csrf": csrf_of(added.text), "conditions.0.arg": "assignee_email", "action": "refresh"},
        headers={"HX-Request": "true"},
    )
    assert email.status_code == 200 and "<html" not in email.text  # htmx gets the form alone
    assert options(email.text, "conditions.0.op")[0] == "domain_in"
    assert "lte" not in options(email.text, "conditions.0.op")
    number = await admin.post(
        "/rules/new",
        data={
            **choose,
            "tool": "harmony_list_meetings",
            "csrf": csrf_of(added.text),
            "conditions.0.arg": "limit",
            "conditions.0.op": "domain_in",  # left over from the argument before: replaced by one that fits
            "action": "refresh",
        },
    )
    assert options(number.text, "conditions.0.op") == [
        "lte", "lt", "gte", "gt", "eq", "ne", "in", "not_in", "exists", "missing"
    ]  # fmt: skip
    assert 'value="lte" selected' in number.text


async def test_changing_the_app_drops_a_tool_of_the_other_app(admin):
    page = await form_post(
        admin, "/rules/new", "/rules/new", {"effect": "ask", "app": "gmail", "tool": CREATE_ITEM, "action": "refresh"}
    )
    assert re.search(r'<option value="\*" selected>Every tool of Gmail</option>', page.text)


async def test_a_bad_value_shows_beside_its_field_and_nothing_is_saved(admin, companion):
    bad_pattern = {**MAIL_TO_CLIENTS, "conditions.0.arg": "text", "conditions.0.op": "matches"}
    refused = await form_post(admin, "/rules/new", "/rules/new", {**bad_pattern, "conditions.0.value": "(oops"})
    assert refused.status_code == 422
    assert error_beside(refused.text, "conditions.0.value").startswith("invalid regular expression")
    assert "The rule was not saved." in refused.text
    assert 'value="(oops"' in refused.text  # kept as typed
    not_a_number = {**MAIL_TO_CLIENTS, "cap.max": "twenty"}
    refused = await form_post(admin, "/rules/new", "/rules/new", not_a_number)
    assert refused.status_code == 422 and error_beside(refused.text, "cap.max") == "enter a whole number of calls"
    deny_with_cap = {**MAIL_TO_CLIENTS, "effect": "deny"}
    refused = await form_post(admin, "/rules/new", "/rules/new", deny_with_cap)
    assert error_beside(refused.text, "cap") == "only an allow rule can carry a cap"
    assert await rule_count(companion) == 0


async def test_simulate_lists_the_calls_the_rule_would_change_and_saves_nothing(
    alice, app_client, demo_keys, companion
):
    """Alice replays her own calls, whose arguments she may read (an admin's replay withholds them)."""
    async with mcp_client(BASE, demo_keys.keys["alice@acme.test"], transport=app_client.transport) as client:
        for text in ("email Carol", "email Dan", "plan the offsite"):
            await client.call_tool(CREATE_ITEM, {"meeting_id": "mtg_missing", "text": text})
        await client.call_tool("harmony_list_meetings", {"limit": 1})
    await companion.audit.flush()
    proposal = {
        "effect": "allow",
        "scope": "user",
        "app": "harmony",
        "tool": CREATE_ITEM,
        "conditions.0.arg": "text",
        "conditions.0.op": "matches",
        "conditions.0.value": "email .*",
        "action": "simulate",
    }
    simulated = await form_post(alice, "/rules/new", "/rules/new", proposal)
    assert simulated.status_code == 200
    shown = words(simulated.text)
    assert "2 of 4 calls would have been decided differently with this rule (your own calls" in shown
    assert "Ask → would become Allow 2 calls" in shown
    assert shown.count("you Create an action item Ask Allow") == 2
    assert await rule_count(companion) == 0
    assert 'value="email .*"' in simulated.text  # the form is still filled in, ready to save


async def test_explain_names_the_rule_that_decided_and_links_to_it(admin, alice, companion):
    rule = await create(
        companion,
        "admin@acme.test",
        effect="deny",
        scope="workspace",
        tool=CREATE_ITEM,
        conditions=[{"arg": "text", "op": "contains", "value": "fire"}],
        description="No firing people through the assistant",
    )
    question = f"/rules/explain?user=alice@acme.test&tool={CREATE_ITEM}&arg.meeting_id=m1&arg.text=fire+Bob&go=1"
    answer = await admin.get(question)
    assert answer.status_code == 200
    shown = words(answer.text)
    assert "Deny The call never runs." in shown
    assert "Decided by Deny Create an action item harmony_create_action_item when text contains “fire”" in shown
    assert f'href="/rules#rule-{rule.id}"' in answer.text
    harmless = words((await admin.get(question.replace("fire+Bob", "hire+Bob"))).text)
    assert "No rule decided it, so the default for write tools applies: ask." in harmless
    # A member asks about her own calls, and sees the workspace rule's note but not the rule itself.
    hers = await alice.get(question.replace("user=alice@acme.test&", ""))
    assert "No firing people through the assistant" in words(hers.text)
    assert f'href="/rules#rule-{rule.id}"' not in hers.text
    assert (await alice.get(question.replace("alice@", "admin@"))).status_code == 403


async def test_explain_takes_nested_arguments_as_json_and_says_when_it_is_not(admin):
    base = f"/rules/explain?tool={CREATE_ITEM}&go=1"
    broken = await admin.get(base + "&json=%7Bnope")
    assert broken.status_code == 422 and error_beside(broken.text, "json").startswith("this is not JSON")
    fine = await admin.get(base + "&json=%7B%22text%22%3A%22x%22%7D")
    assert fine.status_code == 200 and "The call waits for a person&#39;s approval." in fine.text


async def test_the_shadow_switch_sets_a_rule_aside_and_back(admin, companion):
    rule = await create(companion, "admin@acme.test", effect="deny", scope="workspace", tool=CREATE_ITEM)
    await form_post(admin, "/rules", f"/rules/{rule.id}/mode", {"mode": "shadow"})
    assert (await only_rule(companion)).mode == "shadow"
    listed = (await admin.get("/rules")).text
    assert 'role="switch" aria-checked="true"' in listed and "records what it would decide" in listed
    await form_post(admin, "/rules", f"/rules/{rule.id}/mode", {"mode": "enforce"})
    assert (await only_rule(companion)).mode == "enforce"


async def test_a_rule_is_deleted_after_confirming(admin, companion):
    rule = await create(companion, "admin@acme.test", effect="deny", scope="workspace", tool=CREATE_ITEM)
    listed = (await admin.get("/rules")).text
    assert f'data-dialog="delete-{rule.id}"' in listed and f'<dialog id="delete-{rule.id}"' in listed
    confirm = await admin.get(f"/rules/{rule.id}/delete")  # where the button leads without JavaScript
    assert "Delete this rule?" in confirm.text
    deleted = await admin.post(f"/rules/{rule.id}/delete", data={"csrf": csrf_of(confirm.text)})
    assert deleted.status_code == 303 and await rule_count(companion) == 0


async def test_editing_keeps_every_part_of_a_rule_the_form_shows(admin, companion):
    rule = await create(
        companion,
        "admin@acme.test",
        effect="ask",
        scope="workspace",
        app="harmony",
        tool="harmony_create_*",
        conditions=[{"arg": "meeting_id", "op": "in", "value": ["m1", "m2"]}],
        context={"weekdays": ["mon", "fri"], "hours": {"from": "09:00", "to": "17:00"}, "roles": ["member"]},
        require_out_of_band=True,
        locked=True,
        expires_at="2099-01-01T08:30:00Z",
    )
    page = await admin.get(f"/rules/{rule.id}/edit")
    assert page.status_code == 200 and "Tools matching harmony_create_*" in page.text
    form = {
        "csrf": csrf_of(page.text),
        "effect": "ask",
        "app": "harmony",
        "tool": "harmony_create_*",
        "conditions.0.arg": "meeting_id",
        "conditions.0.op": "in",
        "conditions.0.value": "m1, m2",
        "context.weekdays": ["mon", "fri"],
        "context.roles": ["member"],
        "context.hours.from": "09:00",
        "context.hours.to": "17:00",
        "require_out_of_band": "on",
        "locked": "on",
        "expires_at": "2099-01-01T08:30",
        "action": "save",
    }
    for name in ("m1, m2", "09:00", "17:00", "2099-01-01T08:30"):
        assert f'value="{name}"' in page.text
    tried = await admin.post(f"/rules/{rule.id}/edit", data={**form, "action": "simulate"})
    assert "There are no recorded calls from the last 7 days" in tried.text
    saved = await admin.post(f"/rules/{rule.id}/edit", data=form)
    assert saved.status_code == 303
    assert await only_rule(companion) == rule


async def test_a_member_keeps_personal_rules_and_cannot_reach_workspace_ones(alice, companion):
    workspace_rule = await create(companion, "admin@acme.test", effect="deny", scope="workspace", tool=CREATE_ITEM)
    made = await form_post(
        alice, "/rules/new", "/rules/new", {"effect": "allow", "scope": "user", "tool": "harmony_list_meetings"}
    )
    assert made.status_code == 303
    listed = (await alice.get("/rules")).text
    assert "List meetings" in listed and workspace_rule.id not in listed
    assert "You see your personal rules" in listed
    for path in (f"/rules/{workspace_rule.id}/edit", f"/rules/{workspace_rule.id}/delete"):
        assert (await alice.get(path)).status_code == 403
    token = csrf_of(listed)
    for action, data in (
        ("edit", {"effect": "allow", "tool": CREATE_ITEM, "action": "save"}),
        ("mode", {"mode": "shadow"}),
        ("delete", {}),
    ):
        refused = await alice.post(f"/rules/{workspace_rule.id}/{action}", data={"csrf": token, **data})
        assert refused.status_code == 403, action
        assert "Only workspace admins and owners" in refused.text
    sneaky = await alice.post("/rules/new", data={"csrf": token, "effect": "allow", "scope": "workspace"})
    assert sneaky.status_code == 403
    assert workspace_rule in await saved_rules(companion)


async def test_a_post_without_its_csrf_token_is_refused(admin, companion):
    refused = await admin.post("/rules/new", data={**MAIL_TO_CLIENTS, "action": "save"})
    assert refused.status_code == 403 and await rule_count(companion) == 0


async def test_pages_ask_for_sign_in_first(app_client):
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as browser:
        response = await browser.get("/rules/new")
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/rules/new"
