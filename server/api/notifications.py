"""Where approvals reach people, over the API: a person's own channels, and the workspace's policy on them.

Only a person sets these, with their user key: an assistant that could switch off its person's notifications, or
let e-mailed links decide more, would choose who notices its calls. Agent keys and assistants' tokens get 403.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from server.api.auth import person_of
from server.api.errors import ApiError
from server.api.router import ApiRouter
from server.api.services import services_of
from store.approval_channels import (
    LinkRisk,
    PersonalChannels,
    WorkspaceChannels,
    personal_channels,
    set_personal_channels,
    set_workspace_channels,
    workspace_channels,
)
from store.principal import Principal

api = ApiRouter("Notifications")


class ChannelChoices(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: bool = Field(
        description="An e-mail when an approval waits for you, with a single-use link that opens it; needs the "
        "server's mail settings (COMPANION_SMTP_HOST)."
    )
    slack: bool = Field(
        description="A Slack direct message with Approve and Deny; only while the workspace's slack_approvals is on."
    )
    push: bool = Field(
        description="Notifications on the devices you turned them on for in the console's settings (Web Push)."
    )


class Available(BaseModel):
    email: bool = Field(description="Whether this server sends e-mail at all.")
    slack: bool = Field(description="Whether the workspace's admins turned on Slack approvals.")


class Channels(ChannelChoices):
    model_config = ConfigDict(extra="ignore")

    available: Available = Field(description="Which chosen channels can reach you now; a choice is kept either way.")


class WorkspaceChannelsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_approvals: bool = Field(
        description="Whether waiting approvals go, through the workspace's Slack connection, to the people who chose "
        "Slack."
    )
    email_link_max_risk: LinkRisk = Field(
        description="The riskiest call a link in an approval e-mail decides without signing in: riskier calls need "
        "the approver signed in. none: every decision from an e-mail needs signing in. Order: none < read < write < "
        "send < delete."
    )


class WorkspaceChannelsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_approvals: bool | None = Field(default=None, description="As in the answer; left out: unchanged.")
    email_link_max_risk: LinkRisk | None = Field(default=None, description="As in the answer; left out: unchanged.")


async def _channels(request: Request, person: Principal) -> Channels:
    services = services_of(request)
    async with services.db.session() as session:
        mine = await personal_channels(session, person.user_id)
        workspace = await workspace_channels(session, person.workspace_id)
    return Channels(
        email=mine.email,
        slack=mine.slack,
        push=mine.push,
        available=Available(email=bool(services.settings.smtp_host), slack=workspace.slack_approvals),
    )


@api.get("/me/notifications", response=Channels, caller=person_of, errors=(403,), summary="Where approvals reach you")
async def read_notifications(request: Request, actor: Principal) -> Channels:
    """The channels a waiting approval reaches you by, besides the inbox, and which of them can reach you now."""
    return await _channels(request, actor)


@api.put(
    "/me/notifications",
    body=ChannelChoices,
    response=Channels,
    caller=person_of,
    errors=(403,),
    summary="Choose where approvals reach you",
)
async def change_notifications(request: Request, body: ChannelChoices, actor: Principal) -> Channels:
    """All three choices at once. A channel that cannot reach you now (no mail server, Slack approvals off) keeps
    your choice for when it can."""
    async with services_of(request).db.transaction() as session:
        await set_personal_channels(session, actor.user_id, PersonalChannels(body.email, body.slack, body.push))
    return await _channels(request, actor)


@api.get(
    "/workspace/approval-channels",
    response=WorkspaceChannelsBody,
    caller=person_of,
    errors=(403,),
    summary="Read where the workspace's approvals may go",
)
async def read_approval_channels(request: Request, actor: Principal) -> WorkspaceChannelsBody:
    """Whether approvals go to Slack, and what a link in an approval e-mail decides without signing in."""
    async with services_of(request).db.session() as session:
        current = await workspace_channels(session, actor.workspace_id)
    return WorkspaceChannelsBody(
        slack_approvals=current.slack_approvals, email_link_max_risk=current.email_link_max_risk
    )


@api.patch(
    "/workspace/approval-channels",
    body=WorkspaceChannelsChange,
    response=WorkspaceChannelsBody,
    caller=person_of,
    errors=(403,),
    summary="Set where the workspace's approvals may go",
)
async def change_approval_channels(
    request: Request, body: WorkspaceChannelsChange, actor: Principal
) -> WorkspaceChannelsBody:
    """Admins only, with a user key. Applies to the next e-mail link posted and the next approval sent to Slack."""
    if not actor.is_admin:
        raise ApiError(403, "Only a workspace admin may change where the workspace's approvals go.")
    async with services_of(request).db.transaction() as session:
        current = await workspace_channels(session, actor.workspace_id)
        changed = WorkspaceChannels(
            slack_approvals=current.slack_approvals if body.slack_approvals is None else body.slack_approvals,
            email_link_max_risk=body.email_link_max_risk or current.email_link_max_risk,
        )
        await set_workspace_channels(session, actor.workspace_id, changed)
    return WorkspaceChannelsBody(
        slack_approvals=changed.slack_approvals, email_link_max_risk=changed.email_link_max_risk
    )
