"""What the rules would decide: for one call now (explain), and for recorded calls under other rules (replay).

Both decide with the same compiled index the gateway uses, so an answer here
is the answer a real call gets. The REST API, the CLI and the web console
shape these answers for their own readers.

Explain checks the arguments it is given against the tool's input schema
first, as a real call is checked: what reaches the rule engine is what a call
could carry, and a bad argument is named.

Replay uses the arguments only of the viewer's own calls. A what-if is free
to ask (nothing is saved, nothing is audited), so deciding someone else's
recorded call on its arguments would let an admin read them one guess at a
time: propose ``body matches "4.*"``, see whether the decision moves, try the
next digit. Another person's call is therefore decided without its arguments
(they are not even decrypted), and where a rule of either set would look at
them, the call is not replayed but counted as ``withheld``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation
from sqlalchemy import select

from approvals.rulebook import RuleBook
from approvals.rules import (
    CallFacts,
    Decision,
    Effect,
    Rule,
    RuleIndex,
    ToolInfo,
    in_canonical_form,
    recipients_of,
)
from store.crypto import SecretBox
from store.db import Database
from store.models import AuditEntry, Membership, Role, User, utcnow
from store.principal import Principal


class InvalidQuestion(ValueError):
    """A question naming something that does not exist; ``fields`` maps each bad field to its problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in fields.items()))


class InvalidArguments(InvalidQuestion):
    """Arguments the tool's input schema refuses; ``fields`` maps ``arguments.<path>`` to the problem."""


class AskingForOthers(Exception):
    """A member asked about someone else's calls; only admins may."""


@dataclass(frozen=True)
class Explanation:
    tool: str
    user_id: str
    decision: Decision


async def _subject(db: Database, actor: Principal, who: str | None) -> tuple[str, str]:
    """The user whose decision is explained, and their role; members may only ask about themselves."""
    if who is None or who in (actor.user_id, actor.email):
        return actor.user_id, actor.role.value
    if not actor.is_admin:
        raise AskingForOthers("Only an admin can explain decisions for another user")
    async with db.session() as session:
        row = (
            await session.execute(
                select(User.id, Membership.role)
                .join(Membership, Membership.user_id == User.id)
                .where(Membership.workspace_id == actor.workspace_id, (User.email == who.lower()) | (User.id == who))
            )
        ).one_or_none()
    if row is None:
        raise InvalidQuestion({"user": f"no member {who!r} in this workspace"})
    return row[0], Role(row[1]).value


def _field_of(error: SchemaViolation) -> str:
    """The argument an error is about, as the gateway names it (``to.0``, ``subject``, or ``(arguments)``)."""
    path = ".".join(str(p) for p in error.absolute_path)
    # An error from validation always has its keyword's value and its schema (jsonschema types them as possibly
    # unset, for an error built by hand): "required" names a list, and an object schema is a mapping.
    if error.validator == "required" and isinstance(error.instance, dict) and isinstance(error.validator_value, list):
        missing = [name for name in error.validator_value if name not in error.instance]
        return ".".join(filter(None, [path, missing[0] if missing else ""]))
    if (
        error.validator == "additionalProperties"
        and isinstance(error.instance, dict)
        and isinstance(error.schema, Mapping)
    ):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        return ".".join(filter(None, [path, extra[0] if extra else ""]))
    return path or "(arguments)"


MESSAGE_CHARS = 300

#: Compiled validators by schema object; the schema is kept beside its validator so its id stays its own.
_VALIDATORS: dict[int, tuple[Any, Draft202012Validator]] = {}


def _validator(schema: Mapping[str, Any]) -> Draft202012Validator:
    kept = _VALIDATORS.get(id(schema))
    if kept is None or kept[0] is not schema:
        kept = (schema, Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER))
        _VALIDATORS[id(schema)] = kept
    return kept[1]


def _broken_text(value: Any, path: str = "") -> Iterator[str]:
    """Paths of strings that are not valid Unicode (a lone surrogate), which no real call can carry."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            yield path or "(arguments)"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _broken_text(key, ".".join(filter(None, [path, str(key)])))
            yield from _broken_text(item, ".".join(filter(None, [path, str(key)])))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _broken_text(item, ".".join(filter(None, [path, str(index)])))


def checked_arguments(
    info: ToolInfo, arguments: object, canonicalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """``arguments`` as the tool would take them, or InvalidArguments naming each bad one (``arguments.<path>``).

    Arguments the schema requires but the question leaves out are not demanded (see ``explain``).

    The order is the gateway's: the tool's canonical form first (``canonicalize``, or the catalog's
    where it carries one), then the manifest's JSON Schema with its formats.
    """
    if not isinstance(arguments, dict):
        raise InvalidArguments({"arguments": "must be a JSON object"})
    broken = list(_broken_text(arguments))
    if broken:
        raise InvalidArguments({f"arguments.{path}": "is not valid Unicode text" for path in broken})
    canonicalize = canonicalize or getattr(info, "canonicalize", None)
    if canonicalize is not None:
        try:
            arguments = canonicalize(arguments)
        except Exception as exc:  # the canonical step names its fields the way schema validation does
            fields = getattr(exc, "fields", None)
            if not isinstance(fields, Mapping) or not fields:
                raise
            raise InvalidArguments({f"arguments.{k}": str(v) for k, v in fields.items()}) from None
    problems: dict[str, str] = {}
    # Every value given is held to its schema; one not given is not demanded (``required``): the
    # question is what the rules say of the arguments named, and a missing one is missing to a rule too.
    errors = (e for e in _validator(info.input_schema).iter_errors(arguments) if e.validator != "required")
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        message = error.message if len(error.message) <= MESSAGE_CHARS else error.message[:MESSAGE_CHARS] + "…"
        problems.setdefault(f"arguments.{_field_of(error)}", message)
    if problems:
        raise InvalidArguments(problems)
    return arguments


def canonical_form(registry: Any, tool: str) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """The tool's canonicalisation from the server's tool registry (None where it has none).

    Explain decides on the form a real call is decided on: ``#EXEC`` is asked about as ``exec``.
    """
    registered = getattr(registry, "tools", {}).get(tool)
    canonicalize = getattr(registered, "canonicalize", None)
    return canonicalize if callable(canonicalize) else None


async def explain(
    rulebook: RuleBook,
    actor: Principal,
    *,
    tool: str,
    arguments: dict[str, Any],
    who: str | None = None,
    connection_scope: str = "workspace",
    at: datetime | None = None,
    canonicalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Explanation:
    """The decision a call would get (now, unless ``at``), with every rule that matched it.

    Each argument given must be one the tool would take (InvalidArguments naming it otherwise);
    arguments left out are simply absent, as the connection page asks with none at all. With the
    tool's ``canonicalize``, the rules decide on the canonical form, as they do for a real call.
    """
    info = rulebook.catalog.get(tool)
    if info is None:
        raise InvalidQuestion({"tool": f"unknown tool {tool!r}"})
    arguments = checked_arguments(info, arguments, canonicalize)
    user_id, role = await _subject(rulebook.db, actor, who)
    index = await rulebook.index_for(actor.workspace_id)
    facts = CallFacts(
        workspace_id=actor.workspace_id,
        user_id=user_id,
        role=role,
        app=info.app,
        tool=tool,
        risk=info.risk,
        connection_scope=connection_scope,
        arguments=arguments,
        now=at or utcnow(),
        timezone=actor.timezone,
        recipients=recipients_of(info.egress, arguments),
    )
    return Explanation(tool, user_id, index.explain(facts))


@dataclass(frozen=True)
class ChangedCall:
    """A recorded call whose decision differs under the proposed rules."""

    audit_id: int
    at: datetime
    user_id: str
    tool: str
    recorded: str
    before: Effect
    after: Effect
    after_rules: tuple[str, ...]


@dataclass(frozen=True)
class Replay:
    since: datetime
    until: datetime
    replayed: int
    counts: dict[tuple[Effect, Effect], int]
    calls: list[ChangedCall]
    #: Other people's calls left out because a rule of either set looks at their arguments.
    withheld: int = 0

    @property
    def changed(self) -> int:
        return sum(self.counts.values())


class _UnreadRecipients(tuple[str, ...]):
    """Recipients that are not there to read: none, and it remembers whether a rule tried."""

    read = False

    def __iter__(self) -> Iterator[Any]:
        self.read = True
        return iter(())

    def __len__(self) -> int:
        self.read = True
        return 0


class _Unread(dict[str, Any]):
    """Arguments that are not there to read: empty, and it remembers whether a rule tried."""

    read = False

    def _looked(self) -> None:
        self.read = True

    def get(self, key: Any, default: Any = None) -> Any:
        self._looked()
        return default

    def __getitem__(self, key: Any) -> Any:
        self._looked()
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        self._looked()
        return False

    def __iter__(self) -> Iterator[Any]:
        self._looked()
        return iter(())

    def __len__(self) -> int:
        self._looked()
        return 0

    def keys(self) -> Any:
        self._looked()
        return {}.keys()

    def values(self) -> Any:
        self._looked()
        return {}.values()

    def items(self) -> Any:
        self._looked()
        return {}.items()


async def replay(
    rulebook: RuleBook,
    box: SecretBox,
    actor: Principal,
    *,
    current: list[Rule],
    proposed: list[Rule],
    since: datetime,
    until: datetime,
    limit: int,
) -> Replay:
    """Decide the recorded calls of [since, until) under ``current`` and ``proposed``; list those that differ.

    Members replay only their own calls; admins the whole workspace's. At most
    ``limit`` changed calls are listed, but all of them are counted.

    Only the actor's own calls are decided on their arguments. Another person's call is decided
    without them (never decrypted); if a rule of either set would read an argument of it, the call
    is not replayed and counts as ``withheld``, since its outcome would tell what the argument holds.
    """
    query = select(AuditEntry).where(
        AuditEntry.workspace_id == actor.workspace_id,
        AuditEntry.event == "call",
        AuditEntry.at >= since,
        AuditEntry.at < until,
        AuditEntry.sealed_arguments.is_not(None),
    )
    if not actor.is_admin:
        query = query.where(AuditEntry.user_id == actor.user_id)
    async with rulebook.db.session() as session:
        calls = list(await session.scalars(query.order_by(AuditEntry.at)))
    catalog = rulebook.catalog
    before_index = RuleIndex.build(current, catalog)
    after_index = RuleIndex.build(proposed, catalog)
    counts: Counter[tuple[Effect, Effect]] = Counter()
    changed: list[ChangedCall] = []
    replayed = withheld = 0
    for entry in calls:
        if entry.tool not in catalog:
            continue
        # The query takes only calls whose arguments were sealed; of those, only the actor's own are opened.
        sealed = entry.sealed_arguments if entry.user_id == actor.user_id else None
        own = sealed is not None
        arguments: dict[str, Any] = (
            box.open_json(sealed, context=f"audit-args:{entry.args_digest}") if sealed is not None else _Unread()
        )
        # Another person's recipients are theirs to read, as their arguments are.
        recipients = recipients_of(catalog[entry.tool].egress, arguments) if own else _UnreadRecipients()
        facts = CallFacts(
            workspace_id=entry.workspace_id,
            user_id=entry.user_id,
            role=entry.role or "member",
            app=entry.app,
            tool=entry.tool,
            risk=entry.risk or catalog[entry.tool].risk,
            connection_scope=entry.connection_scope or "workspace",
            arguments=arguments,
            now=entry.at,
            timezone=actor.timezone,
            connection_id=entry.connection_id,
            recipients=recipients,
        )
        before, after = before_index.decide(facts), after_index.decide(facts)
        if isinstance(arguments, _Unread) and (
            arguments.read or (isinstance(recipients, _UnreadRecipients) and recipients.read)
        ):
            withheld += 1
            continue
        replayed += 1
        if before.effect is after.effect:
            continue
        counts[(before.effect, after.effect)] += 1
        if len(changed) < limit:
            changed.append(
                ChangedCall(
                    audit_id=entry.id,
                    at=entry.at,
                    user_id=entry.user_id,
                    tool=entry.tool,
                    recorded=entry.decision,
                    before=before.effect,
                    after=after.effect,
                    after_rules=after.rule_ids,
                )
            )
    return Replay(since, until, replayed, dict(counts), changed, withheld)


async def simulate(
    rulebook: RuleBook,
    box: SecretBox,
    actor: Principal,
    *,
    propose: Callable[[list[Rule]], list[Rule]],
    since: datetime,
    until: datetime,
    limit: int,
) -> Replay:
    """Replay [since, until) under the workspace's rules and under ``propose(rules)``, for every front end."""
    async with rulebook.db.session() as session:
        current = await rulebook.rules_of(session, actor.workspace_id)
    # Proposed values are compared in the form calls are decided on, as they would be once saved.
    proposed = [in_canonical_form(rule, rulebook.catalog) for rule in propose(current)]
    return await replay(rulebook, box, actor, current=current, proposed=proposed, since=since, until=until, limit=limit)
