"""A workspace's policy on approvals answered in an assistant's chat, over the API.

Everyone may read it (an assistant too: it explains why a form is not shown);
only an admin acting with their own user key may change it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from server.api.auth import api_caller, person_of
from server.api.errors import ApiError
from server.api.router import ApiRouter
from server.api.services import services_of
from store.in_chat_policy import InChatPolicy, Risk, policy_of, set_policy

api = ApiRouter("Approvals in chat")


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_facing_keys: bool = Field(
        description="Whether members may mark their agent keys as used by a person-facing host. Off: in-chat "
        "answers approve nothing in this workspace; every approval is made in the inbox, on the approval page, "
        "or over the API with a user key."
    )
    in_chat_max_risk: Risk = Field(
        description="The riskiest action an in-chat answer on a person-facing key may approve; riskier calls "
        "go to the approval page. Order: read < write < send < delete."
    )


@api.get("/workspace/in-chat-policy", response=PolicyBody, summary="Read the in-chat approval policy")
async def read_in_chat_policy(request: Request) -> PolicyBody:
    """What an answer given in an assistant's chat may approve in this workspace."""
    caller = api_caller(request)
    async with services_of(request).db.session() as session:
        policy = await policy_of(session, caller.workspace_id)
    return PolicyBody(person_facing_keys=policy.person_facing_keys, in_chat_max_risk=policy.in_chat_max_risk)


@api.patch("/workspace/in-chat-policy", body=PolicyBody, response=PolicyBody, errors=(403,), summary="Set the policy")
async def change_in_chat_policy(request: Request, body: PolicyBody) -> PolicyBody:
    """Admins only, with a user key. Applies to the next call of every key in the workspace."""
    person = person_of(request)
    if not person.is_admin:
        raise ApiError(403, "Only a workspace admin may change the in-chat approval policy.")
    async with services_of(request).db.transaction() as session:
        await set_policy(session, person.workspace_id, InChatPolicy(body.person_facing_keys, body.in_chat_max_risk))
    return body
