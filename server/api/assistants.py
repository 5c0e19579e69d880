"""Connected assistants over the API: the assistants you signed in with OAuth, revoking one, and (for admins) the
workspace's policy on each assistant.

Only a person manages assistants, with a user key: an agent key, and an assistant's own token whatever its
scopes, gets 403 on every operation here. What each operation does, and who may, is the use case's
(``server.services.assistants.connected``); the console's page runs the same one.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request

from server.api.auth import person_of
from server.api.router import ApiRouter
from server.api.services import services_of
from server.services.assistants.connected import (
    AssistantPolicyOut,
    ConnectedAssistant,
    ConnectedAssistants,
    PolicyChange,
    WorkspaceAssistants,
)
from store.principal import Principal

api = ApiRouter("Connected assistants")


class ConnectedAssistantList(BaseModel):
    data: list[ConnectedAssistant]


def _assistants(request: Request) -> ConnectedAssistants:
    return ConnectedAssistants(services_of(request).db)


@api.get(
    "/assistants", caller=person_of, response=ConnectedAssistantList, errors=(403,), summary="List your assistants"
)
async def list_connected_assistants(request: Request, actor: Principal) -> ConnectedAssistantList:
    """The assistants you signed in to this workspace with OAuth: what they may do, and when they last acted."""
    return ConnectedAssistantList(data=await _assistants(request).mine(actor))


@api.delete(
    "/assistants/{grant_id}", caller=person_of, status=204, errors=(404,), summary="Revoke a connected assistant"
)
async def revoke_connected_assistant(request: Request, actor: Principal) -> None:
    """Revoke your consent and every token issued under it, on every server at once; the next time the assistant
    wants to act for you, you are asked again."""
    await _assistants(request).revoke(actor, request.path_params["grant_id"])


@api.get(
    "/workspace/assistants",
    caller=person_of,
    response=WorkspaceAssistants,
    errors=(403,),
    summary="List the workspace's assistants",
)
async def list_workspace_assistants(request: Request, actor: Principal) -> WorkspaceAssistants:
    """Admins only: every person's connected assistants, and the workspace's policy on each assistant."""
    return await _assistants(request).of_workspace(actor)


@api.put(
    "/workspace/assistants/policy",
    caller=person_of,
    body=PolicyChange,
    response=AssistantPolicyOut,
    errors=(403, 422),
    summary="Set the policy on an assistant",
)
async def set_assistant_policy(request: Request, actor: Principal, body: PolicyChange) -> AssistantPolicyOut:
    """Admins only. Blocking and person-facing apply to the assistant's tokens from their next request;
    ``may_decide`` lets people grant it the approvals scope the next time they sign it in."""
    return await _assistants(request).set_policy(actor, body)
