"""Demo data: the ``acme`` workspace, its people and a few weeks of meetings.

Seeding is idempotent. The demo keys are derived from the server's secret
key, so running the seed again prints the same keys without storing their
plaintext anywhere, and they are useless to anyone who lacks that secret.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.services import workspaces
from store import directory
from store.crypto import SecretBox
from store.keys import TOKEN_PREFIX, create_key, digest
from store.models import (
    ActionItem,
    ApiKey,
    Contact,
    Insight,
    KeyKind,
    Meeting,
    MeetingContact,
    MeetingStatus,
    Plan,
    Role,
    Summary,
    Team,
    TeamMember,
    TranscriptSegment,
    User,
    Workspace,
)
from store.passwords import hash_password
from tools.registry import Registry

WORKSPACE = "acme"
# Every demo person signs in to the web console with this; it is demo data, printed by `serve --demo`.
DEMO_PASSWORD = "harmony-demo"
PEOPLE: list[tuple[str, str, Role, str]] = [
    ("admin@acme.test", "Ada Admin", Role.ADMIN, "Sales"),
    ("alice@acme.test", "Alice Archer", Role.MEMBER, "Sales"),
    ("bob@acme.test", "Bob Builder", Role.MEMBER, "Product"),
]
CONTACTS: list[tuple[str, str, str, str]] = [
    ("Carol Chen", "carol@globex.example", "Globex", "VP Operations"),
    ("Dan Diaz", "dan@globex.example", "Globex", "IT Lead"),
    ("Erin Ellis", "erin@initech.example", "Initech", "CFO"),
    ("Frank Fischer", "frank@initech.example", "Initech", "Procurement"),
    ("Grace Green", "grace@umbrella.example", "Umbrella", "Head of Sales"),
    ("Hiro Honda", "hiro@umbrella.example", "Umbrella", "Engineer"),
    ("Ines Ivanova", "ines@hooli.example", "Hooli", "Product Manager"),
    ("Jon Jensen", "jon@hooli.example", "Hooli", "Director"),
    ("Kim Kowalski", "kim@stark.example", "Stark Industries", "COO"),
    ("Lena Larsen", "lena@stark.example", "Stark Industries", "Buyer"),
    ("Mo Mansour", "mo@wayne.example", "Wayne Enterprises", "CTO"),
    ("Nia Nakamura", "nia@wayne.example", "Wayne Enterprises", "Analyst"),
]
TOPICS = [
    ("Discovery call", "needs and current tooling"),
    ("Pricing discussion", "the Max plan and seat counts"),
    ("Quarterly business review", "adoption and renewal"),
    ("Security review", "SSO, data retention and the DPA"),
    ("Onboarding kickoff", "the rollout plan and first teams"),
    ("Renewal negotiation", "a two-year term and discounts"),
    ("Product feedback session", "the transcript search and insights"),
    ("Implementation check-in", "the CRM integration and field mappings"),
]
TEAM_MEETINGS = ["Weekly product sync", "Roadmap planning", "Design critique", "Sprint retro"]
MEETING_COUNT = 24


@dataclass(frozen=True)
class DemoKeys:
    workspace: str
    keys: dict[str, str]
    user_keys: dict[str, str]

    def as_json(self) -> dict[str, object]:
        return {"workspace": self.workspace, "keys": self.keys, "user_keys": self.user_keys}


def demo_token(secret: bytes, email: str, kind: KeyKind) -> str:
    mac = hmac.new(secret, f"demo-key:{kind.value}:{email}".encode(), hashlib.sha256).digest()
    return TOKEN_PREFIX + "demo_" + mac[:24].hex()


async def seed(session: AsyncSession, registry: Registry, box: SecretBox, secret: bytes) -> DemoKeys:
    """Create the demo workspace once; on later runs only make sure its people and keys exist."""
    workspace = await session.scalar(select(Workspace).where(Workspace.slug == WORKSPACE))
    fresh = workspace is None
    if workspace is None:
        workspace = await workspaces.create_workspace(
            session, registry, box, slug=WORKSPACE, name="Acme Inc.", plan=Plan.MAX
        )
    else:
        await workspaces.install_builtin_apps(session, registry, box, workspace)

    users: dict[str, User] = {}
    teams: dict[str, Team] = {}
    for email, name, role, team_name in PEOPLE:
        user, _ = await directory.add_member(session, workspace, email=email, role=role, name=name)
        users[email] = user
        team = await session.scalar(select(Team).where(Team.workspace_id == workspace.id, Team.name == team_name))
        if team is None:
            team = Team(workspace_id=workspace.id, name=team_name)
            session.add(team)
            await session.flush()
        teams[team_name] = team
        if await session.get(TeamMember, (team.id, user.id)) is None:
            session.add(TeamMember(team_id=team.id, user_id=user.id))
    if fresh:
        await _meetings(session, workspace, users, teams)

    for user in users.values():
        if user.password_hash is None:
            user.password_hash = await _demo_password_hash()

    keys: dict[str, str] = {}
    user_keys: dict[str, str] = {}
    for email, _, _, _ in PEOPLE[:2]:
        keys[email] = await _ensure_key(session, secret, workspace, users[email], KeyKind.AGENT)
        user_keys[email] = await _ensure_key(session, secret, workspace, users[email], KeyKind.USER)
    await session.flush()
    return DemoKeys(workspace=WORKSPACE, keys=keys, user_keys=user_keys)


_demo_hash: list[str] = []


async def _demo_password_hash() -> str:
    """Hashed once per process: argon2 is slow on purpose, and the demo seeds often in tests."""
    if not _demo_hash:
        _demo_hash.append(await hash_password(DEMO_PASSWORD))
    return _demo_hash[0]


async def _ensure_key(session: AsyncSession, secret: bytes, workspace: Workspace, user: User, kind: KeyKind) -> str:
    token = demo_token(secret, user.email, kind)
    exists = await session.scalar(select(ApiKey.id).where(ApiKey.secret_hash == digest(token)))
    if exists is None:
        await create_key(
            session, workspace_id=workspace.id, user_id=user.id, name=f"demo {kind.value} key", kind=kind, token=token
        )
    return token


async def _meetings(
    session: AsyncSession, workspace: Workspace, users: dict[str, User], teams: dict[str, Team]
) -> None:
    rng = random.Random(20261121)
    contacts = [
        Contact(workspace_id=workspace.id, name=n, email=e, company=c, title=t, phone=f"+1 555 01{i:02d}")
        for i, (n, e, c, t) in enumerate(CONTACTS)
    ]
    session.add_all(contacts)
    await session.flush()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sales_people = [users["admin@acme.test"], users["alice@acme.test"]]
    for index in range(MEETING_COUNT):
        internal = index % 4 == 3
        owner = users["bob@acme.test"] if internal else sales_people[index % 2]
        team = teams["Product"] if internal else teams["Sales"]
        met = [] if internal else rng.sample(contacts[index % 6 * 2 : index % 6 * 2 + 2], k=rng.choice([1, 2]))
        if internal:
            title = TEAM_MEETINGS[index // 4 % len(TEAM_MEETINGS)]
            subject = "this week's priorities"
        else:
            topic, subject = TOPICS[(index - index // 4) % len(TOPICS)]
            title = f"{topic} — {met[0].company}"
        days_ago = 40 - index * 40 // MEETING_COUNT
        when = today - timedelta(days=days_ago) + timedelta(hours=rng.choice([9, 10, 11, 14, 15, 16]))
        status = MeetingStatus.PROCESSED
        if days_ago <= 0:
            status = MeetingStatus.SCHEDULED
            when = today + timedelta(days=1 + index % 3, hours=10)
        elif index == MEETING_COUNT - 3:
            status = MeetingStatus.PROCESSING
        elif index == 7:
            status = MeetingStatus.FAILED
        meeting = Meeting(
            workspace_id=workspace.id,
            team_id=team.id,
            owner_id=owner.id,
            title=title,
            date=when,
            duration=rng.choice([15, 25, 30, 45, 60]) * 60 if status != MeetingStatus.SCHEDULED else 0,
            status=status,
        )
        session.add(meeting)
        await session.flush()
        for contact in met:
            session.add(MeetingContact(meeting_id=meeting.id, contact_id=contact.id))
        if status is MeetingStatus.PROCESSED:
            _meeting_content(session, rng, meeting, owner, met, subject)


def _meeting_content(
    session: AsyncSession, rng: random.Random, meeting: Meeting, owner: User, met: list[Contact], subject: str
) -> None:
    guest = met[0].name if met else "Bob Builder"
    guest_company = met[0].company if met else "the team"
    lines = [
        (owner.name, f"Thanks for joining today. I'd like to go through {subject}."),
        (guest, "Sounds good. We have about half an hour, so let's keep it focused."),
        (owner.name, "Could you start with what is working well and what is not?"),
        (guest, f"At {guest_company} the main pain is that notes get lost between meetings."),
        (owner.name, "That is exactly what the transcript search and the summaries address."),
        (guest, "How does it handle our CRM? We keep every contact there."),
        (owner.name, "Contacts sync both ways, and you choose which fields map to which."),
        (guest, "And who can see what? Some of these calls are sensitive."),
        (owner.name, "Members see their own meetings and their team's; admins see the workspace."),
        (guest, "Good. Can you send the proposal and the security documents?"),
        (owner.name, "I'll send both by Friday and set up a follow-up call."),
        (guest, "Perfect, thank you."),
    ]
    offset = 5.0
    for position, (speaker, text) in enumerate(lines):
        session.add(
            TranscriptSegment(
                meeting_id=meeting.id, position=position, speaker=speaker, text=text, offset_seconds=offset
            )
        )
        offset += rng.uniform(8, 95)
    session.add(
        Summary(
            meeting_id=meeting.id,
            text=(
                f"{owner.name} and {guest} discussed {subject}. {guest_company} struggles with notes lost "
                "between meetings and asked about CRM sync and visibility rules. "
                f"{owner.name.split()[0]} will send the proposal and security documents by Friday."
            ),
            key_points=[
                f"{guest_company} loses context between meetings",
                "CRM contacts must sync both ways with field mappings",
                "Visibility: members see own and team meetings",
                "Proposal and security documents due Friday",
            ],
        )
    )
    kinds = [
        ("topic", f"Topic: {subject}", {"topic": subject, "mentions": rng.randint(2, 9)}),
        ("risk", "Risk: data visibility concerns", {"severity": rng.choice(["low", "medium", "high"])}),
        ("next_step", "Next step: send proposal by Friday", {"owner": owner.email, "due": "Friday"}),
        ("sentiment", "Sentiment", {"score": round(rng.uniform(-0.2, 0.9), 2)}),
    ]
    for kind, title, data in rng.sample(kinds, k=rng.randint(1, 3)):
        session.add(
            Insight(workspace_id=meeting.workspace_id, meeting_id=meeting.id, kind=kind, title=title, data=data)
        )
    session.add(
        ActionItem(
            meeting_id=meeting.id,
            text="Send the proposal and security documents",
            assignee_email=owner.email,
            due_date=(meeting.date + timedelta(days=3)).date().isoformat(),
            created_by=owner.id,
        )
    )
