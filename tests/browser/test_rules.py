"""In Chromium: write a rule by picking from the tool's arguments, simulate it, save it, and explain a call."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from approvals.rules import Rule
from store.directory import member_principal, user_by_email, workspace_by_slug
from tests.browser.conftest import Console
from tests.browser.test_inbox import a_meeting_of, ask

pytestmark = pytest.mark.anyio

CREATE_ITEM = "harmony_create_action_item"


async def test_a_domain_rule_is_built_from_the_form_simulated_and_then_saved(console):
    meeting = await a_meeting_of(console, "alice@acme.test")
    await ask(console, {"meeting_id": meeting, "text": "Send the quote", "assignee_email": "carol@globex.example"})
    await ask(console, {"meeting_id": meeting, "text": "Send the NDA", "assignee_email": "erin@initech.example"})
    await console.companion.audit.flush()

    page = await console.person("alice@acme.test")
    await allow_at_domains(page, "Harmony", CREATE_ITEM, "assignee_email", "globex.example")

    await page.get_by_role("button", name="Simulate").click()
    simulation = page.get_by_role("status", name="Simulation: the last 7 days")
    await expect(simulation).to_contain_text("1 of 2 calls would have been decided differently with this rule")
    await expect(simulation.get_by_role("listitem")).to_have_text(re.compile(r"Ask\W+would become Allow\W+1 call"))
    await expect(simulation.get_by_role("table").get_by_role("row")).to_have_count(2)  # the header and one call

    await page.get_by_role("button", name="Save rule").click()
    await expect(page).to_have_url(re.compile(r"/rules#rule-rule_[0-9a-f]+$"))
    await expect(page.get_by_role("main")).to_contain_text("assignee_email is only at domains globex.example")


async def allow_at_domains(page: Page, app: str, tool: str, argument: str, domains: str) -> None:
    """Fill in a new allow rule for ``tool`` when ``argument`` is only at ``domains``, as a person picks it."""
    await page.goto("/rules/new")
    # Each choice redraws the form with what fits it (htmx); the next step waits for that redraw.
    await page.get_by_text("The call runs without asking.").click()
    await settled(page)
    await page.get_by_label("App", exact=True).select_option(label=app)
    await settled(page)
    await page.get_by_label("Tool", exact=True).select_option(tool)
    await settled(page)
    await page.get_by_role("button", name="Add condition").click()
    await settled(page)
    await page.get_by_label("Argument", exact=True).select_option(argument)
    await settled(page)
    await page.get_by_label("Test", exact=True).select_option("domain_in")
    await settled(page)
    await page.get_by_label("Values", exact=True).fill(domains)


async def settled(page: Page) -> None:
    await page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-settling, .htmx-swapping')")


async def admin_rule(console: Console, **definition: object) -> Rule:
    async with console.companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        admin = await user_by_email(session, "admin@acme.test")
        actor = await member_principal(session, workspace.id, admin.id, acting_as="test")
        assert actor is not None
        return await console.companion.rulebook.create(session, actor, Rule.model_validate(definition))


async def test_explain_shows_the_rule_that_decides(console):
    rule = await admin_rule(
        console,
        effect="deny",
        scope="workspace",
        tool=CREATE_ITEM,
        conditions=[{"arg": "text", "op": "contains", "value": "fire"}],
        description="No firing people through the assistant",
    )
    page = await console.person("admin@acme.test")
    await page.goto("/rules/explain")
    await page.get_by_label("Whose call").select_option("alice@acme.test")
    await page.get_by_label("Tool", exact=True).select_option(CREATE_ITEM)
    await settled(page)
    await page.get_by_role("textbox", name="text · text").fill("fire Bob")
    await page.get_by_role("textbox", name="meeting_id · text").fill("mtg_1")
    await page.get_by_role("button", name="Explain").click()
    answer = page.get_by_role("region", name="Deny The call never runs.")
    await expect(answer).to_contain_text("Workspace rule · No firing people through the assistant")
    await expect(answer).to_contain_text("when text contains “fire”")
    await expect(answer.get_by_role("link").first).to_have_attribute("href", f"/rules#rule-{rule.id}")


async def test_a_member_can_neither_see_nor_change_workspace_rules(console):
    rule = await admin_rule(console, effect="deny", scope="workspace", tool=CREATE_ITEM)
    page = await console.person("alice@acme.test")
    await page.goto("/rules")
    await expect(page.get_by_role("main")).not_to_contain_text("Create an action item")
    opened = await page.goto(f"/rules/{rule.id}/edit")
    assert opened is not None and opened.status == 403
    await expect(page.get_by_role("main")).to_contain_text("Only workspace admins and owners")
    token = await page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    for action in ("mode", "delete"):
        refused = await page.request.post(f"/rules/{rule.id}/{action}", form={"csrf": token, "mode": "shadow"})
        assert refused.status == 403, action
    async with console.companion.db.session() as session:
        workspace = await workspace_by_slug(session, "acme")
        [kept] = await console.companion.rulebook.rules_of(session, workspace.id)
    assert kept == rule
