"""The schema of the integration store, in SQLAlchemy 2.0 declarative style.

Identifiers are short prefixed strings (``mtg_…``, ``conn_…``) because they are
shown to people and agents and travel through URLs and tool arguments.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK constraint, so adding a value is a cheap migration.
    return Enum(cls, name=name, native_enum=False, values_callable=lambda e: [m.value for m in e], length=32)


class Plan(enum.StrEnum):
    SOLO = "solo"
    PLUS = "plus"
    MAX = "max"
    ENTERPRISE = "enterprise"


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


class ConnectionScope(enum.StrEnum):
    WORKSPACE = "workspace"
    PERSONAL = "personal"


class ConnectionStatus(enum.StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    ERROR = "error"
    DISCONNECTED = "disconnected"


class KeyKind(enum.StrEnum):
    AGENT = "agent"
    USER = "user"


class MeetingStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    UPLOADED = "uploaded"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ws"))
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    plan: Mapped[Plan] = mapped_column(_enum(Plan, "plan"), default=Plan.PLUS)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Enterprise's custom API rate, requests per minute per key; other plans use their plan's rate.
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    # Whether members may mark agent keys as used by a person-facing host (whose in-chat answers may approve),
    # and the riskiest action such an in-chat answer may approve (SECURITY.md).
    person_facing_keys: Mapped[bool] = mapped_column(Boolean, default=True)
    in_chat_max_risk: Mapped[str] = mapped_column(String(16), default="delete")
    # Whether waiting approvals go to approvers over the workspace's Slack connection (an admin's choice), and
    # the riskiest action an e-mailed single-use link may decide without signing in ("none": always sign in).
    slack_approvals: Mapped[bool] = mapped_column(Boolean, default=False)
    email_link_max_risk: Mapped[str] = mapped_column(String(16), default="none")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("usr"))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # An argon2id hash; None until a password is set, and then password sign-in is refused.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    # E-mail the person when an approval waits for them (needs the server's SMTP settings).
    notify_approvals: Mapped[bool] = mapped_column(Boolean, default=False)
    # The other channels a waiting approval reaches them by: a Slack direct message, and their devices' Web Push.
    notify_slack: Mapped[bool] = mapped_column(Boolean, default=False)
    notify_push: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("workspace_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), default=Role.MEMBER)
    # A member an admin trusts with the workspace's integrations, as Harmony's "integration permission".
    manages_integrations: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Team(Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("team"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))


class TeamMember(Base):
    __tablename__ = "team_members"

    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class Connection(Base):
    """One connected app: a workspace's, or one user's that follows them into every workspace."""

    __tablename__ = "connections"
    __table_args__ = (
        Index("ix_connections_workspace", "workspace_id", "scope"),
        Index("ix_connections_owner", "user_id", "scope"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("conn"))
    app: Mapped[str] = mapped_column(String(64))
    scope: Mapped[ConnectionScope] = mapped_column(_enum(ConnectionScope, "connection_scope"))
    workspace_id: Mapped[str | None] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(200), default="")
    # Who the connection acts as, as its provider names it (a mailbox address), asked when it is made.
    account: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[ConnectionStatus] = mapped_column(
        _enum(ConnectionStatus, "connection_status"), default=ConnectionStatus.ACTIVE
    )
    auth_method: Mapped[str] = mapped_column(String(16), default="none")
    setup: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    mappings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    credentials: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_sync_at: Mapped[datetime | None]
    # A cross-process lock on refreshing the token, held without an open transaction.
    refresh_lease_until: Mapped[datetime | None]
    refresh_lease_owner: Mapped[str | None] = mapped_column(String(64))


class ApiKey(Base):
    """A bearer credential. Only its SHA-256 is kept; the plaintext is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("key"))
    prefix: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[KeyKind] = mapped_column(_enum(KeyKind, "key_kind"), default=KeyKind.AGENT)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    # Its owner says the host behind it shows elicitation forms to them, not to the model (SECURITY.md).
    person_facing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    # When a call through this key last asked for a person's approval: a call a rule allows is looked for among
    # approvals only while one of its key's could still answer it.
    last_asked_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Meeting(Base):
    __tablename__ = "meetings"
    __table_args__ = (Index("ix_meetings_workspace_date", "workspace_id", "date", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("mtg"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"), index=True)
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    date: Mapped[datetime]
    duration: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[MeetingStatus] = mapped_column(
        _enum(MeetingStatus, "meeting_status"), default=MeetingStatus.PROCESSED
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    segments: Mapped[list[TranscriptSegment]] = relationship(
        order_by="TranscriptSegment.position", cascade="all, delete-orphan", passive_deletes=True
    )
    contacts: Mapped[list[Contact]] = relationship(secondary="meeting_contacts", back_populates="meetings")


class TranscriptSegment(Base):
    __tablename__ = "transcript_segments"
    __table_args__ = (UniqueConstraint("meeting_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    speaker: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    offset_seconds: Mapped[float] = mapped_column(Float)


class Summary(Base):
    __tablename__ = "summaries"

    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    key_points: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Insight(Base):
    __tablename__ = "insights"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ins"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(500))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Contact(Base):
    __tablename__ = "contacts"
    __table_args__ = (UniqueConstraint("workspace_id", "email"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("con"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    company: Mapped[str] = mapped_column(String(200), default="")
    title: Mapped[str] = mapped_column(String(200), default="")
    phone: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    meetings: Mapped[list[Meeting]] = relationship(secondary="meeting_contacts", back_populates="contacts")


class MeetingContact(Base):
    __tablename__ = "meeting_contacts"

    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    contact_id: Mapped[str] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True)


class ActionItem(Base):
    __tablename__ = "action_items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("act"))
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    assignee_email: Mapped[str | None] = mapped_column(String(320))
    due_date: Mapped[str | None] = mapped_column(String(10))
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One event of a tool call: its decision and outcome, or a step of its approval.

    Rows are only ever appended. Each carries the hash of the workspace's
    previous row, so a changed or missing row breaks the chain.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_workspace_at", "workspace_id", "at"),
        Index("ix_audit_approval", "approval_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    event: Mapped[str] = mapped_column(String(32), default="call")
    workspace_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(32))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    connection_id: Mapped[str | None] = mapped_column(String(32))
    approval_id: Mapped[str | None] = mapped_column(String(32))
    app: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(128))
    risk: Mapped[str | None] = mapped_column(String(16))
    role: Mapped[str | None] = mapped_column(String(16))
    connection_scope: Mapped[str | None] = mapped_column(String(16))
    args_digest: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    rule_ids: Mapped[list[Any]] = mapped_column(default=list)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    # Sealed, outside the hash: simulation replays them, and retention may clear them.
    sealed_arguments: Mapped[str | None] = mapped_column(Text)
    # Outside the hash too: it ties the entry to the call's log lines, and rows written before it existed lack it.
    request_id: Mapped[str | None] = mapped_column(String(64))
    # Outside the hash as well: the assistant in words, for people; the hashed api_key_id already binds the entry
    # to the key or OAuth grant it came through.
    assistant: Mapped[str | None] = mapped_column(String(200))
    prev_hash: Mapped[str] = mapped_column(String(64), default="")
    hash: Mapped[str] = mapped_column(String(64), default="")


class AuditHead(Base):
    """The newest link of each workspace's audit chain; writers lock it to append in order."""

    __tablename__ = "audit_heads"

    workspace_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    last_hash: Mapped[str] = mapped_column(String(64), default="")


class AuditOutbox(Base):
    """Audit rows committed with the change they record, waiting for the audit writer to chain them.

    A change writes its rows here in its own transaction, which takes no lock, and the writer moves them onto
    the workspace's chain moments later, under the head's lock (``approvals/audit.py``).
    """

    __tablename__ = "audit_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    row: Mapped[dict[str, Any]] = mapped_column()


class RuleRow(Base):
    """An auto-approval rule. Its definition is the API's rule JSON, validated before it is stored."""

    __tablename__ = "rules"
    __table_args__ = (Index("ix_rules_workspace", "workspace_id", "scope", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("rule"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    definition: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class CapHit(Base):
    """One auto-approval counted against a capped rule."""

    __tablename__ = "cap_hits"
    __table_args__ = (Index("ix_cap_hits_rule_user_at", "rule_id", "user_id", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    # It was running when its process died: it may or may not have happened, and only a person decides.
    OUTCOME_UNKNOWN = "outcome_unknown"


class Approval(Base):
    """A request for a person to approve one exact call: this principal, connection, tool and arguments."""

    __tablename__ = "approvals"
    __table_args__ = (
        Index("ix_approvals_binding", "workspace_id", "user_id", "tool", "args_digest", "created_at"),
        Index("ix_approvals_status", "workspace_id", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("apr"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    # The assistant that asked, in words (an API key's name, or an OAuth client's), as it was when it asked.
    assistant: Mapped[str] = mapped_column(String(200), default="")
    connection_id: Mapped[str] = mapped_column(String(32))
    app: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(128))
    risk: Mapped[str] = mapped_column(String(16))
    args_digest: Mapped[str] = mapped_column(String(64))
    sealed_arguments: Mapped[str] = mapped_column(Text)
    # The connection the call acts through, in plain words, as it was when the call was asked.
    sender: Mapped[str] = mapped_column(Text, default="")
    # Who the connection acted as when the call was asked; it runs only as the same account.
    account: Mapped[str | None] = mapped_column(String(320))
    # What every channel shows the person (tools/summary.py), rendered once when asked; sealed like the arguments.
    sealed_summary: Mapped[str | None] = mapped_column(Text)
    status: Mapped[ApprovalStatus] = mapped_column(
        _enum(ApprovalStatus, "approval_status"), default=ApprovalStatus.PENDING
    )
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    rule_ids: Mapped[list[Any]] = mapped_column(default=list)
    require_out_of_band: Mapped[bool] = mapped_column(Boolean, default=False)
    admin_may_approve: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[str] = mapped_column(String(16), default="result")
    nonce: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(32))
    decided_via: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    remember_rule_id: Mapped[str | None] = mapped_column(String(32))
    # Edited before approving: what the assistant asked, kept sealed beside what now runs, and who changed it.
    sealed_original_arguments: Mapped[str | None] = mapped_column(Text)
    original_digest: Mapped[str | None] = mapped_column(String(64))
    edited_by: Mapped[str | None] = mapped_column(String(32))
    # Who must approve, from an admin rule: {"people": [user ids], "admins": bool, "count": n}; None: the asker.
    approvers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    no_self_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    escalate_at: Mapped[datetime | None]
    escalated_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    # While executing, the process running it renews this; a lapsed lease means that process is gone.
    lease_until: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    sealed_result: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class OAuthFlow(Base):
    """One pending OAuth connect: its state (hashed), PKCE verifier (sealed) and whose session may finish it."""

    __tablename__ = "oauth_flows"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("flow"))
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    app: Mapped[str] = mapped_column(String(64))
    scope: Mapped[ConnectionScope] = mapped_column(_enum(ConnectionScope, "connection_scope"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    connection_id: Mapped[str | None] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(200), default="")
    setup: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sealed_secrets: Mapped[str] = mapped_column(Text)
    session_key_id: Mapped[str | None] = mapped_column(String(32))
    return_to: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class SyncRun(Base):
    """One sync of a connection: when it ran, what it counted, what went wrong."""

    __tablename__ = "sync_runs"
    __table_args__ = (Index("ix_sync_runs_connection", "connection_id", "started_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("sync"))
    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"))
    full: Mapped[bool] = mapped_column(Boolean, default=True)
    triggered_by: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    errors: Mapped[list[Any]] = mapped_column(default=list)


class SyncedRecord(Base):
    """Which Harmony row a provider record became, so the next sync updates rather than duplicates."""

    __tablename__ = "synced_records"

    connection_id: Mapped[str] = mapped_column(ForeignKey("connections.id", ondelete="CASCADE"), primary_key=True)
    object: Mapped[str] = mapped_column(String(32), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    local_id: Mapped[str] = mapped_column(String(32), index=True)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class Event(Base):
    """Something that happened to a workspace's setup, e.g. ``connection.needs_reauth``; webhooks read these."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_workspace", "workspace_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("evt"))
    type: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str | None] = mapped_column(String(32))
    user_id: Mapped[str | None] = mapped_column(String(32))
    subject_id: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RateWindow(Base):
    """Requests one API key made in one minute; shared by every replica through the database."""

    __tablename__ = "rate_windows"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class SignInAttempts(Base):
    """Sign-in attempts for one e-mail address or client in one window, shared by every replica."""

    __tablename__ = "sign_in_attempts"

    subject: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class WebSession(Base):
    """A signed-in browser; the cookie names it, and signing out deletes it, so a copied cookie dies too."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkspaceModel(Base):
    """An AI model from the models file that a workspace admin turned on or off."""

    __tablename__ = "workspace_models"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    changed_by: Mapped[str | None] = mapped_column(String(32))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Job(Base):
    """Background work that survives a restart: queued rows are picked up again on start."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_due", "status", "run_after"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("job"))
    kind: Mapped[str] = mapped_column(String(64))
    subject_id: Mapped[str] = mapped_column(String(32), index=True)
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"), default=JobStatus.QUEUED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(default=utcnow)
    locked_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class Recording(Base):
    """An uploaded file of a meeting, stored under the data directory, and a transcript file beside it."""

    __tablename__ = "recordings"

    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(500))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    transcript_path: Mapped[str | None] = mapped_column(String(500))
    transcript_content_type: Mapped[str | None] = mapped_column(String(100))
    uploaded_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEndpoint(Base):
    """Where a workspace wants its events delivered; the signing secret is sealed."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("whe"))
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[Any]] = mapped_column(default=list)
    sealed_secret: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(500), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(Base):
    """The outbox: one event for one endpoint, written in the same transaction as the change it reports."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("whd"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    workspace_id: Mapped[str] = mapped_column(String(32))
    event: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]


class AssistantClient(Base):
    """An OAuth client of Companion's own authorization server: an assistant that signs people in.

    It registered itself (RFC 7591) or is named by the URL of its Client ID Metadata Document, whose fetched copy
    is kept here. A registered one that nobody ever consented to expires.
    """

    __tablename__ = "assistant_clients"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("acl"))
    client_id: Mapped[str] = mapped_column(String(2048), unique=True)
    # "registered" (dynamic registration) or "document" (a Client ID Metadata Document at client_id).
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    client_uri: Mapped[str | None] = mapped_column(String(2048))
    redirect_uris: Mapped[list[Any]] = mapped_column(default=list)
    # The registered metadata, or the fetched document, as the client gave it.
    client_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # A confidential client's secret, sealed like every other credential.
    sealed_secret: Mapped[str | None] = mapped_column(Text)
    registered_from: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    fetched_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class AssistantPolicy(Base):
    """What a workspace's admins decided about one client: blocked, person-facing allowed or forbidden, and
    whether its tokens may decide approvals (the ``approvals`` scope)."""

    __tablename__ = "assistant_policies"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(2048), primary_key=True)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    # "default" follows the workspace's person-facing setting; "allowed" and "forbidden" override it.
    person_facing: Mapped[str] = mapped_column(String(16), default="default")
    may_decide: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AssistantGrant(Base):
    """One person's consent to one client in one workspace: the scopes they agreed to, remembered.

    Its id stands where an API key's id stands for a key (approvals, audit, rate windows): every token issued
    under it acts as the same assistant for the same person.
    """

    __tablename__ = "assistant_grants"
    __table_args__ = (UniqueConstraint("client_ref", "user_id", "workspace_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("agr"))
    client_ref: Mapped[str] = mapped_column(ForeignKey("assistant_clients.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), index=True)
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    # The person said this client shows confirmation prompts to them, not to the model (SECURITY.md).
    person_facing: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    consented_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    last_asked_at: Mapped[datetime | None]


class AssistantToken(Base):
    """An authorization code, access token or refresh token, kept only as its SHA-256 digest.

    Tokens issued from one code share a family; refreshing spends a refresh token and issues the next of its
    family, so a spent one presented again revokes the whole family.
    """

    __tablename__ = "assistant_tokens"
    __table_args__ = (Index("ix_assistant_tokens_family", "family_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("atk"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    # "code", "access" or "refresh".
    kind: Mapped[str] = mapped_column(String(16))
    grant_id: Mapped[str] = mapped_column(ForeignKey("assistant_grants.id", ondelete="CASCADE"), index=True)
    family_id: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    resource: Mapped[str] = mapped_column(String(2048))
    # A code's PKCE challenge and redirect URI, checked when it is exchanged.
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    redirect_uri: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    spent_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class WorkspaceSignIn(Base):
    """A workspace's own identity provider (OpenID Connect), through which its people sign in to the console.

    The client secret is sealed like every other credential and never shown again; people the provider vouches
    for who have no account yet get one only when an admin turned ``create_users`` on.
    """

    __tablename__ = "workspace_sign_in"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True)
    issuer: Mapped[str] = mapped_column(String(2048))
    client_id: Mapped[str] = mapped_column(String(500))
    sealed_client_secret: Mapped[str] = mapped_column(Text)
    create_users: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApprovalVote(Base):
    """One approver's word on an approval that needs several (N of M); the approval is decided when enough agree,
    or when one denies."""

    __tablename__ = "approval_votes"

    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    approve: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text)
    via: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class ApprovalNotice(Base):
    """A message about a waiting approval sent to one approver on one channel, kept so it can be updated when the
    approval is decided anywhere, or expires."""

    __tablename__ = "approval_notices"
    __table_args__ = (Index("ix_approval_notices_approval", "approval_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("ntc"))
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # "slack", "email" or "push".
    channel: Mapped[str] = mapped_column(String(16))
    # Where the message is, as the channel names it (Slack: {"channel": ..., "ts": ...}).
    ref: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The approval's status the message last showed; a sweep updates those that no longer match.
    shown_status: Mapped[str] = mapped_column(String(32), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApprovalLink(Base):
    """A single-use link in an approval e-mail, bound to one approver, one approval and an expiry; kept as its
    SHA-256 digest. Opening it (GET) decides nothing; only the page's POST uses it."""

    __tablename__ = "approval_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("alk"))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PushSubscription(Base):
    """One of a person's devices that takes Web Push notifications (its endpoint and RFC 8291 keys)."""

    __tablename__ = "push_subscriptions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: new_id("psh"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    endpoint: Mapped[str] = mapped_column(String(2048), unique=True)
    p256dh: Mapped[str] = mapped_column(String(200))
    auth: Mapped[str] = mapped_column(String(100))
    user_agent: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]


class SeenRequest(Base):
    """A signed request already handled (a Slack interaction), kept until its signature's window closes, so a
    replay of it is refused on every replica."""

    __tablename__ = "seen_requests"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
