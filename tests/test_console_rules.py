"""The Rules pages: make a rule by picking, read it in plain words, try it on last week's calls, explain a decision.

Members manage only their own rules; a workspace rule's pages and forms answer them 403.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import httpx2
import pytest
from sqlalchemy import func, select

from approvals.rules import Approvers, Rule
from store.connections import add_connection
from store.directory import add_member, member_principal, workspace_by_slug
from store.models import ConnectionScope, Membership, Role, RuleRow, User, utcnow
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


def form_of_page(page: str) -> dict[str, str | list[str]]:
    """What the rule form sends as it stands: filled inputs, checked boxes, selected options."""
    form: dict[str, list[str]] = {}
    body = page[page.index('<form id="rule-editor"') :]
    body = body[: body.index("</form>")]
    for tag in re.findall(r"<input\b[^>]*>", body):
        name = re.search(r'name="([^"]+)"', tag)
        if not name or name.group(1) == "action":
            continue
        kind = re.search(r'type="([^"]+)"', tag)
        if kind and kind.group(1) in ("checkbox", "radio") and not re.search(r"\schecked\b", tag):
            continue
        value = re.search(r'value="([^"]*)"', tag)
        form.setdefault(name.group(1), []).append(html.unescape(value.group(1)) if value else "on")
    for name, inside in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', body, re.S):
        form[name] = [html.unescape(inside)]
    for name, inside in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', body, re.S):
        chosen = (
            re.findall(r'<option value="([^"]*)" selected', inside)
            or re.findall(r'<option value="([^"]*)"', inside)[:1]
        )
        form[name] = [html.unescape(v) for v in chosen]
    return {name: values[0] if len(values) == 1 else values for name, values in form.items()}


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


async def alices_gmail(companion, label: str = "Work") -> str:
    async with companion.db.transaction() as session:
        alice = await session.scalar(select(User).where(User.email == "alice@acme.test"))
        connection = await add_connection(
            session,
            companion.box,
            app="gmail",
            scope=ConnectionScope.PERSONAL,
            workspace_id=None,
            user_id=alice.id,
            label=label,
            credentials={"access_token": "t"},
        )
        return connection.id


async def test_a_remembered_rule_keeps_its_connection_through_the_editor(alice, companion):
    """What "remember" makes: a personal allow bound to one connection; editing its description keeps the binding."""
    connection_id = await alices_gmail(companion)
    remembered = await create(
        companion,
        "alice@acme.test",
        effect="allow",
        scope="user",
        app="gmail",
        tool="gmail_send_email",
        conditions=[{"arg": "@recipients", "op": "domain_in", "value": ["acme.test"]}],
        context={"connection_ids": [connection_id]},
        expires_at=(utcnow() + timedelta(hours=1)).replace(second=0, microsecond=0),
        description="Remembered when approving apr_1",
    )
    listed = words((await alice.get("/rules")).text)
    assert "when every recipient is at acme.test" in listed
    assert f"only on the connection {connection_id}" in listed  # the list names it by id
    page = await alice.get(f"/rules/{remembered.id}/edit")
    assert page.status_code == 200
    shown = words(page.text)
    assert "Only on this connection" in shown and "“Work”" in shown
    assert options(page.text, "conditions.0.arg")[:2] == ["", "@recipients"]
    assert re.search(r'<option value="@recipients" selected>All recipients \(to, cc, bcc\)</option>', page.text)
    assert re.search(r'<option value="domain_in" selected>are all only at domains</option>', page.text)
    preview = words(page.text[page.text.index('<section class="card stack rule-preview"') :]).strip()
    assert preview.startswith("In plain words Allow Send a Gmail message gmail_send_email")
    assert "when every recipient is at acme.test When only on the connection “Work”" in preview
    form = form_of_page(page.text)
    assert form["context.connection_ids"] == connection_id
    unchecked = {name: value for name, value in form.items() if name != "context.connection_ids"}
    redrawn = await alice.post(f"/rules/{remembered.id}/edit", data={**unchecked, "action": "refresh"})
    assert f'value="{connection_id}" >' in redrawn.text  # still offered, now unchecked
    assert "“Work”" not in words(redrawn.text[redrawn.text.index("In plain words") :])
    saved = await alice.post(
        f"/rules/{remembered.id}/edit", data={**form, "description": "Mail inside Acme", "action": "save"}
    )
    assert saved.status_code == 303, words(saved.text)
    after = await only_rule(companion)
    assert after.context.connection_ids == [connection_id]
    assert after.description == "Mail inside Acme"
    assert after == remembered.model_copy(update={"description": "Mail inside Acme"})
    # A new expiry, with a redraw on the way (an empty condition added), keeps the binding too.
    redrawn = await alice.post(
        f"/rules/{remembered.id}/edit", data={**form, "action": "add-condition"}, headers={"HX-Request": "true"}
    )
    again = form_of_page(redrawn.text)
    assert again["context.connection_ids"] == connection_id
    later = (utcnow() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    await alice.post(f"/rules/{remembered.id}/edit", data={**again, "expires_at": later, "action": "save"})
    after = await only_rule(companion)
    assert after.context.connection_ids == [connection_id] and after.conditions == remembered.conditions
    assert after.expires_at.strftime("%Y-%m-%dT%H:%M") == later


async def test_an_admin_sees_another_persons_connection_only_by_id(admin, companion):
    connection_id = await alices_gmail(companion, label="Alice's private mail")
    rule = await create(
        companion,
        "admin@acme.test",
        effect="deny",
        scope="workspace",
        tool="gmail_send_email",
        context={"connection_ids": [connection_id]},
    )
    page = await admin.get(f"/rules/{rule.id}/edit")
    assert "Alice&#39;s private mail" not in page.text and "Alice's private mail" not in page.text
    assert f'value="{connection_id}" checked' in page.text


async def test_all_recipients_is_offered_only_for_tools_that_declare_recipients(admin):
    choose = {"effect": "allow", "scope": "workspace", "action": "add-condition"}
    mail = await form_post(admin, "/rules/new", "/rules/new", {**choose, "app": "gmail", "tool": "gmail_send_email"})
    assert options(mail.text, "conditions.0.arg")[:2] == ["", "@recipients"]
    assert "All recipients (to, cc, bcc)" in mail.text
    meetings = await form_post(
        admin, "/rules/new", "/rules/new", {**choose, "app": "harmony", "tool": "harmony_list_meetings"}
    )
    assert "@recipients" not in options(meetings.text, "conditions.0.arg")
    assert "All recipients" not in meetings.text
    picked = await form_post(
        admin,
        "/rules/new",
        "/rules/new",
        {**choose, "app": "gmail", "tool": "gmail_send_email", "conditions.0.arg": "@recipients", "action": "refresh"},
    )
    assert options(picked.text, "conditions.0.op") == [
        "domain_in", "in", "not_in", "matches", "max_length", "exists", "missing"
    ]  # fmt: skip
    assert "An allow rule needs every recipient to fit" in words(picked.text)
    denying = await form_post(
        admin,
        "/rules/new",
        "/rules/new",
        {
            **choose,
            "effect": "deny",
            "app": "gmail",
            "tool": "gmail_send_email",
            "conditions.0.arg": "@recipients",
            "action": "refresh",
        },
    )
    assert '<option value="domain_in" selected>include one at domains</option>' in denying.text
    assert "An deny rule" not in denying.text and "A deny rule holds once any recipient fits" in words(denying.text)


async def test_a_recipients_rule_made_in_the_form_is_saved_and_read_by_its_effect(admin, companion):
    allow = {
        "effect": "allow",
        "scope": "workspace",
        "app": "gmail",
        "tool": "gmail_send_email",
        "conditions.0.arg": "@recipients",
        "conditions.0.op": "domain_in",
        "conditions.0.value": "Acme.test",
        "action": "save",
    }
    saved = await form_post(admin, "/rules/new", "/rules/new", allow)
    assert saved.status_code == 303, words(saved.text)
    deny = {**allow, "effect": "deny", "conditions.0.value": "evil.example, @bad.example"}
    assert (await form_post(admin, "/rules/new", "/rules/new", deny)).status_code == 303
    rules = {rule.effect.value: rule for rule in await saved_rules(companion)}
    assert rules["allow"].conditions[0].model_dump() == {
        "arg": "@recipients",
        "op": "domain_in",
        "value": ["acme.test"],
    }
    assert rules["deny"].conditions[0].value == ["evil.example", "bad.example"]
    listed = words((await admin.get("/rules")).text)
    assert "when every recipient is at acme.test" in listed
    assert "when any recipient is at evil.example or bad.example" in listed
    assert "Not on anyone's personal connection: only its owner's rules auto-approve there" in listed
    assert "an allow rule needs every item to fit; an ask or deny rule applies once any item fits" in listed


def test_words_for_recipients_keys_and_connections_follow_the_rule():
    from approvals.rules import Condition, RuleContext
    from server.web.rules_schema import Argument
    from server.web.rules_words import Vocabulary, condition_phrase, context_words

    recipients = Condition(arg="@recipients", op="domain_in", value=["acme.test"])
    assert str(condition_phrase(recipients, None, "allow")) == "every recipient is at acme.test"
    assert str(condition_phrase(recipients, None, "deny")) == "any recipient is at acme.test"
    assert str(condition_phrase(recipients, None, "ask")) == "any recipient is at acme.test"
    assert not condition_phrase(recipients, None, "deny").code
    outside = Condition(arg="@recipients", op="not_in", value=["a@acme.test"])
    assert str(condition_phrase(outside, None, "allow")) == "no recipient is “a@acme.test”"
    assert str(condition_phrase(outside, None, "deny")) == "any recipient is not “a@acme.test”"
    many = Condition(arg="@recipients", op="max_length", value=3)
    assert str(condition_phrase(many, None, "deny")) == "the call has at most 3 recipients"
    none = Condition(arg="@recipients", op="exists", value=False)
    assert str(condition_phrase(none, None, "ask")) == "the call has no recipients"
    keys = Condition(arg="properties", op="keys_in", value=["name", "amount"])
    assert (
        str(condition_phrase(keys, Argument("properties", "object")))
        == "properties sets only the fields name and amount"
    )
    listed = Argument("items.fields", "object", many=True)
    assert str(condition_phrase(keys, listed, "allow")).endswith("each set only the fields name and amount")
    assert str(condition_phrase(keys, listed, "deny")).endswith("include one setting only the fields name and amount")
    labels = Condition(arg="labels", op="in", value=["spam"])
    array = Argument("labels", "string", array=True, many=True)
    assert str(condition_phrase(labels, array, "allow")) == "labels are all among “spam”"
    assert str(condition_phrase(labels, array, "deny")) == "labels include one of “spam”"
    vocabulary = Vocabulary({}, {}, {}, connection_labels={"conn_1": "Work"})
    context = RuleContext(connection_ids=["conn_1", "conn_2"])
    assert context_words(context, "UTC", vocabulary) == ["only on the connections “Work” and conn_2"]
    assert context_words(RuleContext(connection_ids=["conn_1"]), "UTC") == ["only on the connection conn_1"]


def test_object_arguments_offer_keys_in_and_take_their_fields():
    from server.web.rules_schema import arguments_of

    schema = {
        "type": "object",
        "properties": {
            "record": {"type": "object", "properties": {"name": {"type": "string"}, "amount": {"type": "number"}}},
            "free": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    found = {a.path: a for a in arguments_of(schema)}
    record, free = found["record"], found["free"]
    assert record.operators[0] == "keys_in" and record.label_of("keys_in") == "sets only these fields"
    assert record.value_input("keys_in") == "fields" and record.fields == ("name", "amount")
    assert record.parse("keys_in", "", ["name", "name"]) == ["name"]
    assert free.value_input("keys_in") == "list"
    assert free.parse("keys_in", "a, b ,a", []) == ["a", "b"]


async def test_an_object_argument_is_tested_by_the_fields_it_sets(admin, companion):
    choose = {"effect": "allow", "scope": "workspace", "app": "salesforce", "tool": "salesforce_update_record"}
    picked = await form_post(
        admin, "/rules/new", "/rules/new", {**choose, "conditions.0.arg": "fields", "action": "refresh"}
    )
    assert options(picked.text, "conditions.0.op") == ["keys_in", "exists", "missing"]
    assert '<option value="keys_in" selected>sets only these fields</option>' in picked.text
    saved = await form_post(
        admin,
        "/rules/new",
        "/rules/new",
        {**choose, "conditions.0.arg": "fields", "conditions.0.op": "keys_in", "conditions.0.value": "Name, StageName"},
    )
    assert saved.status_code == 303, words(saved.text)
    rule = await only_rule(companion)
    assert rule.conditions[0].model_dump() == {"arg": "fields", "op": "keys_in", "value": ["Name", "StageName"]}
    assert "when fields sets only the fields Name and StageName" in words((await admin.get("/rules")).text)
    page = await admin.get(f"/rules/{rule.id}/edit")
    assert 'value="Name, StageName"' in page.text


# Who approves: a workspace ask rule's approvers, self-approval and escalation


TWO_OF_BOB_AND_CAROL = {
    "effect": "ask",
    "scope": "workspace",
    "app": "harmony",
    "tool": CREATE_ITEM,
    "approvers.people": "bob@acme.test, Carol@acme.test",
    "approvers.count": "2",
    "no_self_approval": "on",
    "escalate_after_minutes": "30",
    "escalate_to": "admins",
    "action": "save",
}


async def carol_joins(companion) -> None:
    async with companion.db.transaction() as session:
        await add_member(session, await workspace_by_slug(session, "acme"), email="carol@acme.test", role=Role.MEMBER)


async def test_an_admin_names_two_of_bob_and_carol_through_the_form(admin, companion):
    await carol_joins(companion)
    blank = await admin.get(f"/rules/new?app=harmony&tool={CREATE_ITEM}")
    assert "Who approves" in blank.text and 'name="approvers.people"' in blank.text  # an admin's new rule asks
    saved = await form_post(admin, "/rules/new", "/rules/new", TWO_OF_BOB_AND_CAROL)
    assert saved.status_code == 303, words(saved.text)
    rule = await only_rule(companion)
    assert rule.approvers == Approvers(people=["bob@acme.test", "carol@acme.test"], count=2)
    assert rule.no_self_approval and (rule.escalate_after_minutes, rule.escalate_to) == (30, "admins")
    listed = words((await admin.get("/rules")).text)
    assert "Approved by 2 of bob@acme.test, carol@acme.test" in listed
    assert "Never by the person who asked" in listed
    assert "Escalates after 30 minutes: the admins are added" in listed
    # The edit form shows them as saved; saved as it stands, the rule is unchanged; emptied, they are gone.
    page = await admin.get(f"/rules/{rule.id}/edit")
    form = form_of_page(page.text)
    assert form["approvers.people"] == "bob@acme.test, carol@acme.test" and form["approvers.count"] == "2"
    assert form["no_self_approval"] == "on" and form["escalate_to"] == "admins"
    assert (await admin.post(f"/rules/{rule.id}/edit", data={**form, "action": "save"})).status_code == 303
    assert await only_rule(companion) == rule
    cleared = {
        name: value
        for name, value in form.items()
        if name not in ("approvers.people", "no_self_approval", "escalate_after_minutes", "escalate_to")
    }
    cleared["approvers.count"] = "1"
    assert (await admin.post(f"/rules/{rule.id}/edit", data={**cleared, "action": "save"})).status_code == 303
    after = await only_rule(companion)
    assert after.approvers is None and not after.no_self_approval and after.escalate_after_minutes is None


async def test_who_approves_shows_only_for_a_workspace_ask_rule_with_or_without_javascript(admin, alice):
    allow = {"effect": "allow", "scope": "workspace", "app": "harmony", "tool": CREATE_ITEM}
    allowing = await form_post(admin, "/rules/new", "/rules/new", {**allow, "action": "refresh"})
    assert 'name="approvers.people"' not in allowing.text
    assert "An ask rule can also say who approves its calls" in words(allowing.text)
    # Ask picked: htmx redraws the form, and without JavaScript "Refresh choices" does the same.
    for headers in ({"HX-Request": "true"}, {}):
        asking = await admin.post(
            "/rules/new",
            data={**allow, "effect": "ask", "csrf": csrf_of(allowing.text), "action": "refresh"},
            headers=headers,
        )
        assert 'name="approvers.people"' in asking.text and 'name="escalate_after_minutes"' in asking.text
    personal = await form_post(
        admin, "/rules/new", "/rules/new", {**allow, "effect": "ask", "scope": "user", "action": "refresh"}
    )
    assert 'name="approvers.people"' not in personal.text
    hers = await alice.get(f"/rules/new?app=harmony&tool={CREATE_ITEM}")
    assert 'name="approvers.people"' not in hers.text and "Who approves" not in hers.text


async def test_a_member_cannot_name_approvers(alice, companion):
    sent = {**TWO_OF_BOB_AND_CAROL, "scope": "user"}
    refused = await form_post(alice, "/rules/new", "/rules/new", sent)
    assert refused.status_code == 422 and await rule_count(companion) == 0
    assert error_beside(refused.text, "approvers") == "only a workspace rule can set it"
    assert 'value="30"' in refused.text  # shown as sent, beside the problem
    workspace = await alice.post("/rules/new", data={**sent, "scope": "workspace", "csrf": csrf_of(refused.text)})
    assert workspace.status_code == 403 and await rule_count(companion) == 0


@pytest.mark.parametrize(
    ("changed", "field", "problem"),
    [
        ({"approvers.count": "3"}, "approvers.count", "3 approvals cannot come from 2 people"),
        ({"approvers.count": "two"}, "approvers.count", "enter a whole number of approvals"),
        ({"approvers.count": "0"}, "approvers.count", "Input should be greater than or equal to 1"),
        ({"approvers.people": "bob@acme.test, carol"}, "approvers.people", "“carol” is not an e-mail address"),
        ({"approvers.people": ""}, "approvers.people", "name at least one approver, or set admins"),
        (
            {"approvers.people": "bob@acme.test, mallory@evil.test", "approvers.count": "1"},
            "approvers.people",
            "not members of this workspace: mallory@evil.test",
        ),
        ({"escalate_after_minutes": "soon"}, "escalate_after_minutes", "enter a whole number of minutes"),
    ],
)
async def test_a_bad_approvers_field_shows_its_problem_beside_it(admin, companion, changed, field, problem):
    await carol_joins(companion)
    refused = await form_post(admin, "/rules/new", "/rules/new", {**TWO_OF_BOB_AND_CAROL, **changed})
    assert refused.status_code == 422
    assert error_beside(refused.text, field) == problem
    assert f'href="#f-{field.replace(".", "-")}"' in refused.text  # the summary links to the field
    assert await rule_count(companion) == 0


async def test_an_escalation_tells_the_approvers_again_by_the_channels_ticked(admin, companion):
    await carol_joins(companion)
    by_channels = {name: value for name, value in TWO_OF_BOB_AND_CAROL.items() if name != "escalate_to"}
    page = await admin.get("/rules/new")
    assert re.findall(r'name="escalate_by" value="(\w+)"', page.text) == ["email", "slack", "push"]
    alone = await form_post(admin, "/rules/new", "/rules/new", by_channels)
    assert alone.status_code == 422 and error_beside(alone.text, "escalate_to").startswith("escalating needs")
    no_time = {**by_channels, "escalate_after_minutes": "", "escalate_by": ["email"]}
    refused = await form_post(admin, "/rules/new", "/rules/new", no_time)
    assert error_beside(refused.text, "escalate_after_minutes") == "escalating needs a time to escalate after"
    assert re.search(r'name="escalate_by" value="email" checked', refused.text), "kept as ticked"
    saved = await form_post(
        admin,
        "/rules/new",
        "/rules/new",
        {**by_channels, "escalate_after_minutes": "60", "escalate_by": ["email", "push"]},
    )
    assert saved.status_code == 303, words(saved.text)
    rule = await only_rule(companion)
    assert (rule.escalate_after_minutes, rule.escalate_to, rule.escalate_by) == (60, None, ["email", "push"])
    listed = words((await admin.get("/rules")).text)
    assert "Escalates after 1 hour: the approvers are told again by e-mail and push notifications" in listed
    assert form_of_page((await admin.get(f"/rules/{rule.id}/edit")).text)["escalate_by"] == ["email", "push"]
