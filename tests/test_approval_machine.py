"""The approval machine as Hypothesis plays it: every way to reach an approval, in any order.

An approval is the unit of execution. Whatever interleaving of the entry
points below Hypothesis tries (the assistant's retry, ``companion_get_approval``,
an in-chat answer, a person's decision over the API with or without
"remember", a person changing the arguments before approving, a rule that
needs several approvers and their votes, a rule added later, expiry, a crash
while running and the person's choice after it), each approval runs its
adapter at most once, with the arguments it holds when it runs (a person's
changes, if any), and once it has run, every path that reaches it returns the
stored result.

The machine runs in a worker thread and performs each step on the test's
event loop, so the real gateway, flow and database are what it exercises.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any, Literal

import anyio
import anyio.from_thread
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import delete, select, update

from approvals import lifecycle
from approvals.rules import Rule
from server.services.approval_edit import edit_elsewhere
from server.services.approval_flow import DecisionRefused, decide_elsewhere, resolve_elsewhere
from server.services.confirmation import Answer, Channel
from store.connections import add_connection
from store.directory import user_by_email, workspace_by_slug
from store.keys import authenticate, create_key
from store.models import Approval, ApprovalStatus, ConnectionScope, KeyKind, RuleRow, utcnow
from tests.apps import memo

pytestmark = pytest.mark.anyio

TEXTS = ["pay Ann", "pay Bo", "pay Cy"]
# What a person may change a call's text to: another call the assistant may also ask, or one it never asks.
EDITS = [*TEXTS, "pay Dee"]
# Who votes where a rule names approvers: Bob, whose personal connection it is, and the two the rule names.
VOTERS = ("person", "admin", "alice")
# Approvals that answer a repeat of their call (within the expiry window): it never runs beside them.
ANSWERING = (
    ApprovalStatus.PENDING, ApprovalStatus.APPROVED, ApprovalStatus.EXECUTING, ApprovalStatus.SUCCEEDED,
    ApprovalStatus.FAILED, ApprovalStatus.DENIED, ApprovalStatus.OUTCOME_UNKNOWN,
)  # fmt: skip


async def _people(companion, demo_keys) -> tuple[str, Any, Any, Any, Any]:
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        user = await user_by_email(session, "bob@acme.test")
        await add_connection(
            session, companion.box, app="memo", scope=ConnectionScope.PERSONAL, workspace_id=None,
            user_id=user.id, label="Notes", credentials={"api_key": "memo-secret"},
        )  # fmt: skip
        agent = await create_key(session, workspace_id=workspace.id, user_id=user.id, person_facing=True)
        person = await create_key(session, workspace_id=workspace.id, user_id=user.id, kind=KeyKind.USER)
    async with companion.db.session() as session:
        return (
            agent.token,
            await authenticate(session, agent.token, touch_after=timedelta(hours=1)),
            await authenticate(session, person.token, touch_after=timedelta(hours=1)),
            await authenticate(session, demo_keys.user_keys["admin@acme.test"], touch_after=timedelta(hours=1)),
            await authenticate(session, demo_keys.user_keys["alice@acme.test"], touch_after=timedelta(hours=1)),
        )


class ApprovalMachine(RuleBasedStateMachine):
    companion: Any
    agent: Any
    agent_token: str
    person: Any
    admin: Any
    alice: Any

    def __init__(self) -> None:
        super().__init__()
        self.texts = TEXTS
        self.nonces: dict[str, str] = {}
        self.first_run = len(memo.RUNS)
        self.first_call = len(memo.CALLS)
        self.results: dict[str, dict[str, Any]] = {}

    async def _call(self, *call: Any) -> Any:
        """A call as the server takes one: the key resolved afresh, as each request resolves it."""
        principal = await self.companion.principal_for(self.agent_token)
        return await self.companion.gateway.call(principal, *call)

    def step(self, work: Any) -> Any:
        return anyio.from_thread.run(work)

    async def _approval_of(self, text: str) -> Approval | None:
        async with self.companion.db.session() as session:
            return await session.scalar(
                select(Approval)
                .where(Approval.api_key_id == self.agent.key_id, Approval.tool == "memo_add_note")
                # A call a person changed is still found by what the assistant asked.
                .where((Approval.args_digest == _digest(text)) | (Approval.original_digest == _digest(text)))
                .order_by(Approval.created_at.desc())
                .limit(1)
            )

    def _seen(self, result: Any) -> None:
        """Every answer carrying an approval's result must carry the one it stored."""
        data = result.data if result.ok else None
        if not data:
            return
        approval_id = data.get("approval_id")
        output = data.get("result") if "result" in data else None
        if approval_id and output:
            assert self.results.setdefault(approval_id, output) == output

    @rule(index=st.integers(0, 2))
    def retry(self, index: int) -> None:
        """The assistant calls (again), with no way to ask the person in the chat."""
        before = self.step(lambda: self._approval_of(self.texts[index]))
        ran_before = len(memo.RUNS)
        result = self.step(lambda: self._call("memo_add_note", {"text": self.texts[index]}))
        if before is not None and before.status in ANSWERING and not lifecycle.is_expired(before):
            # The call has an approval that answers it: whatever a rule now says, it runs through that one.
            assert None not in memo.RUNS[ran_before:], f"ran beside its approval {before.id} ({before.status})"
        approval = self.step(lambda: self._approval_of(self.texts[index]))
        if approval is not None and approval.status is ApprovalStatus.SUCCEEDED and result.ok and result.data:
            stored = self.results.setdefault(approval.id, result.data)
            assert result.data == stored, "a repeat of a call that ran returns what it returned"

    @rule(index=st.integers(0, 2))
    def prompt_in_chat(self, index: int) -> None:
        channel = Channel(form=True)
        result = self.step(lambda: self._call("memo_add_note", {"text": self.texts[index]}, channel))
        if result.prompt is not None:
            self.nonces[self.texts[index]] = result.prompt.nonce

    @rule(index=st.integers(0, 2), approve=st.booleans(), remember=st.sampled_from(["no", "1h", "30d"]))
    def answer_in_chat(self, index: int, approve: bool, remember: str) -> None:
        approval = self.step(lambda: self._approval_of(self.texts[index]))
        if approval is None:
            return
        nonce = self.nonces.get(self.texts[index], "stale")
        decision: Literal["approve", "deny"] = "approve" if approve else "deny"
        answer = Answer(approval.id, nonce, "form", "accept", decision=decision, remember=remember)
        self.step(lambda: self._call("memo_add_note", {"text": self.texts[index]}, Channel(form=True, answer=answer)))

    @rule(index=st.integers(0, 2))
    def get_approval(self, index: int) -> None:
        approval = self.step(lambda: self._approval_of(self.texts[index]))
        if approval is None:
            return
        result = self.step(lambda: self._call("companion_get_approval", {"approval_id": approval.id}))
        self._seen(result)

    @rule(index=st.integers(0, 2), approve=st.booleans(), remember=st.sampled_from([None, "1h", "30d"]))
    def decide_over_the_api(self, index: int, approve: bool, remember: str | None) -> None:
        approval = self.step(lambda: self._approval_of(self.texts[index]))
        if approval is None:
            return
        flow, tools = self.companion.gateway.flow, self.companion.registry.tools

        async def decide() -> None:
            with contextlib.suppress(DecisionRefused):
                await decide_elsewhere(
                    flow, tools, self.person, approval.id, approve=approve, via="api", remember=remember
                )

        self.step(decide)

    @rule(index=st.integers(0, 2), to=st.sampled_from(EDITS))
    def edit_over_the_api(self, index: int, to: str) -> None:
        """The person changes the call's text, then approves what they changed."""
        approval = self.step(lambda: self._approval_of(self.texts[index]))
        if approval is None:
            return
        flow, tools = self.companion.gateway.flow, self.companion.registry.tools

        async def edit() -> None:
            with contextlib.suppress(DecisionRefused):
                await edit_elsewhere(flow, tools, self.person, approval.id, {"text": to}, via="api")

        self.step(edit)

    @rule(index=st.integers(0, 2), to=st.sampled_from(EDITS))
    def edit_then_retry(self, index: int, to: str) -> None:
        """The person changes the call and approves it, and the assistant's waiting call asks again at once."""
        self.edit_over_the_api(index, to)
        self.retry(index)

    @initialize(from_the_start=st.sampled_from([False, False, False, True]))
    def perhaps_several_approvers(self, from_the_start: bool) -> None:
        """In a quarter of the examples every call needs several approvers from the first (so votes are many); in
        the others a rule may come later (so a person's changes, which one approver alone cannot make, are too)."""
        if from_the_start:
            self.require_several_approvers()

    @rule()
    def require_several_approvers(self) -> None:
        """An admin rule: calls now need the admin's or Alice's approval, beside Bob's own (his connection)."""
        rule_ = Rule.model_validate(
            {
                "effect": "ask", "scope": "workspace", "app": "memo", "tool": "memo_add_note",
                "approvers": {"people": ["admin@acme.test", "alice@acme.test"], "count": 1},
            }
        )  # fmt: skip

        async def add() -> None:
            async with self.companion.db.transaction() as session:
                await self.companion.gateway.rulebook.create(session, self.admin, rule_)

        self.step(add)

    @rule(index=st.integers(0, 2), who=st.sampled_from(VOTERS), approve=st.booleans())
    def vote(self, index: int, who: str, approve: bool) -> None:
        approval = self.step(lambda: self._approval_of(self.texts[index]))
        if approval is None:
            return
        flow, tools = self.companion.gateway.flow, self.companion.registry.tools
        voter = {"person": self.person, "admin": self.admin, "alice": self.alice}[who]

        async def decide() -> None:
            with contextlib.suppress(DecisionRefused):
                await decide_elsewhere(flow, tools, voter, approval.id, approve=approve, via="api")

        self.step(decide)

    @rule()
    def allow_by_rule(self) -> None:
        rule_ = Rule(effect="allow", scope="user", app="memo", tool="memo_add_note")

        async def add() -> None:
            async with self.companion.db.transaction() as session:
                await self.companion.gateway.rulebook.create(session, self.person, rule_)

        self.step(add)

    @rule(index=st.integers(0, 2))
    def expire(self, index: int) -> None:
        async def now_past() -> None:
            async with self.companion.db.transaction() as session:
                await session.execute(
                    update(Approval)
                    .where(Approval.api_key_id == self.agent.key_id, Approval.args_digest == _digest(self.texts[index]))
                    .values(expires_at=utcnow() - timedelta(seconds=1))
                )

        self.step(now_past)

    @rule(index=st.integers(0, 2))
    def crash_while_running(self, index: int) -> None:
        """A replica claims the approved call and dies before the adapter returns anything."""

        async def crash() -> None:
            approval = await self._approval_of(self.texts[index])
            if approval is None or approval.status is not ApprovalStatus.APPROVED:
                return
            async with self.companion.db.transaction() as session:
                if await lifecycle.claim(session, approval.id, lease=timedelta(seconds=-1)):
                    await lifecycle.expire_due(session, workspace_id=approval.workspace_id)

        self.step(crash)

    @rule(index=st.integers(0, 2), run_again=st.booleans())
    def settle_the_unknown(self, index: int, run_again: bool) -> None:
        async def settle() -> None:
            approval = await self._approval_of(self.texts[index])
            if approval is None or approval.status is not ApprovalStatus.OUTCOME_UNKNOWN:
                return
            await resolve_elsewhere(
                self.companion.gateway.flow, self.person, approval.id, run_again=run_again, via="api"
            )

        self.step(settle)

    def teardown(self) -> None:
        # Each example starts afresh: no rules but the manifest's defaults, and no approvals, so a replayed
        # example behaves as it did the first time.
        async def forget_rules() -> None:
            async with self.companion.db.transaction() as session:
                await session.execute(delete(RuleRow))
                await session.execute(delete(Approval))

        self.step(forget_rules)

    @invariant()
    def each_approval_ran_its_adapter_at_most_once(self) -> None:
        ran = [approval_id for approval_id in memo.RUNS[self.first_run :] if approval_id is not None]
        assert len(ran) == len(set(ran)), f"an approval ran twice: {ran}"

    @invariant()
    def each_run_ran_the_arguments_its_approval_holds(self) -> None:
        """What ran under an approval is what it holds: the assistant's arguments, or a person's changes."""
        runs = list(zip(memo.CALLS[self.first_call :], memo.RUNS[self.first_run :], strict=True))

        async def held() -> dict[str, dict[str, Any]]:
            async with self.companion.db.session() as session:
                rows = await session.scalars(select(Approval).where(Approval.id.in_([a for _, a in runs if a])))
                return {a.id: lifecycle.arguments_of(self.companion.box, a) for a in rows}

        arguments = self.step(held)
        for (_, _, ran), approval_id in runs:
            if approval_id is not None:
                assert ran == arguments[approval_id], f"{approval_id} ran {ran}, not {arguments[approval_id]}"

    @invariant()
    def nothing_ran_under_an_approval_no_one_approved(self) -> None:
        async def statuses() -> dict[str, ApprovalStatus]:
            async with self.companion.db.session() as session:
                rows = await session.execute(select(Approval.id, Approval.status))
                return {approval_id: status for approval_id, status in rows}

        known = self.step(statuses)
        for approval_id in filter(None, memo.RUNS[self.first_run :]):
            assert known[approval_id] in (
                ApprovalStatus.SUCCEEDED, ApprovalStatus.FAILED, ApprovalStatus.EXECUTING,
                ApprovalStatus.OUTCOME_UNKNOWN,
            ), f"{approval_id} ran but is {known[approval_id]}"  # fmt: skip


def _digest(text: str) -> str:
    from approvals.digest import arguments_digest

    return arguments_digest({"text": text})


@pytest.mark.settings(approval_wait_seconds=0)
async def test_every_path_to_an_approval_runs_it_at_most_once(companion, demo_keys) -> None:
    ApprovalMachine.companion = companion
    (
        ApprovalMachine.agent_token,
        ApprovalMachine.agent,
        ApprovalMachine.person,
        ApprovalMachine.admin,
        ApprovalMachine.alice,
    ) = await _people(companion, demo_keys)
    memo.RUNS.clear()
    run = settings(max_examples=100, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck))
    await anyio.to_thread.run_sync(lambda: run_state_machine_as_test(ApprovalMachine, settings=run))
    assert any(memo.RUNS), "the machine never ran a call under an approval: it proved nothing"


def _play(machine: ApprovalMachine, *steps: Any) -> None:
    """Take these steps in order, checking every invariant after each, as Hypothesis does."""
    for step in steps:
        step(machine)
        machine.each_approval_ran_its_adapter_at_most_once()
        machine.each_run_ran_the_arguments_its_approval_holds()
        machine.nothing_ran_under_an_approval_no_one_approved()
    machine.teardown()


# Paths the random walk reaches only now and then, taken every time: a changed call run by the assistant's retry
# and again by companion_get_approval; a call changed into another the assistant also asked; and votes, one
# refused as a second, before the owner's completes the approval.
PLAYED = {
    "edited": (
        lambda m: m.retry(0), lambda m: m.edit_then_retry(0, "pay Dee"), lambda m: m.retry(0),
        lambda m: m.get_approval(0), lambda m: m.edit_over_the_api(0, "pay Cy"),
    ),
    "edited into another call": (
        lambda m: m.retry(0), lambda m: m.retry(1), lambda m: m.edit_over_the_api(0, "pay Bo"),
        lambda m: m.retry(1), lambda m: m.retry(0), lambda m: m.retry(1),
        lambda m: m.decide_over_the_api(1, True, None), lambda m: m.retry(1), lambda m: m.retry(0),
    ),
    "votes": (
        lambda m: m.require_several_approvers(), lambda m: m.retry(2), lambda m: m.vote(2, "admin", True),
        lambda m: m.vote(2, "admin", True), lambda m: m.edit_over_the_api(2, "pay Dee"), lambda m: m.retry(2),
        lambda m: m.vote(2, "person", True), lambda m: m.retry(2), lambda m: m.vote(2, "alice", False),
        lambda m: m.retry(2),
    ),
}  # fmt: skip
RAN = {"edited": ["pay Dee"], "edited into another call": ["pay Bo", "pay Bo"], "votes": ["pay Cy"]}


@pytest.mark.settings(approval_wait_seconds=0)
@pytest.mark.parametrize("path", PLAYED)
async def test_the_paths_of_edits_and_votes_keep_every_promise(companion, demo_keys, path: str) -> None:
    machine = ApprovalMachine
    machine.companion = companion
    machine.agent_token, machine.agent, machine.person, machine.admin, machine.alice = await _people(
        companion, demo_keys
    )
    memo.RUNS.clear()
    played = ApprovalMachine()
    await anyio.to_thread.run_sync(lambda: _play(played, *PLAYED[path]))
    assert len([approval_id for approval_id in memo.RUNS if approval_id]) == len(RAN[path]), memo.RUNS
    texts = [arguments["text"] for name, _, arguments in memo.CALLS[played.first_call :] if name == "add_note"]
    assert texts == RAN[path]
