"""The approvals inbox: sign in, see what waits, decide it, and let the assistant's retry run once."""

from __future__ import annotations

import asyncio
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import select, update

from server.services.approval_flow import approval_view
from server.services.demo import DEMO_PASSWORD
from store import directory
from store.models import Approval, Role, RuleRow, User, utcnow
from tests.conftest import COMPANION, alices_meeting, mcp_client
from tests.console import csrf_of, form_post, sign_in
from tests.test_many_approvers import (  # noqa: F401 (people and http are fixtures)
    ALICE,
    BOB,
    DORA,
    asked,
    decide,
    http,
    people,
    rule,
    two_of_three,
)

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
ITEM = {"meeting_id": "mtg_x", "text": "Send <b>the</b> quote"}


async def ask(app_client, demo_keys, arguments=ITEM, who="alice@acme.test"):
    async with mcp_client(BASE, demo_keys.keys[who], transport=app_client.transport) as client:
        return await client.call_tool("harmony_create_action_item", arguments)


@pytest.fixture
async def waiting(app_client, demo_keys):
    return (await ask(app_client, demo_keys)).structured_content["approval_id"]


@pytest.fixture
async def alices_call(companion, demo_keys) -> dict[str, str]:
    return {"meeting_id": await alices_meeting(companion), "text": "Send the quote"}


@pytest.fixture
async def browser(app_client):
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as client:
        yield client


async def test_the_page_asks_for_sign_in_then_shows_the_call(browser, waiting):
    first = await browser.get(f"/approvals/{waiting}")
    assert first.status_code == 303 and first.headers["location"] == f"/login?next=/approvals/{waiting}"
    signed = await sign_in(browser, "alice@acme.test", next_path=f"/approvals/{waiting}")
    assert signed.status_code == 303 and signed.headers["location"] == f"/approvals/{waiting}"
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    page = await browser.get(f"/approvals/{waiting}")
    assert page.status_code == 200
    assert "Add the action item “Send &lt;b&gt;the&lt;/b&gt; quote” to meeting mtg_x" in page.text
    assert "<b>the</b>" not in page.text
    assert ">Approve</button>" in page.text and ">Deny</button>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


async def test_the_inbox_lists_what_waits_and_an_approval_lets_the_retry_run_once(
    app_client, browser, demo_keys, alices_call
):
    waiting = (await ask(app_client, demo_keys, alices_call)).structured_content["approval_id"]
    await sign_in(browser, "alice@acme.test")
    inbox = await browser.get("/inbox")
    assert f'id="card-{waiting}"' in inbox.text and "Add the action item" in inbox.text
    done = await form_post(browser, "/inbox", f"/approvals/{waiting}/approve", {"remember": "no", "next": "/inbox"})
    assert done.status_code == 303 and done.headers["location"] == "/inbox"
    after = await browser.get("/inbox")
    assert "Approved. The assistant&#39;s call runs when it asks again." in after.text
    assert f'id="card-{waiting}"' not in after.text
    assert "Add the action item" not in after.text

    ran = await ask(app_client, demo_keys, alices_call)
    again = await ask(app_client, demo_keys, alices_call)
    assert not ran.is_error and not again.is_error
    assert ran.structured_content == again.structured_content
    history = await browser.get("/inbox/history")
    assert f'id="card-{waiting}"' in history.text and "Ran successfully." in history.text


async def test_a_denial_with_a_reason_reaches_the_assistant(app_client, browser, demo_keys, waiting):
    await sign_in(browser, "alice@acme.test")
    denied = await form_post(browser, "/inbox", f"/approvals/{waiting}/deny", {"reason": "Not to that meeting"})
    assert denied.status_code == 303
    retry = await ask(app_client, demo_keys)
    assert retry.is_error and "Not to that meeting" in retry.content[0].text


async def test_approve_and_remember_for_an_hour_leaves_a_rule(browser, companion, waiting):
    await sign_in(browser, "alice@acme.test")
    await form_post(browser, "/inbox", f"/approvals/{waiting}/approve", {"remember": "1h"})
    async with companion.db.session() as session:
        [rule] = (await session.scalars(select(RuleRow).where(RuleRow.scope == "user"))).all()
    assert rule.definition["tool"] == "harmony_create_action_item" and rule.definition["effect"] == "allow"
    expires = datetime.fromisoformat(rule.definition["expires_at"])
    assert timedelta(minutes=59) < expires - utcnow() <= timedelta(hours=1)


async def test_deciding_from_the_page_without_a_reload_answers_the_card_alone(browser, waiting):
    await sign_in(browser, "alice@acme.test")
    page = await browser.get("/inbox")
    swapped = await browser.post(
        f"/approvals/{waiting}/deny",
        data={"reason": "no"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf_of(page.text)},
    )
    assert swapped.status_code == 200 and swapped.text.lstrip().startswith("<article")
    assert ">denied<" in swapped.text and "“no”" in swapped.text


async def test_a_form_post_without_its_csrf_token_is_refused(browser, waiting):
    await sign_in(browser, "alice@acme.test")
    refused = await browser.post(f"/approvals/{waiting}/approve", data={"remember": "no"})
    assert refused.status_code == 403 and "did not come from Companion" in refused.text
    page = await browser.get(f"/approvals/{waiting}")
    assert ">pending<" in page.text


async def test_someone_else_sees_nothing(browser, waiting):
    await sign_in(browser, "bob@acme.test")
    page = await browser.get(f"/approvals/{waiting}")
    assert page.status_code == 404 and "Send" not in page.text
    inbox = await browser.get("/inbox")
    assert waiting not in inbox.text and "Nothing waits for you" in inbox.text


async def test_an_expired_approval_drops_out_and_is_kept_in_history(browser, companion, waiting):
    async with companion.db.transaction() as session:
        await session.execute(
            update(Approval).where(Approval.id == waiting).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    await sign_in(browser, "alice@acme.test")
    assert waiting not in (await browser.get("/inbox/pending")).text
    history = await browser.get("/inbox/history")
    assert f'id="card-{waiting}"' in history.text and "No one decided in time" in history.text


async def test_the_event_stream_says_when_something_new_waits(live_server, demo_keys):
    async with httpx2.AsyncClient(base_url=live_server, timeout=20) as browser:
        await sign_in(browser, "alice@acme.test")
        async with browser.stream("GET", "/inbox/events?for=15") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            counts = []
            async for line in lines:
                if line.startswith("data: "):
                    counts.append(int(line.removeprefix("data: ")))
                    if len(counts) == 1:
                        async with mcp_client(live_server, demo_keys.keys["alice@acme.test"]) as client:
                            await client.call_tool("harmony_create_action_item", ITEM)
                    else:
                        break
    assert counts == [0, 1]


async def test_a_wrong_password_is_refused_and_repeated_failures_are_throttled(browser, demo_keys):
    refused = await sign_in(browser, "alice@acme.test", "not-her-password")
    assert refused.status_code == 401 and "do not match" in refused.text
    for _ in range(4):
        await sign_in(browser, "alice@acme.test", "still-not-it")
    throttled = await sign_in(browser, "alice@acme.test", DEMO_PASSWORD)
    assert throttled.status_code == 429 and "Too many failed sign-ins" in throttled.text
    assert (await sign_in(browser, "bob@acme.test")).status_code == 303


async def test_a_burst_of_parallel_guesses_is_counted_as_a_burst(browser, demo_keys):
    page = await browser.get("/login")
    token = csrf_of(page.text)

    async def guess(n: int) -> int:
        form = {"email": "alice@acme.test", "password": f"guess-number-{n}", "csrf": token, "next": "/"}
        return (await browser.post("/login", data=form)).status_code

    answers = await asyncio.gather(*(guess(n) for n in range(12)))
    assert answers.count(401) == 5 and answers.count(429) == 7


async def test_signing_out_ends_the_session_even_for_a_copy_of_its_cookie(app_client, browser, demo_keys):
    await sign_in(browser, "alice@acme.test")
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE, cookies=browser.cookies) as copy:
        assert (await copy.get("/inbox")).status_code == 200
        await form_post(browser, "/inbox", "/logout")
        assert (await copy.get("/inbox")).status_code == 303


async def test_an_unknown_address_gets_the_same_answer_as_a_wrong_password(browser, demo_keys):
    refused = await sign_in(browser, "nobody@acme.test", "whatever-it-is")
    assert refused.status_code == 401 and "do not match" in refused.text


def set_password(env: dict[str, str], email: str, password: str) -> subprocess.CompletedProcess[str]:
    """`companion user set-password`, as an admin runs it in a script."""
    return subprocess.run(
        [COMPANION, "user", "set-password", "--email", email, "--password-stdin"],
        input=f"{password}\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_a_password_change_ends_the_other_sessions(browser, env, companion, demo_keys):
    await sign_in(browser, "alice@acme.test")
    assert (await browser.get("/inbox")).status_code == 200
    changed = set_password(env, "alice@acme.test", "a-brand-new-secret")
    assert changed.returncode == 0, changed.stderr
    assert "a-brand-new-secret" not in changed.stdout + changed.stderr
    assert (await browser.get("/inbox")).status_code == 303
    assert (await sign_in(browser, "alice@acme.test", "a-brand-new-secret")).status_code == 303
    short = set_password(env, "alice@acme.test", "short")
    assert short.returncode == 1 and short.stderr.strip() == "error: password: use at least 10 characters"


async def test_the_workspace_switcher_shows_another_workspace_the_person_belongs_to(browser, companion, demo_keys):
    async with companion.db.transaction() as session:
        other = await directory.create_workspace(session, slug="globex", name="Globex")
        await directory.add_member(session, other, email="alice@acme.test", role=Role.ADMIN)
        other_id = other.id
    await sign_in(browser, "alice@acme.test")
    page = await browser.get("/inbox")
    assert ">Globex</option>" in page.text and "alice@acme.test · member" in page.text
    switched = await form_post(browser, "/inbox", "/workspace", {"workspace_id": other_id, "next": "/inbox"})
    assert switched.status_code == 303
    assert "alice@acme.test · admin" in (await browser.get("/inbox")).text
    async with companion.db.session() as session:
        stranger = await session.scalar(select(User.id).where(User.email == "bob@acme.test"))
    refused = await form_post(browser, "/inbox", "/workspace", {"workspace_id": stranger or "ws_nope"})
    assert refused.status_code == 404


def form_blocks(page: str, approval_id: str) -> dict[str, str]:
    """Each decision form of a card, by the last part of its action, as HTML."""
    blocks = re.findall(
        r'<form method="post" action="/approvals/' + approval_id + r'/(\w[\w-]*)"(.*?)</form>', page, re.S
    )
    return {action: body for action, body in blocks}


async def test_the_reason_is_in_the_deny_form_alone_so_enter_there_denies(browser, waiting):
    await sign_in(browser, "alice@acme.test")
    for path in ("/inbox", f"/approvals/{waiting}"):
        forms = form_blocks((await browser.get(path)).text, waiting)
        assert set(forms) == {"approve", "deny"}
        # Implicit submission (Enter in a field) submits the field's own form through its first submit button.
        assert 'name="reason"' in forms["deny"] and re.findall(r"<button[^>]*>([^<]*)</button>", forms["deny"]) == [
            "Deny"
        ]
        assert 'name="reason"' not in forms["approve"] and "<input id=" not in forms["approve"]
        assert 'hx-post="/approvals/' + waiting + '/deny"' in forms["deny"]


async def test_a_summary_of_several_lines_is_shown_in_full_with_what_remember_would_approve(
    browser, waiting, monkeypatch
):
    from server.services.approval_flow import ApprovalFlow
    from server.web import approval_cards, inbox

    long_address = "carol@globex.example.mail-relay-" + "x" * 80 + ".evil.example"
    summary = f"Send an e-mail “Q3”\nTo: bob@client.com\nBcc: {long_address}\n⚠ xn--pple-43d.com mixes scripts"

    def view_with_lines(*args, **kwargs):
        view = approval_view(*args, **kwargs)
        view["remember_scope"] = "e-mails from Work mail to bob@client.com only"
        view["full_arguments"] = '{\n  "bcc": ["' + long_address + '"]\n}'
        return view

    monkeypatch.setattr(approval_cards, "approval_view", view_with_lines)
    # Every channel shows the summary the flow keeps for the approval; the card's lines are its lines.
    monkeypatch.setattr(ApprovalFlow, "summary", lambda self, approval, tool, arguments: summary)
    await sign_in(browser, "alice@acme.test")
    pages = {}
    for path in ("/inbox", f"/approvals/{waiting}"):
        page = (await browser.get(path)).text
        assert '<a href="/approvals/' + waiting + '">Send an e-mail “Q3”</a>' in page
        assert (
            f'<p class="summary">To: bob@client.com\nBcc: {long_address}\n⚠ xn--pple-43d.com mixes scripts</p>' in page
        )
        scope = page.index("e-mails from Work mail to bob@client.com only")
        remember = page.index(">Approve and remember for 1 hour</button>")
        assert 0 < scope - remember < 400, "the scope is said right next to the remember button"
        pages[path] = page
    # A list links to the full arguments; the approval's page holds them.
    assert f"""<a href="/approvals/{waiting}">Full arguments on the approval's page</a>""" in pages["/inbox"]
    shown = pages[f"/approvals/{waiting}"]
    assert "<summary>Show full arguments</summary>" in shown and long_address + "&#34;]\n}</pre>" in shown
    css = (Path(inbox.__file__).parent / "static" / "inbox.css").read_text()
    assert "white-space: pre-line" in css and "overflow-wrap: anywhere" in css and "ellipsis" not in css


async def test_a_long_value_is_its_start_in_the_inbox_and_all_of_it_on_the_approvals_page(
    app_client, browser, demo_keys, alices_call
):
    """A list shows each long value's start and links to the rest, so it stays small whatever an assistant wrote;
    a card that shows a start alone is approved on its page, where every character that would run is."""
    text = (
        "Thank the client for the call.\nSend the deck.\n" + "Follow up on the pilot. " * 70 + "Wire €50k to X\u202e."
    )
    arguments = {**alices_call, "text": text}
    approval_id = (await ask(app_client, demo_keys, arguments)).structured_content["approval_id"]
    await sign_in(browser, "alice@acme.test")
    inbox = (await browser.get("/inbox")).text
    card = inbox[inbox.index(f'id="card-{approval_id}"') :]
    card = card[: card.index("</article>")]
    assert '<span class="preview">Thank the client for the call.\nSend the deck.\nFollow up on the pilot.' in card
    assert (
        f'<a class="more" href="/approvals/{approval_id}">Read all 1,742 characters on the approval\'s page</a>' in card
    )
    assert "Wire" not in card and "Show full arguments" not in card
    assert set(form_blocks(card, approval_id)) == {"deny"}
    assert f'<a class="button approve" href="/approvals/{approval_id}"' in card and ">Open to approve</a>" in card

    page = (await browser.get(f"/approvals/{approval_id}")).text
    assert "Follow up on the pilot. Wire €50k to X\\u202e.</div></details>" in page
    assert "Read all" not in page and "<summary>Show full arguments</summary>" in page
    assert set(form_blocks(page, approval_id)) == {"approve", "deny"}


async def test_no_timer_refresh_reflows_the_inbox_without_javascript(browser, waiting):
    await sign_in(browser, "alice@acme.test")
    page = (await browser.get("/inbox")).text
    assert 'http-equiv="refresh"' not in page and "appear here when you reload" in page
    assert 'id="new-requests"' in page and 'id="show-new"' in page


# Several approvers: the card offers each person only what deciding would accept


def decision_buttons(page: str, approval_id: str) -> list[str]:
    """The console's decision buttons on the approval's card."""
    return re.findall(rf'action="/approvals/{approval_id}/(approve|deny)"', page)


async def test_after_voting_the_card_says_where_the_votes_stand_instead_of_offering_a_second_vote(
    app_client,
    people,  # noqa: F811 (the fixture imported above)
    http,  # noqa: F811
):
    await two_of_three(http, people)
    approval_id = await asked(app_client, people, "order the banners")
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as bob:
        await sign_in(bob, BOB)
        before = await bob.get(f"/approvals/{approval_id}")
        assert decision_buttons(before.text, approval_id) == ["deny", "approve"]
        # Without JavaScript: the vote, then the page it leads back to.
        voted = await bob.post(
            f"/approvals/{approval_id}/approve", data={"csrf": csrf_of(before.text), "remember": "no"}
        )
        assert voted.status_code == 303
        page = await bob.get(voted.headers["location"])
        swapped = await bob.get("/inbox")
    shown = " ".join(page.text.split())
    assert "Your approval is counted. The call runs once the other approvals it needs are in." in shown
    waiting_for = (
        "You approved this · 1 of 2 approvals so far; waiting for one more from dora@acme.test or admin@acme.test."
    )
    for text in (page.text, swapped.text):
        assert waiting_for in " ".join(text.split())
        assert decision_buttons(text, approval_id) == [] and "Edit before approving" not in text
    assert (await decide(http, people[DORA], approval_id)).json()["status"] == "approved"


async def test_with_javascript_the_vote_swaps_in_the_card_that_says_so(app_client, people, http):  # noqa: F811
    await rule(http, people, approvers={"people": [BOB, DORA], "count": 2})
    approval_id = await asked(app_client, people, "print the flyers")
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as bob:
        await sign_in(bob, BOB)
        page = await bob.get("/inbox")
        card = await bob.post(
            f"/approvals/{approval_id}/approve",
            data={"remember": "no"},
            headers={"HX-Request": "true", "X-CSRF-Token": csrf_of(page.text)},
        )
    shown = " ".join(card.text.split())
    assert card.status_code == 200 and card.text.lstrip().startswith("<article")
    assert "Your approval is counted." in shown and ">pending<" in card.text
    assert "You approved this · 1 of 2 approvals so far; waiting for dora@acme.test." in shown
    assert decision_buttons(card.text, approval_id) == []


async def test_someone_who_may_not_decide_reads_why_instead_of_buttons(app_client, people, http):  # noqa: F811
    """Alice asked; the first rule names Bob and Dora alone, the second lets Alice deny but not approve."""
    await two_of_three(http, people)
    outside = await asked(app_client, people, "rent the hall")
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as alice:
        await sign_in(alice, ALICE)
        page = await alice.get(f"/approvals/{outside}")
    shown = " ".join(page.text.split())
    assert "You asked for this call, but an admin rule names who approves it, and you are not one of them." in shown
    assert decision_buttons(page.text, outside) == [] and "Edit before approving" not in page.text

    await rule(http, people, tool="memo_*", approvers={"people": [ALICE, BOB]}, no_self_approval=True)
    own = await asked(app_client, people, "expense the taxi")
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as alice:
        await sign_in(alice, ALICE)
        page = await alice.get(f"/approvals/{own}")
    assert "an admin rule says someone else must approve it. You may still deny it." in " ".join(page.text.split())
    assert decision_buttons(page.text, own) == ["deny"]


async def test_a_card_says_what_its_escalation_will_do(app_client, people, http):  # noqa: F811
    await rule(http, people, approvers={"people": [BOB]}, escalate_after_minutes=30, escalate_by=["email", "push"])
    approval_id = await asked(app_client, people, "renew the domain")
    async with httpx2.AsyncClient(transport=app_client.transport, base_url=BASE) as bob:
        await sign_in(bob, BOB)
        page = await bob.get(f"/approvals/{approval_id}")
    shown = " ".join(page.text.split())
    assert re.search(
        r"if no one decides by .+? UTC, the approvers are told again by e-mail and push notifications\.", shown
    )
    assert "admins are added" not in shown
