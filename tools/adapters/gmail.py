"""Gmail, through the Gmail API v1 (https://gmail.googleapis.com/gmail/v1/users/me/...).

A message travels as an RFC 2822 document, base64url-encoded in the ``raw``
field of a Message resource; Gmail fills in From and Message-ID and delivers
to every To, Cc and Bcc address it finds in it. A reply joins its thread when
the request names the ``threadId`` and the message carries In-Reply-To and
References headers (and the same subject). Lists page with ``pageToken`` and
``nextPageToken``, and name only ids: each message's headers take a
``messages.get`` of its own.
"""

from __future__ import annotations

import asyncio
import base64
import html
from email.message import EmailMessage
from typing import Any

from pydantic import Field

from manifests import MANIFEST_DIR
from tools.adapters import google
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import InvalidArguments
from tools.mail import canonical_mailbox, set_body
from tools.provider import ProviderError

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "gmail.yaml"
#: The shared client reads Google's answers Google's way (its 403 rate limits).
classify = google.classify

MAILBOX = "/gmail/v1/users/me"
LISTED_HEADERS = ["From", "To", "Subject", "Date"]
# Gmail counts concurrent requests per user and answers 429 beyond a handful; a page of
# headers is fetched a few messages at a time.
CONCURRENT_GETS = 5


class Compose(Arguments):
    to: list[str]
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str
    body_text: str | None = None
    body_html: str | None = None
    reply_to_message_id: str | None = None


class SearchMessages(Arguments):
    query: str | None = None
    limit: int = 10
    cursor: str | None = None


def _header(message: dict[str, Any], name: str) -> str:
    """A header of a messages.get answer; Gmail keeps the sender's spelling (Message-Id, Message-ID)."""
    for header in (message.get("payload") or {}).get("headers", []):
        if header.get("name", "").lower() == name.lower():
            return str(header.get("value", ""))
    return ""


async def _replied(ctx: ToolContext, message_id: str) -> dict[str, str]:
    """What a reply to ``message_id`` needs: its thread, its Message-ID and the References chain to extend."""
    try:
        original = await ctx.api.json(
            "GET",
            f"{MAILBOX}/messages/{message_id}",
            params={"format": "metadata", "metadataHeaders": ["Message-ID", "References"]},
        )
    except ProviderError as exc:
        # Gmail answers 400 "Invalid id value" to an id of the wrong form, 404 to one it does not hold.
        if exc.status in (400, 404):
            raise InvalidArguments(
                {"reply_to_message_id": f"no message with id {message_id!r} in this mailbox"}
            ) from None
        raise
    rfc_id = _header(original, "Message-ID")
    if not rfc_id:
        raise InvalidArguments({"reply_to_message_id": "that message has no Message-ID header to reply to"})
    references = " ".join(filter(None, [_header(original, "References"), rfc_id]))
    return {"threadId": str(original["threadId"]), "In-Reply-To": rfc_id, "References": references}


async def _compose(ctx: ToolContext, arguments: Compose) -> dict[str, Any]:
    """The Message resource to send or save: ``raw`` and, for a reply, the ``threadId`` it joins."""
    if arguments.body_text is None and arguments.body_html is None:
        raise InvalidArguments({"body_text": "give body_text, body_html or both"})
    message = EmailMessage()
    message["To"] = ", ".join(arguments.to)
    if arguments.cc:
        message["Cc"] = ", ".join(arguments.cc)
    if arguments.bcc:
        # Gmail reads the Bcc header to deliver, and removes it from the copies the others receive.
        message["Bcc"] = ", ".join(arguments.bcc)
    message["Subject"] = arguments.subject
    resource: dict[str, Any] = {}
    if arguments.reply_to_message_id:
        reply = await _replied(ctx, arguments.reply_to_message_id)
        message["In-Reply-To"] = reply["In-Reply-To"]
        message["References"] = reply["References"]
        resource["threadId"] = reply["threadId"]
    set_body(message, arguments.body_text, arguments.body_html)
    resource["raw"] = base64.urlsafe_b64encode(message.as_bytes()).decode()
    return resource


async def profile(ctx: ToolContext) -> str:
    """Test connection: the address of the mailbox the token opens."""
    me = await ctx.api.json("GET", f"{MAILBOX}/profile")
    return f"Signed in to Gmail as {me['emailAddress']}"


async def address(ctx: ToolContext) -> str:
    """Who the connection sends as: Gmail puts the mailbox's own address in From."""
    me = await ctx.api.json("GET", f"{MAILBOX}/profile")
    return canonical_mailbox(str(me["emailAddress"]))


async def send_email(ctx: ToolContext, arguments: Compose) -> dict[str, Any]:
    sent = await ctx.api.json("POST", f"{MAILBOX}/messages/send", json=await _compose(ctx, arguments))
    return {"id": sent["id"], "thread_id": sent["threadId"], "labels": list(sent.get("labelIds") or [])}


async def create_draft(ctx: ToolContext, arguments: Compose) -> dict[str, Any]:
    draft = await ctx.api.json("POST", f"{MAILBOX}/drafts", json={"message": await _compose(ctx, arguments)})
    return {"id": draft["id"], "message_id": draft["message"]["id"], "thread_id": draft["message"]["threadId"]}


async def search_messages(ctx: ToolContext, arguments: SearchMessages) -> dict[str, Any]:
    listed = await ctx.api.json(
        "GET",
        f"{MAILBOX}/messages",
        params={"q": arguments.query, "maxResults": arguments.limit, "pageToken": arguments.cursor},
    )
    # An empty result has no "messages" key at all.
    refs = (listed or {}).get("messages") or []
    gate = asyncio.Semaphore(CONCURRENT_GETS)

    async def metadata(message_id: str) -> dict[str, Any] | None:
        async with gate:
            try:
                return dict(
                    await ctx.api.json(
                        "GET",
                        f"{MAILBOX}/messages/{message_id}",
                        params={"format": "metadata", "metadataHeaders": LISTED_HEADERS},
                    )
                )
            except ProviderError as exc:
                # Deleted between the list and the get: it is no longer there to report.
                if exc.status == 404:
                    return None
                raise

    # Every get runs to its end before a failure is raised, so none outlives the call.
    outcomes = await asyncio.gather(*(metadata(ref["id"]) for ref in refs), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    found = [outcome for outcome in outcomes if isinstance(outcome, dict)]
    return {
        "messages": [
            {
                "id": message["id"],
                "thread_id": message["threadId"],
                "from": _header(message, "From"),
                "to": _header(message, "To"),
                "subject": _header(message, "Subject"),
                "date": _header(message, "Date"),
                # Gmail's snippet is HTML-escaped text (&#39; for an apostrophe).
                "snippet": html.unescape(message.get("snippet", "")),
            }
            for message in found
        ],
        "next_cursor": (listed or {}).get("nextPageToken"),
    }
