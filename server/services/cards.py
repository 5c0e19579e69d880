"""What a card says about an approval: the whole story of one call, as plain data any channel can show.

The inbox card and the approval page render it; a Slack message or a notification can take the same data. Beside
the one summary (``tools/summary.py``) a card says:

- who asked: the assistant and the person it acts for, when, and what the same key or OAuth grant asked in the hour
  before (to the person who asked, and to admins, who read the audit log anyway);
- every argument as a labelled field, in full (long text folded, one click away), with an id said by the name of
  what it stands for where the manifest says how (``shown_as``), and, for an update, the current value beside the
  new one where the manifest names a read that gives it (``current``);
- or, for a list of cards (``full=False``), long text as its preview alone, marked ``cut``: only the preview is
  escaped, so a list costs the same whatever an assistant wrote, and the whole text is on the approval's page;
- for a message, a preview as its recipient will see it: the headers and the body as text, never as HTML;
- why it asks, in plain words (``why_asked``).

Names and current values are read through the app's own read tools, as the person who asked, through the
connection the call uses, and only when their rules let that read run without asking: a card never shows more
than the asker may read, and shows the id when the read is refused or fails. These reads are the card's, not the
assistant's: they are not audited as calls nor counted against the key's rate, and the adapter's answer is kept
for ``cache_seconds``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from approvals import lifecycle
from approvals.audit import Event, Outcome
from approvals.rules import Effect
from server.services.asked_by import on_behalf_of
from server.services.tool_gateway import ToolGateway
from server.services.why_asked import Asking, RuleFacts, why_asked
from store.cache import SharedCache
from store.directory import member_principal
from store.models import Approval, AuditEntry, RuleRow, User, utcnow
from store.principal import Principal
from tools.errors import ToolError
from tools.manifest import ReadSpec
from tools.registry import RegisteredTool
from tools.summary import escape, headline, recipient

#: How long a card waits for one read before it shows the id instead.
READ_SECONDS = 5.0
#: What the same key asked before a call, looked back this far, at most this many.
EARLIER_WINDOW = timedelta(hours=1)
EARLIER_LIMIT = 5
#: Text past either of these is folded, its first part shown.
LONG_CHARACTERS = 280
LONG_LINES = 6
PREVIEW_CHARACTERS = 180
PREVIEW_LINES = 3
_LINE_BREAK = re.compile(r"\r?\n")
#: Where the summary's own list of argument values begins: the card's fields say them instead.
SUMMARY_DETAILS = ("Details:", "Also set (see the full arguments): ")
#: Words a label spells otherwise than its argument's name does.
WORDS = {"id": "ID", "url": "URL", "html": "HTML", "ts": "timestamp", "cc": "Cc", "bcc": "Bcc"}
OUTCOMES: dict[str, str] = {
    Outcome.SUCCEEDED: "ran",
    Outcome.FAILED: "failed",
    Outcome.REFUSED: "was refused",
    Outcome.INVALID: "had invalid arguments",
    Outcome.PENDING: "asked for approval",
}


@dataclass(frozen=True)
class Shown:
    """A value as a person reads it: escaped (nothing invisible, no line it did not have), and in full.

    A list keeps its items apart, so ``["a, b"]`` never reads as ``["a", "b"]``. Long text has a ``preview``, its
    first lines, shown before the person unfolds the rest; ``lines`` says its line breaks are kept. A ``cut`` value
    is not in full: its ``text`` is the preview alone, and it must be said to be longer.
    """

    text: str
    items: tuple[str, ...] | None = None
    lines: bool = False
    preview: str | None = None
    length: int = 0
    cut: bool = False


@dataclass(frozen=True)
class ArgumentField:
    """One argument, labelled: its value, the name of what an id stands for, and what an update changes."""

    name: str
    label: str
    value: Shown
    # What the id names, read from the app as the asker (a meeting's title); None: the id is all there is.
    named: str | None = None
    # What the field is now, for an update whose manifest says where to read it; None when not known.
    current: Shown | None = None

    @property
    def unchanged(self) -> bool:
        # Two previews that match say nothing of the rest.
        return self.current is not None and not self.cut and self.current.text == self.value.text

    @property
    def cut(self) -> bool:
        return self.value.cut or (self.current is not None and self.current.cut)


@dataclass(frozen=True)
class MessagePreview:
    """A message as its recipients will see it: who it is from and to, the subject, and the body as text."""

    kind: Literal["email", "chat"]
    sender: str | None
    # ("To", ("bob@client.com",)), ("Bcc", …): every recipient, in full.
    headers: tuple[tuple[str, tuple[str, ...]], ...]
    subject: str | None
    body: Shown | None
    # Said when the body shown is not plain text: only an HTML version was given, shown as its source.
    body_note: str | None = None


@dataclass(frozen=True)
class EarlierCall:
    """One call the same assistant connection made shortly before, in a line."""

    at: datetime
    text: str


@dataclass(frozen=True)
class Card:
    """One approval's story, every text in it escaped for plain text (an HTML channel escapes it again)."""

    approval_id: str
    asked_by: str
    asked_at: datetime
    # The summary's first line, with ids said by name where the manifest says how.
    headline: str
    # The summary's other lines before its list of values: the connection, the sender, the risk, every
    # recipient and any warning, as the one renderer wrote them.
    facts: tuple[str, ...]
    fields: tuple[ArgumentField, ...]
    message: MessagePreview | None
    why: tuple[str, ...]
    earlier: tuple[EarlierCall, ...] = field(default=())

    @property
    def cut(self) -> bool:
        """Whether some value is shown as its preview alone: this card does not show all that would run."""
        body = self.message.body if self.message else None
        return any(f.cut for f in self.fields) or (body is not None and body.cut)


class Cards:
    """Makes cards, reading names and current values through the gateway as each call's asker."""

    def __init__(self, gateway: ToolGateway, *, cache_seconds: float = 0) -> None:
        self.gateway = gateway
        self._answers: SharedCache[tuple[str, ...], dict[str, Any] | None] = SharedCache(cache_seconds)

    async def cards(
        self,
        viewer: Principal,
        approvals: Sequence[Approval],
        *,
        full: bool = True,
        opened: Mapping[str, dict[str, Any]] | None = None,
    ) -> dict[str, Card]:
        """A card for each approval, by id, as ``viewer`` (who may see them all) reads it; ``full`` False cuts long
        text to its preview, for a list of cards. ``opened``: arguments the caller has unsealed already, by approval
        id, so a list of large calls opens each once."""
        if not approvals:
            return {}
        async with self.gateway.db.session() as session:
            askers = await _people(session, {a.user_id for a in approvals})
            principals = {
                (a.workspace_id, a.user_id): await member_principal(
                    session, a.workspace_id, a.user_id, acting_as="card"
                )
                for a in {(a.workspace_id, a.user_id): a for a in approvals}.values()
            }
            rules = await _rules(session, {str(i) for a in approvals for i in a.rule_ids or []})
            earlier = {
                a.id: await self._earlier(session, viewer, a)
                for a in approvals
                if a.api_key_id and (viewer.is_admin or a.user_id == viewer.user_id)
            }
        made = await asyncio.gather(
            *(
                self._card(
                    viewer,
                    a,
                    (opened or {}).get(a.id),
                    askers.get(a.user_id),
                    principals.get((a.workspace_id, a.user_id)),
                    rules,
                    full,
                )
                for a in approvals
            )
        )
        return {card.approval_id: replace(card, earlier=earlier.get(card.approval_id, ())) for card in made}

    async def _card(
        self,
        viewer: Principal,
        approval: Approval,
        opened: dict[str, Any] | None,
        asker: tuple[str, str] | None,
        principal: Principal | None,
        rules: Mapping[str, RuleFacts],
        full: bool,
    ) -> Card:
        tool = self.gateway.registry.tools.get(approval.tool)
        arguments = opened if opened is not None else lifecycle.arguments_of(self.gateway.box, approval)
        yours = approval.user_id == viewer.user_id
        name, email = asker or ("", "")
        person = "you" if yours else name or email or "someone who left"
        summary = self.gateway.flow.summary(approval, tool, arguments) if tool else escape(approval.tool)
        first, *rest = summary.split("\n")
        facts = tuple(_facts(rest))
        asking = Asking(
            risk=approval.risk,
            recipients=tool.recipients(arguments) if tool else (),
            mail=any(p.split(".")[0] in ("to", "cc", "bcc", "reply_to") for p in tool.egress) if tool else False,
            own_domain=email.rpartition("@")[2].lower(),
            yours=yours,
            asker=escape(name or email),
            out_of_band=approval.require_out_of_band,
        )
        names: dict[str, str] = {}
        current: dict[str, Any] = {}
        message: MessagePreview | None = None
        in_message: set[str] = set()
        if tool is not None:
            # An app removed since the call was asked: its arguments are still shown, by their names.
            names, current = await self._reads(principal, approval, tool, arguments)
            message, in_message = _message(tool, arguments, approval.account, full)
        fields = tuple(
            ArgumentField(
                n,
                _label(n, _schema_of(tool, n) if tool else {}, tool is not None and n in tool.spec.shown_as),
                _shown(arguments[n], full),
                escape(names[n]) if n in names else None,
                _shown(current[n], full) if n in current else None,
            )
            for n in (_ordered(tool, arguments) if tool else sorted(arguments))
            if n not in in_message
        )
        return Card(
            approval_id=approval.id,
            asked_by=on_behalf_of(approval.assistant, person),
            asked_at=approval.created_at,
            headline=headline(tool, arguments, names) if tool and names else first,
            facts=facts,
            fields=fields,
            message=message,
            why=why_asked(list(approval.reasons or []), asking, rules),
        )

    async def _reads(
        self, principal: Principal | None, approval: Approval, tool: RegisteredTool, arguments: dict[str, Any]
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """The names the ids of this call stand for, and the current values of what it updates, as far as the
        asker may read them."""
        if principal is None:
            return {}, {}
        named = [(n, spec) for n, spec in tool.spec.shown_as.items() if isinstance(arguments.get(n), str)]
        spec = tool.spec.current
        key = arguments.get(spec.key) if spec is not None else None
        found = await asyncio.gather(
            *(self._object(principal, approval.connection_id, s, arguments[n]) for n, s in named),
            *([self._object(principal, approval.connection_id, spec, key)] if spec and isinstance(key, str) else []),
        )
        names = {}
        for (n, s), answer in zip(named, found, strict=False):
            value = answer.get(s.field) if answer else None
            if isinstance(value, str) and value.strip():
                names[n] = value
        current: dict[str, Any] = {}
        if spec is not None and len(found) > len(named) and found[-1] is not None:
            now = found[-1]
            current = {n: now[f] for n, f in spec.fields.items() if n in arguments and f in now}
        return names, current

    async def _object(
        self, principal: Principal, connection_id: str, spec: ReadSpec, value: str
    ) -> dict[str, Any] | None:
        """The object ``value`` names, read with the read tool ``spec`` names, as ``principal`` through the
        connection the call uses; None when it is not there, or the read is not theirs to run without asking."""
        bound = next(
            (
                b
                for b in await self.gateway.tools_for(principal)
                if b.tool.name == spec.tool and b.connection.id == connection_id
            ),
            None,
        )
        if bound is None or bound.tool.resolvers:
            return None
        asked = {**spec.arguments, **({spec.argument: value} if spec.argument else {})}
        try:
            asked = bound.tool.canonicalize(asked)
            parsed = bound.tool.parse_arguments(asked)
        except ToolError:
            return None
        decision = await self.gateway.decide(principal, bound, asked)
        if decision.effect is not Effect.ALLOW or decision.caps:
            # A read the asker's rules would ask about (or count) is not run for a card.
            return None

        async def read() -> dict[str, Any] | None:
            try:
                async with asyncio.timeout(READ_SECONDS):
                    result = await self.gateway.run_adapter(principal, bound.tool, bound.connection, parsed)
            except TimeoutError:
                return None
            return result.data if result.ok and isinstance(result.data, dict) else None

        key = (principal.workspace_id, principal.user_id, connection_id, spec.tool, json.dumps(asked, sort_keys=True))
        answer = await self._answers.get(key, read, keep=lambda kept: kept is not None)
        if answer is None or spec.items is None:
            return answer
        listed = answer.get(spec.items)
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, dict) and any(_same(item.get(m), value) for m in spec.match):
                return item
        return None

    async def _earlier(self, session: AsyncSession, viewer: Principal, approval: Approval) -> tuple[EarlierCall, ...]:
        """What the same key or OAuth grant asked in the hour before this call, newest first.

        "Before" is by the audit log's order: one writer appends a process's entries in the order their calls
        ended, so the calls before this one are the entries before its own. Until its own is written, the time
        the approval was made is the bound.
        """
        same_key = (
            AuditEntry.workspace_id == approval.workspace_id,
            AuditEntry.api_key_id == approval.api_key_id,
            AuditEntry.event == Event.CALL.value,
        )
        own = await session.scalar(
            select(func.min(AuditEntry.id)).where(*same_key, AuditEntry.approval_id == approval.id)
        )
        rows = list(
            await session.execute(
                select(AuditEntry.at, AuditEntry.tool, AuditEntry.outcome, AuditEntry.approval_id)
                .where(
                    *same_key,
                    AuditEntry.at >= approval.created_at - EARLIER_WINDOW,
                    AuditEntry.id < own if own is not None else AuditEntry.at <= approval.created_at,
                    or_(AuditEntry.approval_id.is_(None), AuditEntry.approval_id != approval.id),
                )
                .order_by(AuditEntry.id.desc())
                .limit(EARLIER_LIMIT)
            )
        )
        asked = {i for _, _, _, i in rows if i}
        headlines: dict[str, str] = {}
        if asked:
            # The columns a headline needs, not each call's sealed arguments, which may be megabytes.
            needed = load_only(Approval.id, Approval.user_id, Approval.admin_may_approve, Approval.sealed_summary)
            for other in await session.scalars(select(Approval).options(needed).where(Approval.id.in_(asked))):
                # Another call's own words only to whoever may see that call.
                if other.user_id == viewer.user_id or (viewer.is_admin and other.admin_may_approve):
                    summary = lifecycle.summary_of(self.gateway.box, other)
                    if summary:
                        headlines[other.id] = summary.split("\n", 1)[0]
        lines = []
        for at, name, outcome, approval_id in rows:
            tool = self.gateway.registry.tools.get(name.split("__")[0])
            what = headlines.get(approval_id or "") or (tool.spec.title if tool else escape(name))
            lines.append(EarlierCall(at, f"{what} · {OUTCOMES.get(outcome, escape(outcome))}"))
        return tuple(lines)


async def _people(session: AsyncSession, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    rows = await session.execute(select(User.id, User.name, User.email).where(User.id.in_(set(ids))))
    return {uid: (name, email) for uid, name, email in rows}


async def _rules(session: AsyncSession, ids: set[str]) -> dict[str, RuleFacts]:
    if not ids:
        return {}
    rows = await session.scalars(select(RuleRow).where(RuleRow.id.in_(ids)))
    return {r.id: RuleFacts(r.id, r.scope, str(r.definition.get("description") or "")) for r in rows}


def _facts(lines: list[str]) -> Iterable[str]:
    for line in lines:
        if line.startswith(SUMMARY_DETAILS):
            return
        yield line


def _same(found: Any, value: str) -> bool:
    # Keys are matched as the provider matches them (Linear's team keys ignore case); ids are exact either way.
    return isinstance(found, str) and found.casefold() == value.casefold()


def _schema_of(tool: RegisteredTool, name: str) -> dict[str, Any]:
    schema = tool.spec.input_schema.get("properties", {}).get(name)
    return schema if isinstance(schema, dict) else {}


def _ordered(tool: RegisteredTool, arguments: Mapping[str, Any]) -> list[str]:
    """The arguments in the manifest's order: those it shows first, then the schema's, then any other."""
    listed = [*(tool.spec.shown or []), *tool.spec.input_schema.get("properties", {})]
    return [*dict.fromkeys(n for n in listed if n in arguments), *sorted(n for n in arguments if n not in listed)]


def _label(name: str, schema: Mapping[str, Any], named: bool) -> str:
    """The schema's title, or the argument's name in words ("assignee_email": "Assignee email"); an id said by its
    name drops the "ID" ("meeting_id": "Meeting")."""
    title = schema.get("title")
    if isinstance(title, str) and title.strip():
        return escape(title.strip())
    words = [w.lower() for w in re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").split()]
    if named and len(words) > 1 and words[-1] == "id":
        words.pop()
    text = " ".join(WORDS.get(w, w) for w in words) or name
    return escape(text[:1].upper() + text[1:])


def _shown(value: Any, full: bool = True) -> Shown:
    if isinstance(value, str):
        return _text(value, full=full)
    if isinstance(value, bool):
        return Shown("yes" if value else "no")
    if value is None:
        return Shown("none")
    if isinstance(value, int | float):
        return Shown(str(value))
    if isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value):
        # An item is shown whole on one line: a line break in it is an escape, never a break that reads as a space.
        items = tuple(escape(v) if isinstance(v, str) else _shown(v).text for v in value)
        return Shown(", ".join(items) if items else "none", items=items)
    # Anything deeper reads as JSON in ASCII, so nothing invisible survives.
    text = json.dumps(value, ensure_ascii=True, indent=2).replace("\x7f", "\\u007f")
    return _text(text, escaped=True, full=full)


def _text(value: str, *, escaped: bool = False, full: bool = True) -> Shown:
    """Text line by line, each line escaped (unless it already is: JSON in ASCII), folded when long; not ``full``,
    long text is its preview alone, and nothing past the preview is escaped."""
    show = (lambda line: line) if escaped else escape
    if len(value) <= LONG_CHARACTERS:
        lines = _LINE_BREAK.split(value)
        if len(lines) <= LONG_LINES:
            return Shown("\n".join(show(line) for line in lines), lines=len(lines) > 1, length=len(value))
    # Enough of the start for the preview's lines, whatever "\r\n" the split drops.
    head = "\n".join(_LINE_BREAK.split(value[: 2 * PREVIEW_CHARACTERS])[:PREVIEW_LINES])[:PREVIEW_CHARACTERS]
    preview = "\n".join(show(line) for line in head.split("\n")) + "…"
    multiline = "\n" in value
    if not full:
        return Shown(preview, lines=multiline, preview=preview, length=len(value), cut=True)
    text = "\n".join(show(line) for line in _LINE_BREAK.split(value))
    return Shown(text, lines=multiline, preview=preview, length=len(value))


def _message(
    tool: RegisteredTool, arguments: Mapping[str, Any], sender: str | None, full: bool = True
) -> tuple[MessagePreview | None, set[str]]:
    """A preview of an e-mail (recipients in ``to`` and a subject) or of a chat message (a ``channel`` it goes to
    and its ``text``), and the arguments it shows, which the fields then leave out; (None, set()) for anything else.
    """
    egress = {path.split(".")[0] for path in tool.egress}
    sender = escape(sender) if sender else None
    if "to" in egress and "subject" in _properties(tool):
        headers = tuple(
            (label, tuple(recipient(v) for v in values))
            for label, name in (("To", "to"), ("Cc", "cc"), ("Bcc", "bcc"), ("Reply-To", "reply_to"))
            if (values := _strings(arguments.get(name)))
        )
        text, html = arguments.get("body_text"), arguments.get("body_html")
        shown = {"to", "cc", "bcc", "reply_to", "subject"}
        body, note = None, None
        if isinstance(text, str) and text:
            body = _text(text, full=full)
            shown.add("body_text")
        elif isinstance(html, str) and html:
            body = _text(html, full=full)
            note = "Only an HTML version was given: it is shown as its source, not as a page."
            shown.add("body_html")
        subject = arguments.get("subject")
        preview = MessagePreview(
            "email", sender, headers, escape(subject) if isinstance(subject, str) else None, body, note
        )
        return preview, shown
    if "channel" in egress and isinstance(arguments.get("text"), str):
        channel = tuple(recipient(v) for v in _strings(arguments.get("channel")))
        return MessagePreview("chat", sender, (("Channel", channel),), None, _text(arguments["text"], full=full)), {
            "channel",
            "text",
        }
    return None, set()


def _properties(tool: RegisteredTool) -> dict[str, Any]:
    properties = tool.spec.input_schema.get("properties", {})
    return properties if isinstance(properties, dict) else {}


def _strings(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value] if value is not None else []
    return [v for v in values if isinstance(v, str)]


def ago(moment: datetime, now: datetime | None = None) -> str:
    """How long ago, in the words a card uses: "just now", "4 min ago", "2 h ago", "3 days ago"."""
    seconds = int(((now or utcnow()) - moment).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 5400:
        return f"{round(seconds / 60)} min ago"
    if seconds < 86400 * 2:
        return f"{round(seconds / 3600)} h ago"
    return f"{seconds // 86400} days ago"
