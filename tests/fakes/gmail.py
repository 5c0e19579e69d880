"""A fake of the Gmail API v1: one mailbox, real RFC 2822 messages, threads, drafts and Google's errors.

Messages sent or saved arrive as base64url ``raw`` documents and are parsed with
Python's e-mail parser, as Gmail parses them, so a test reads the headers and
body parts that would have been delivered. Gmail adds From, Date and Message-ID,
delivers to every To, Cc and Bcc address, and files a message in the thread the
request names only when it answers a message there with the same subject.
Errors have Google's shape: ``{"error": {"code", "message", "errors": [...], "status"}}``.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses, make_msgid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.google import GoogleFake, google_error

API = "/gmail/v1/users/{user}"
SCOPES = (
    "https://www.googleapis.com/auth/gmail.send https://www.googleapis.com/auth/gmail.compose "
    "https://www.googleapis.com/auth/gmail.readonly"
)
SEARCH_TERM = re.compile(r'(?:(\w+):)?(?:"([^"]*)"|(\S+))')
# Gmail's names for system labels in in: and label: searches.
LABELS = {"inbox": "INBOX", "sent": "SENT", "draft": "DRAFT", "drafts": "DRAFT", "unread": "UNREAD"}
REPLY_PREFIX = re.compile(r"^\s*(?:(?:re|fwd?|aw|sv)\s*:\s*)+", re.I)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _text_of(message: EmailMessage) -> str:
    """The readable text of a message: its plain part, or its HTML part without tags."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = str(part.get_content())
    if part.get_content_type() == "text/html":
        text = re.sub(r"<[^>]+>", " ", text)
    return text


def _snippet(message: EmailMessage) -> str:
    """Gmail's snippet: the start of the text on one line, HTML-escaped as Gmail sends it."""
    text = " ".join(_text_of(message).split())[:200]
    return html.escape(text, quote=False).replace('"', "&quot;").replace("'", "&#39;")


def _same_subject(a: str, b: str) -> bool:
    return REPLY_PREFIX.sub("", a).strip().lower() == REPLY_PREFIX.sub("", b).strip().lower()


def _part(part: EmailMessage, part_id: str) -> dict[str, Any]:
    """A MessagePart of a ``format=full`` answer."""
    shown: dict[str, Any] = {
        "partId": part_id,
        "mimeType": part.get_content_type(),
        "filename": part.get_filename() or "",
        "headers": [{"name": k, "value": str(v)} for k, v in part.items()],
    }
    if part.is_multipart():
        shown["body"] = {"size": 0}
        children = [child for child in part.iter_parts() if isinstance(child, EmailMessage)]
        prefix = f"{part_id}." if part_id else ""
        shown["parts"] = [_part(child, f"{prefix}{index}") for index, child in enumerate(children)]
    else:
        data = part.get_payload(decode=True)
        body = data if isinstance(data, bytes) else b""
        shown["body"] = {"size": len(body), "data": _b64url(body)}
    return shown


@dataclass
class Mail:
    id: str
    thread_id: str
    labels: list[str]
    message: EmailMessage
    internal_date: int
    raw: bytes = field(repr=False, default=b"")

    def resource(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "threadId": self.thread_id,
            "labelIds": list(self.labels),
            "snippet": _snippet(self.message),
            "sizeEstimate": len(self.raw),
            "historyId": str(self.internal_date // 1000),
            "internalDate": str(self.internal_date),
        }


class GmailFake(GoogleFake):
    scope = SCOPES

    def __init__(self, address: str = "alice@acme.test") -> None:
        super().__init__(
            [
                Route(f"{API}/profile", self.get_profile, methods=["GET"]),
                Route(f"{API}/messages/send", self.send_message, methods=["POST"]),
                Route(f"{API}/messages", self.list_messages, methods=["GET"]),
                Route(f"{API}/messages/{{id}}", self.get_message, methods=["GET"]),
                Route(f"{API}/drafts", self.create_draft, methods=["POST"]),
            ]
        )
        self.address = address
        self.mailbox: dict[str, Mail] = {}
        self.drafts: dict[str, str] = {}
        self.page_tokens: dict[str, int] = {}
        self.clock = 1_700_000_000_000

    # -- what a test arranges and inspects ------------------------------------------------------

    def receive(
        self, sender: str, subject: str, text: str, *, to: str | None = None, references: str | None = None
    ) -> Mail:
        """A message arriving in the inbox, as another mail server would hand it to Gmail."""
        message = EmailMessage()
        message["From"] = sender
        message["To"] = to or self.address
        message["Subject"] = subject
        if references:
            message["In-Reply-To"] = references.split()[-1]
            message["References"] = references
        message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].rstrip(">"))
        message.set_content(text)
        return self._file(message, ["INBOX", "UNREAD"], thread_id=None)

    @property
    def sent(self) -> list[EmailMessage]:
        """Every message sent, parsed from the raw document as Gmail received it, Bcc included."""
        return [mail.message for mail in self.mailbox.values() if "SENT" in mail.labels]

    def draft(self, draft_id: str) -> Mail:
        return self.mailbox[self.drafts[draft_id]]

    def _file(self, message: EmailMessage, labels: list[str], thread_id: str | None) -> Mail:
        self.clock += 60_000
        if "Date" not in message:
            message["Date"] = format_datetime(datetime.fromtimestamp(self.clock / 1000, UTC))
        mail_id = secrets.token_hex(8)
        mail = Mail(mail_id, thread_id or mail_id, labels, message, self.clock, message.as_bytes())
        self.mailbox[mail_id] = mail
        return mail

    # -- the provider's answers -----------------------------------------------------------------

    def _mailbox_of(self, request: Request) -> JSONResponse | None:
        """Only the signed-in user's mailbox ("me" or its address) is open to the token."""
        user = request.path_params["user"]
        if user not in ("me", self.address):
            return google_error(403, f"Delegation denied for {self.address}")
        return None

    def _compose(self, resource: Any, labels: list[str], *, recipients_required: bool) -> Mail | JSONResponse:
        """File a Message resource ({raw, threadId?}) as Gmail does, or answer Gmail's error."""
        if not isinstance(resource, dict) or not resource.get("raw"):
            return google_error(
                400, "'raw' RFC822 payload message string or uploading message via /upload/* URL required"
            )
        raw = str(resource["raw"])
        try:
            data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            return google_error(
                400, f"Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed for {raw[:20]!r}"
            )
        message = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(message, EmailMessage)
        for name in ("To", "Cc", "Bcc"):
            for _, address in getaddresses([str(value) for value in message.get_all(name, [])]):
                local, at, domain = address.partition("@")
                if not (local and at and domain):
                    return google_error(400, f"Invalid {name} header")
        headers = [str(value) for name in ("To", "Cc", "Bcc") for value in message.get_all(name, [])]
        if recipients_required and not getaddresses(headers):
            return google_error(400, "Recipient address required")
        thread_id = resource.get("threadId")
        if thread_id is not None and not any(m.thread_id == thread_id for m in self.mailbox.values()):
            return google_error(404)
        if "From" not in message:
            message["From"] = self.address
        if "Message-ID" not in message:
            message["Message-ID"] = make_msgid(domain="mail.gmail.com")
        return self._file(message, labels, self._thread_for(message, thread_id))

    def _thread_for(self, message: EmailMessage, thread_id: str | None) -> str | None:
        """Gmail's rule: the named thread, if the message answers one of its messages under the same subject."""
        if thread_id is None:
            return None
        answered = f"{message.get('In-Reply-To', '')} {message.get('References', '')}".split()
        for mail in self.mailbox.values():
            if (
                mail.thread_id == thread_id
                and mail.message.get("Message-ID") in answered
                and _same_subject(str(mail.message.get("Subject", "")), str(message.get("Subject", "")))
            ):
                return thread_id
        return None

    def _matches(self, mail: Mail, query: str) -> bool:
        """Gmail search, for from:, to:, cc:, subject:, in:, label:, is:unread and plain words or "phrases"."""
        headers = {name: str(mail.message.get(name, "")).lower() for name in ("From", "To", "Cc", "Subject")}
        text = " ".join([*headers.values(), _text_of(mail.message).lower()])
        for operator, phrase, word in SEARCH_TERM.findall(query):
            term = (phrase or word).lower()
            operator = operator.lower()
            if operator in ("from", "to", "cc", "subject"):
                if term not in headers[operator.capitalize()]:
                    return False
            elif operator in ("in", "label"):
                if LABELS.get(term, term.upper()) not in mail.labels:
                    return False
            elif operator == "is" and term == "unread":
                if "UNREAD" not in mail.labels:
                    return False
            elif (f"{operator}:{term}" if operator else term) not in text:
                return False
        return True

    # -- routes ---------------------------------------------------------------------------------

    async def get_profile(self, request: Request) -> Response:
        if refused := self._mailbox_of(request):
            return refused
        return JSONResponse(
            {
                "emailAddress": self.address,
                "messagesTotal": len(self.mailbox),
                "threadsTotal": len({m.thread_id for m in self.mailbox.values()}),
                "historyId": str(self.clock // 1000),
            }
        )

    async def list_messages(self, request: Request) -> Response:
        if refused := self._mailbox_of(request):
            return refused
        query = request.query_params
        try:
            size = min(int(query.get("maxResults", 100)), 500)
        except ValueError:
            return google_error(400, f"Invalid value at 'max_results' (TYPE_UINT32), \"{query['maxResults']}\"")
        start = 0
        if token := query.get("pageToken"):
            if token not in self.page_tokens:
                return google_error(400, "Invalid pageToken")
            start = self.page_tokens[token]
        hits = sorted(
            (m for m in self.mailbox.values() if self._matches(m, query.get("q", ""))),
            key=lambda m: m.internal_date,
            reverse=True,
        )
        page = hits[start : start + size]
        answer: dict[str, Any] = {"resultSizeEstimate": len(hits)}
        if page:
            answer["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if start + size < len(hits):
            token = str(secrets.randbelow(10**20))
            self.page_tokens[token] = start + size
            answer["nextPageToken"] = token
        return JSONResponse(answer)

    async def get_message(self, request: Request) -> Response:
        if refused := self._mailbox_of(request):
            return refused
        message_id = request.path_params["id"]
        if not re.fullmatch(r"[0-9a-f]+", message_id):
            return google_error(400, "Invalid id value")
        mail = self.mailbox.get(message_id)
        if mail is None:
            return google_error(404)
        shape = request.query_params.get("format", "full")
        answer = mail.resource()
        if shape == "minimal":
            answer.pop("snippet")
        elif shape == "raw":
            answer["raw"] = _b64url(mail.raw)
        elif shape == "metadata":
            wanted = {name.lower() for name in request.query_params.getlist("metadataHeaders")}
            answer["payload"] = {
                "mimeType": mail.message.get_content_type(),
                "headers": [
                    {"name": k, "value": str(v)} for k, v in mail.message.items() if not wanted or k.lower() in wanted
                ],
            }
        elif shape == "full":
            answer["payload"] = _part(mail.message, "")
        else:
            return google_error(
                400, f"Invalid value at 'format' (type.googleapis.com/google.apps.gmail.v1.Format), \"{shape}\""
            )
        return JSONResponse(answer)

    async def send_message(self, request: Request) -> Response:
        if refused := self._mailbox_of(request):
            return refused
        filed = self._compose(await request.json(), ["SENT"], recipients_required=True)
        if isinstance(filed, JSONResponse):
            return filed
        return JSONResponse({"id": filed.id, "threadId": filed.thread_id, "labelIds": filed.labels})

    async def create_draft(self, request: Request) -> Response:
        if refused := self._mailbox_of(request):
            return refused
        body = await request.json()
        if not isinstance(body, dict) or not body.get("message"):
            return google_error(400, "Missing draft message")
        filed = self._compose(body["message"], ["DRAFT"], recipients_required=False)
        if isinstance(filed, JSONResponse):
            return filed
        draft_id = f"r{secrets.randbelow(10**19)}"
        self.drafts[draft_id] = filed.id
        return JSONResponse(
            {"id": draft_id, "message": {"id": filed.id, "threadId": filed.thread_id, "labelIds": filed.labels}}
        )
