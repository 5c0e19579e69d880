"""POST /slack/interactions: Slack's interaction requests, a form whose ``payload`` field is JSON.

The signature is checked over the raw body before anything in it is read. Slack wants an answer within three
seconds: a press is answered with an empty 200 (what the presser is told goes to them through Slack), the Deny form
with an empty 200 that closes it, or with the form's error shown under the reason.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.services.slack_approvals import SlackApprovals
from server.services.slack_approvals.interactions import DenyForm, Press, SlackInteractions
from server.services.slack_approvals.message import DENY_FORM, REASON
from server.services.slack_approvals.signing import BadSignature

#: Slack's payloads are a few kilobytes, with the message's blocks; anything much larger is not Slack's.
MAX_BODY = 1024 * 1024


class _Slack(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _User(_Slack):
    id: str


class _Container(_Slack):
    channel_id: str = ""
    message_ts: str = ""


class _Action(_Slack):
    action_id: str
    value: str = ""


class _BlockActions(_Slack):
    type: Literal["block_actions"]
    user: _User
    container: _Container = Field(default_factory=_Container)
    actions: list[_Action] = Field(default_factory=list)
    trigger_id: str = ""
    response_url: str = ""


class _View(_Slack):
    callback_id: str = ""
    private_metadata: str = ""
    state: dict[str, Any] = Field(default_factory=dict)

    def reason(self) -> str:
        typed = (self.state.get("values") or {}).get(REASON, {}).get(REASON, {})
        return str(typed.get("value") or "") if isinstance(typed, dict) else ""


class _ViewSubmission(_Slack):
    type: Literal["view_submission"]
    user: _User
    view: _View


def services_of(request: Request) -> SlackApprovals:
    """What ``server.app`` put on the app's state for this front end."""
    services = request.app.state.slack
    if not isinstance(services, SlackApprovals):
        raise TypeError(f"app.state.slack is {type(services).__name__}, not SlackApprovals")
    return services


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": {}}}, status_code=status)


async def _body(request: Request) -> bytes | None:
    """The raw body, or None past ``MAX_BODY``."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return body


async def interactions(request: Request) -> Response:
    interactions = services_of(request).interactions
    if not interactions.configured:
        return _refusal(404, "not_found", "This server takes no Slack interactions (no signing secret is set).")
    body = await _body(request)
    if body is None:
        return _refusal(413, "too_large", "The request is larger than any Slack interaction.")
    try:
        await interactions.admit(
            request.headers.get("X-Slack-Request-Timestamp"), request.headers.get("X-Slack-Signature"), body
        )
    except BadSignature as exc:
        return _refusal(409 if exc.code == "replayed" else 401, exc.code, str(exc))
    try:
        payload = json.loads(parse_qs(body.decode(), max_num_fields=10).get("payload", [""])[0])
    except (UnicodeDecodeError, ValueError):
        payload = None
    if not isinstance(payload, dict):
        return _refusal(400, "bad_request", "The form carries no JSON payload.")
    try:
        if payload.get("type") == "block_actions":
            await _press(interactions, _BlockActions.model_validate(payload))
        elif payload.get("type") == "view_submission":
            submitted = _ViewSubmission.model_validate(payload)
            if submitted.view.callback_id == DENY_FORM:
                said = await interactions.deny(
                    DenyForm(submitted.user.id, submitted.view.private_metadata, submitted.view.reason())
                )
                if said is not None:
                    return JSONResponse({"response_action": "errors", "errors": {REASON: said}})
    except ValidationError:
        return _refusal(400, "bad_request", "The payload is not the shape Slack sends.")
    # Every other kind (a closed form, a shortcut) asks nothing of Companion.
    return Response(status_code=200)


async def _press(interactions: SlackInteractions, pressed: _BlockActions) -> None:
    for action in pressed.actions:
        await interactions.press(
            Press(
                slack_user=pressed.user.id,
                channel=pressed.container.channel_id,
                ts=pressed.container.message_ts,
                action=action.action_id,
                approval_id=action.value,
                trigger_id=pressed.trigger_id,
                response_url=pressed.response_url,
            )
        )


routes = [Route("/slack/interactions", interactions, methods=["POST"])]
