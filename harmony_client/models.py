"""What the API answers, as typed objects: one pydantic model per schema of ``/api/v1/openapi.json``.

The names drop the server's ``Out`` suffixes (``MeetingOut`` is ``Meeting``,
``KeyOut`` is ``ApiKey``, ``NewKey`` is ``NewApiKey``, ``JobOut`` is
``ProcessingJob``, ``StoredFileOut`` is ``StoredFile``, ``ApprovalOut`` is
``Approval``, ``RuleOut`` is ``Rule``, ``AppOut`` is ``App``, ``ConnectionOut``
is ``Connection``, ``TestResult`` is ``ConnectionTest``, ``MappingsOut`` is
``Mappings``, ``OAuthStarted`` is ``OAuthStart``, ``SyncRunOut`` is
``SyncRun``); the fields are the server's, one for one. Python names stand in
for the two that are keywords: a simulation's and an hour window's
``from``/``to`` are ``since``/``until`` (``start``/``end``). Models keep fields a newer server adds (``extra="allow"``)
and accept enum values this client does not know yet, so an old client keeps
working when the API grows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, time
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

#: A known member of ``E`` when the value is one, else the value as a string: a new value is no crash.
OpenEnum = Annotated[E | str, Field(union_mode="left_to_right")]


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class MeetingStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


class KeyKind(enum.StrEnum):
    AGENT = "agent"
    USER = "user"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Meeting(Model):
    id: str
    title: str
    date: datetime
    duration: int = Field(description="Seconds")
    status: OpenEnum[MeetingStatus]
    team_id: str | None
    owner_id: str | None


class Contact(Model):
    id: str
    name: str
    email: str
    company: str
    title: str
    phone: str


class ActionItem(Model):
    id: str
    text: str
    assignee_email: str | None
    due_date: str | None
    done: bool
    created_at: datetime


class MeetingDetail(Meeting):
    team: str | None = Field(description="The team's name")
    owner: str | None = Field(description="The owner's e-mail")
    contacts: list[Contact]
    action_items: list[ActionItem]
    transcript_segments: int
    has_summary: bool


class TranscriptLine(Model):
    speaker: str
    text: str
    timestamp: str = Field(description="HH:MM:SS from the start")
    offset_seconds: float


class Transcript(Model):
    meeting_id: str
    transcript: list[TranscriptLine]


class Summary(Model):
    meeting_id: str
    summary: str
    key_points: list[Any]
    created_at: datetime


class Insight(Model):
    id: str
    meeting_id: str
    kind: str
    title: str
    created_at: datetime


class InsightDetail(Insight):
    data: dict[str, Any]


class InsightData(Model):
    insight_id: str
    kind: str
    data: dict[str, Any]


class Pagination(Model):
    page: int | None = Field(description="The page number; None when paging by cursor")
    per_page: int
    total: int | None = Field(description="Items matching the filters; None when paging by cursor")
    has_more: bool
    next_cursor: str | None = Field(description="Pass as cursor for the next page; None on the last one")


class Page(Model, Generic[T]):
    """One page of a list: ``data`` and its ``pagination``, as the seed shows it."""

    data: list[T]
    pagination: Pagination

    @property
    def has_more(self) -> bool:
        return self.pagination.has_more


class ApiKey(Model):
    id: str
    prefix: str = Field(description="The first characters, to recognise the key")
    name: str
    kind: OpenEnum[KeyKind]
    scopes: list[str]
    person_facing: bool = Field(description="Its owner said its host shows approval forms to them, not to the model")
    owner: str = Field(description="The owner's e-mail")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None = Field(description="In the future while a rotated key's grace period runs")


class NewApiKey(ApiKey):
    token: str = Field(description="The key itself, shown in this answer only: store it now")


class KeyList(Model):
    data: list[ApiKey]


class StoredFile(Model):
    filename: str
    content_type: str
    size: int = Field(description="Bytes")
    sha256: str = Field(description="Hex digest of the bytes stored")


class UploadAccepted(Model):
    id: str = Field(description="The new meeting's id")
    status: OpenEnum[MeetingStatus]
    title: str
    date: datetime
    team_id: str | None
    file: StoredFile
    transcript: StoredFile | None
    status_url: str = Field(description="Where to follow processing")


class ProcessingJob(Model):
    id: str
    state: OpenEnum[JobState]
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ProcessingStatus(Model):
    meeting_id: str
    status: OpenEnum[MeetingStatus]
    error: str | None = Field(description="Why processing failed, when the status is failed")
    job: ProcessingJob | None


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    OUTCOME_UNKNOWN = "outcome_unknown"


class Change(Model):
    """One argument a person changed before approving."""

    field: str
    from_: Any = Field(alias="from", description="What the assistant asked; None where it set nothing")
    to: Any = Field(description="What runs instead; None where the person removed it")


class Vote(Model):
    email: str
    approve: bool
    at: datetime


class ApprovalGroup(Model):
    """Who must approve, where an admin rule names approvers."""

    words: str = Field(description='Where it stands, e.g. "1 of 2 approvals"')
    given: int
    needed: int
    owner_needed: bool = Field(description="A personal connection's owner must still approve as well")
    people: list[str] = Field(description="The people named, by e-mail")
    admins: bool = Field(description="Whether the workspace's admins may approve")
    no_self_approval: bool
    votes: list[Vote]
    escalate_at: datetime | None
    escalated_at: datetime | None
    escalate_to: str | None = Field(default=None, description='"admins": added as approvers at escalate_at')
    escalate_by: list[str] = Field(default_factory=list, description="The channels the approvers are told by then")


class Approval(Model):
    """One call waiting for (or past) a person's decision, bound to its exact arguments."""

    id: str
    status: OpenEnum[ApprovalStatus]
    app: str
    app_name: str
    tool: str
    risk: str
    summary: str = Field(description="What will happen, in plain words: every recipient in full")
    sender: str = Field(description="The connection the call acts through")
    remember_scope: str | None = Field(description="What approving with remember would approve later")
    full_arguments: str = Field(description="Every argument as indented ASCII JSON, nothing hidden")
    arguments: dict[str, Any]
    reasons: list[str]
    rule_ids: list[str]
    require_out_of_band: bool
    user_id: str = Field(description="Who asked")
    assistant: str = Field(description="The assistant that asked, by name; empty when unknown")
    connection_id: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    decided_via: str | None
    reason: str | None
    remember_rule_id: str | None
    result: dict[str, Any] | None = Field(description="The call's result, once it ran")
    error: str | None
    approve_url: str = Field(description="The approval page")
    changed: bool = Field(description="Approved with changes: a person changed the arguments before approving")
    changes: list[Change] = Field(description="Each argument the person changed")
    original_arguments: dict[str, Any] | None = Field(description="What the assistant asked, where it was changed")
    edited_by: str | None
    approvers: ApprovalGroup | None = Field(description="Who must approve, where an admin rule names approvers")


class ApprovalList(Model):
    data: list[Approval]


class BatchItem(Model):
    """What became of one approval of a batch decision."""

    id: str
    result: str = Field(description="decided or refused")
    status: str | None
    code: str | None = Field(description="Why it was refused: not_found, forbidden, conflict, expired")
    message: str


class BatchResult(Model):
    data: list[BatchItem]


class Effect(enum.StrEnum):
    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


class Condition(Model):
    """A test on one argument (a dotted path such as ``deal.amount``), or on every recipient (``@recipients``)."""

    arg: str
    op: str = Field(description="eq, in, not_in, lt, gt, matches, domain_in, max_length, exists, contains, ...")
    value: Any = None


class HourWindow(Model):
    start: time = Field(alias="from")
    end: time = Field(alias="to")


class RuleContext(Model):
    roles: list[str] | None = None
    connection_scope: str | None = None
    connection_ids: list[str] | None = None
    weekdays: list[str] | None = None
    hours: HourWindow | None = None


class Cap(Model):
    max: int
    per_seconds: int


class Approvers(Model):
    """Who must approve the calls an admin's ask rule covers: named people, the admins, or both; ``count`` of them."""

    people: list[str] = Field(default_factory=list, description="Members, by e-mail")
    admins: bool = False
    count: int = 1


class Rule(Model):
    """An auto-approval rule as the server keeps it."""

    id: str = ""
    effect: OpenEnum[Effect]
    scope: str = Field(description="workspace (an admin's) or user (your own)")
    app: str | None = None
    tool: str = "*"
    risk: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    context: RuleContext = Field(default_factory=RuleContext)
    cap: Cap | None = None
    expires_at: datetime | None = None
    mode: str = "enforce"
    locked: bool = False
    require_out_of_band: bool = False
    admin_may_approve: bool = False
    approvers: Approvers | None = Field(default=None, description="Who must approve (an admin's ask rule)")
    no_self_approval: bool = False
    escalate_after_minutes: int | None = None
    escalate_to: str | None = Field(default=None, description='"admins": added as approvers after that long')
    escalate_by: list[str] = Field(
        default_factory=list, description='"email", "slack", "push": the approvers are told by these after that long'
    )
    description: str = ""


class RuleList(Model):
    data: list[Rule]


class RuleMatch(Model):
    id: str
    effect: OpenEnum[Effect]
    scope: str
    description: str


class ShadowDecision(Model):
    effect: OpenEnum[Effect] = Field(description="What rules in shadow mode would have decided")
    rules: list[str]


class CapApplied(Model):
    rule_id: str
    max: int
    per_seconds: int


class Explanation(Model):
    """The decision a call would get, the rules that decided it, and every rule that matched it."""

    tool: str
    user_id: str
    effect: OpenEnum[Effect]
    reasons: list[str]
    rules: list[RuleMatch] = Field(description="The rules that decided")
    matched: list[RuleMatch] = Field(description="Every rule that matched, the deciding ones included")
    shadow: ShadowDecision | None
    caps: list[CapApplied]
    require_out_of_band: bool


class SimulatedCall(Model):
    audit_id: int
    at: datetime
    user_id: str
    tool: str
    recorded: str = Field(description="The decision the call got when it was made")
    before: OpenEnum[Effect]
    after: OpenEnum[Effect]
    after_rules: list[str]


class Simulation(Model):
    since: datetime = Field(alias="from")
    until: datetime = Field(alias="to")
    replayed: int
    changed: int
    withheld: int = Field(description="Others' calls not replayed, as a rule would read their arguments")
    counts: dict[str, int] = Field(description='Changed calls by move, e.g. {"ask->allow": 2}')
    calls: list[SimulatedCall]


class ToolSummary(Model):
    name: str
    title: str
    risk: str


class SyncFields(Model):
    provider_fields: list[str]
    default_mappings: dict[str, str]


class App(Model):
    """An app this server can connect, with how it connects, what it asks for and the tools it brings."""

    id: str
    name: str
    description: str
    category: str
    scopes: list[str]
    methods: list[str]
    oauth_configured: bool | None
    setup_fields: list[dict[str, Any]]
    options: list[dict[str, Any]]
    syncs: str | None
    sync_fields: SyncFields | None
    tools: list[ToolSummary]


class AppList(Model):
    data: list[App]


class Connection(Model):
    """A connected app: never its credentials."""

    id: str
    app: str
    app_name: str
    scope: str
    label: str
    status: str = Field(description="active, needs_reauth, error or disconnected")
    auth_method: str
    setup: dict[str, Any]
    options: dict[str, Any]
    mappings: dict[str, Any]
    has_credentials: bool
    last_error: str | None
    owner_id: str | None
    created_at: datetime | None
    updated_at: datetime | None
    last_sync_at: datetime | None


class ConnectionList(Model):
    data: list[Connection]


class OAuthStart(Model):
    """An OAuth connect begun: open ``authorize_url`` in a browser signed in to the console as the same person."""

    flow_id: str
    authorize_url: str
    expires_at: datetime


class ConnectionTest(Model):
    ok: bool
    code: str | None
    message: str
    failure: str | None = None


class ChoiceList(Model):
    data: list[dict[str, Any]]


class Mappings(Model):
    fields: dict[str, str]
    direction: str
    auto_sync: bool
    objects: dict[str, str] | None = None
    provider_fields: list[str]
    provider_objects: list[str]
    object: str


class SyncRun(Model):
    id: str
    connection_id: str
    full: bool
    status: str = Field(description="running, succeeded or failed")
    triggered_by: str | None
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, Any]
    errors: list[Any]


class SyncRunList(Model):
    data: list[SyncRun]


Remember = Literal["no", "1h", "30d"]


@dataclass(frozen=True)
class RateLimit:
    """The key's budget as of the last answer (``X-RateLimit-*``): ``reset`` is when the minute's count restarts."""

    limit: int
    remaining: int
    reset: datetime
