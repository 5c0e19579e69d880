"""E-mail through any mail server, over SMTP (RFC 5321) with aiosmtplib.

SMTP is not HTTP, so this adapter does not use ``ctx.api``: each call opens
one SMTP session with the connection's security setting (STARTTLS on 587, TLS
from the first byte on 465, or none for a relay on your own network), signs in
with AUTH, does its work and says QUIT.

A message is sent at most once. Nothing is retried: a server that stops
answering after DATA may already have queued the message.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiosmtplib

from manifests import MANIFEST_DIR
from tools.arguments import Arguments
from tools.context import ToolContext
from tools.errors import InvalidArguments, ToolError
from tools.mail import set_body

#: The manifest this adapter carries out; the entry point in pyproject.toml registers the pair.
MANIFEST = MANIFEST_DIR / "email.yaml"

DEFAULT_TIMEOUT = 20.0
RECONNECT = "Reconnect the E-mail connection (Marketplace > Installed > Re-authenticate) and try again."


class SendEmail(Arguments):
    to: list[str]
    subject: str
    cc: list[str] | None = None
    bcc: list[str] | None = None
    body_text: str | None = None
    body_html: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class MailServer:
    """Where and as whom one connection sends, from its setup fields and credentials."""

    host: str
    port: int
    security: str
    verify_tls: bool
    username: str
    password: str = field(repr=False)
    from_address: str
    from_name: str
    timeout: float

    def client(self, sock: socket.socket | None = None) -> aiosmtplib.SMTP:
        """A client for this server; over ``sock`` (already connected to a checked address) when given.

        The host name stays the name typed, so TLS checks the certificate against it, not the address.
        """
        return aiosmtplib.SMTP(
            hostname=self.host,
            port=None if sock is not None else self.port,
            sock=sock,
            username=self.username,
            password=self.password,
            use_tls=self.security == "tls",
            # False, not None, for "none": aiosmtplib would otherwise upgrade on its own when offered.
            start_tls=self.security == "starttls",
            validate_certs=self.verify_tls,
            timeout=self.timeout,
        )


def _mail_server(ctx: ToolContext) -> MailServer:
    setup = ctx.connection.setup
    settings = {
        "SMTP server": setup.get("host"),
        "sender address": setup.get("from_address"),
        # The user name may be kept with the password or beside the other setup fields.
        "user name": ctx.credentials.get("username") or setup.get("username"),
        "password": ctx.credentials.get("password"),
    }
    missing = [label for label, value in settings.items() if not value]
    if missing:
        raise ToolError(
            f"The E-mail connection is missing its {', '.join(missing)}. {RECONNECT}", code="not_configured"
        )
    return MailServer(
        host=str(settings["SMTP server"]),
        port=int(setup.get("port") or 587),
        security=str(setup.get("security") or "starttls"),
        verify_tls=bool(setup.get("verify_tls", True)),
        username=str(settings["user name"]),
        password=str(settings["password"]),
        from_address=str(settings["sender address"]),
        from_name=str(setup.get("from_name") or ""),
        timeout=ctx.keeper.policy.timeout if ctx.keeper else DEFAULT_TIMEOUT,
    )


def _reply(response: aiosmtplib.SMTPResponse | aiosmtplib.SMTPResponseException) -> str:
    return f"{response.code} {response.message}".strip()


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a failed connection, however aiosmtplib wrapped it."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return cause
        cause = cause.__cause__ or cause.__context__
    return None


def _failed(error: ToolError, failure: str) -> ToolError:
    """Mark which kind of failure this is (connect, timeout, tls, credentials, unsupported), for Test connection.

    Test connection tells a person the kind in fixed words and never repeats what the server said.
    """
    error.failure = failure  # type: ignore[attr-defined]
    return error


async def _connect_failure(ctx: ToolContext, server: MailServer, exc: BaseException) -> ToolError:
    """What a person should hear about a session that failed before any mail was sent."""
    error = await _connect_error(ctx, server, exc)
    tls = _tls_failure(exc)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return _failed(error, "credentials")
    if tls is not None:
        return _failed(error, "tls")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return _failed(error, "timeout")
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError | aiosmtplib.SMTPConnectError):
        return _failed(error, "connect")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return _failed(error, "connect")
    return _failed(error, "unsupported")


async def _connect_error(ctx: ToolContext, server: MailServer, exc: BaseException) -> ToolError:
    where = f"The mail server at {server.host}:{server.port}"
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        reason = "The mail server refused the user name or password."
        if ctx.keeper is not None:
            await ctx.keeper.mark_needs_reauth(ctx.connection, reason)
        return ToolError(f"{reason} It said: {_reply(exc)}. {RECONNECT}", code="needs_reauth")
    tls = _tls_failure(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return ToolError(
            f"{where} showed a certificate that could not be verified, so nothing was sent to it.",
            code="provider_unavailable",
        )
    if tls is not None:
        return ToolError(
            f"{where} could not set up TLS with us. Check that the security setting suits the port "
            "(tls for 465, starttls for 587).",
            code="provider_unavailable",
        )
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return ToolError(f"{where} turned the connection away: {_reply(exc)}.", code="provider_unavailable")
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return ToolError(f"{where} did not answer in time.", code="provider_unavailable")
    if isinstance(exc, aiosmtplib.SMTPConnectError | aiosmtplib.SMTPServerDisconnected):
        return ToolError(f"{where} could not be reached.", code="provider_unavailable")
    # What is left is the server lacking what the security setting needs: STARTTLS, or AUTH without TLS.
    return ToolError(f"{where} does not support this connection's settings: {exc}", code="provider_error")


async def _checked_socket(ctx: ToolContext, server: MailServer) -> socket.socket | None:
    """A socket connected to an address of the SMTP server that the address policy allows, now.

    The host is resolved and checked on every use, and the session runs over the socket to the
    address that was checked, so a name that pointed at a public address when the connection was
    saved cannot be turned to an internal one later (DNS rebinding). None when the context carries
    no policy (the server hands one to every context it builds; see ``tools.context.HostCheck``).
    """
    hosts = ctx.hosts
    if hosts is None:
        return None
    where = f"The mail server at {server.host}:{server.port}"
    try:
        addresses = await hosts.addresses(server.host, server.port)
    except ValueError as exc:
        if getattr(exc, "refused", True):
            raise _failed(
                ToolError(f"The E-mail connection's SMTP server is not allowed: {exc}.", code="address_refused"),
                "address",
            ) from None
        raise _failed(ToolError(f"{where} could not be reached.", code="provider_unavailable"), "connect") from None
    loop = asyncio.get_running_loop()
    timed_out = False
    for address in addresses:
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            async with asyncio.timeout(server.timeout):
                await loop.sock_connect(sock, (address, server.port))
        except TimeoutError:
            sock.close()
            timed_out = True
            continue
        except OSError:
            sock.close()
            continue
        return sock
    if timed_out:
        raise _failed(ToolError(f"{where} did not answer in time.", code="provider_unavailable"), "timeout")
    raise _failed(ToolError(f"{where} could not be reached.", code="provider_unavailable"), "connect")


@asynccontextmanager
async def _signed_in(ctx: ToolContext, server: MailServer) -> AsyncIterator[aiosmtplib.SMTP]:
    """An SMTP session past EHLO, STARTTLS (or TLS) and AUTH; QUIT when done."""
    sock = await _checked_socket(ctx, server)
    smtp = server.client(sock)
    try:
        await smtp.connect()
    # A failed STARTTLS handshake comes through as a bare ssl.SSLError.
    except (aiosmtplib.SMTPException, ssl.SSLError) as exc:
        smtp.close()
        if sock is not None:
            sock.close()
        raise await _connect_failure(ctx, server, exc) from None
    try:
        yield smtp
    finally:
        try:
            await smtp.quit()
        except aiosmtplib.SMTPException:
            smtp.close()


async def check(ctx: ToolContext) -> str:
    """Test connection: connect, secure the session, sign in and quit."""
    server = _mail_server(ctx)
    async with _signed_in(ctx, server):
        return f"Connected to {server.host} as {server.username}"


def _message(server: MailServer, arguments: SendEmail) -> EmailMessage:
    try:
        sender = Address(display_name=server.from_name, addr_spec=server.from_address)
    except (ValueError, HeaderParseError):
        raise ToolError(
            f"The E-mail connection's sender address {server.from_address!r} is not an e-mail address. {RECONNECT}",
            code="not_configured",
        ) from None
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(arguments.to)
    if arguments.cc:
        message["Cc"] = ", ".join(arguments.cc)
    if arguments.reply_to:
        message["Reply-To"] = arguments.reply_to
    message["Subject"] = arguments.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.domain)
    # Bcc is never a header: those recipients are only on the envelope (RCPT TO).
    set_body(message, arguments.body_text, arguments.body_html)
    return message


def _envelope_recipients(arguments: SendEmail) -> list[str]:
    """Every recipient once, in the order given: To, then Cc, then Bcc."""
    seen: set[str] = set()
    recipients = []
    for address in [*arguments.to, *(arguments.cc or []), *(arguments.bcc or [])]:
        if address.lower() not in seen:
            seen.add(address.lower())
            recipients.append(address)
    return recipients


async def send_email(ctx: ToolContext, arguments: SendEmail) -> dict[str, Any]:
    if arguments.body_text is None and arguments.body_html is None:
        raise InvalidArguments({"body_text": "give body_text, body_html or both"})
    server = _mail_server(ctx)
    message = _message(server, arguments)
    recipients = _envelope_recipients(arguments)
    async with _signed_in(ctx, server) as smtp:
        try:
            refused, _ = await smtp.send_message(message, sender=server.from_address, recipients=recipients)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            named = "; ".join(f"{r.recipient} ({_reply(r)})" for r in exc.recipients)
            raise ToolError(
                f"The mail server refused every recipient, so nothing was sent: {named}.", code="invalid_request"
            ) from None
        except aiosmtplib.SMTPSenderRefused as exc:
            raise ToolError(
                f"The mail server refused the sender address {exc.sender} ({_reply(exc)}), so nothing was sent.",
                code="invalid_request",
            ) from None
        except aiosmtplib.SMTPNotSupported as exc:
            raise ToolError(f"The mail server cannot take this message: {exc}.", code="invalid_request") from None
        except aiosmtplib.SMTPResponseException as exc:
            # 4xx replies are temporary (RFC 5321 4.2.1); 5xx ones will not change on a second try.
            if exc.code < 500:
                raise ToolError(
                    f"The mail server did not take the message for now ({_reply(exc)}); try again later.",
                    code="provider_unavailable",
                ) from None
            raise ToolError(f"The mail server refused the message ({_reply(exc)}).", code="invalid_request") from None
        except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected):
            raise ToolError(
                "The mail server stopped answering while the message was being sent; it may or may not have been sent.",
                code="provider_timeout",
            ) from None
    return {
        "message_id": str(message["Message-ID"]),
        "accepted": [address for address in recipients if address not in refused],
        "refused": {address: _reply(response) for address, response in refused.items()},
    }
