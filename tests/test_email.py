"""E-mail over SMTP, against a real aiosmtpd server on 127.0.0.1.

Calls go through ``ToolGateway.call`` as an assistant's would. The shared
harness in ``tests.providers`` serves an HTTP fake, which SMTP has no use for,
so the connection is made here the same way, pointing at the SMTP server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.app import Companion
from server.services.approval_flow import _remember_conditions
from server.services.call_result import CallResult
from server.settings import Settings
from store.models import Connection, ConnectionStatus
from tests.conftest import free_port
from tests.providers import Harness, connected_to
from tools.adapters import email as adapter
from tools.context import ToolContext
from tools.errors import ToolError
from tools.registry import Registry
from tools.summary import render

# The tests' SMTP server listens on 127.0.0.1, which the address policy refuses unless a deployment allows it.
pytestmark = [pytest.mark.anyio, pytest.mark.settings(webhooks_allow_private=True)]

USERNAME = "alice@acme.test"
PASSWORD = "correct horse battery staple"
SEND = "email_send_email"


@dataclass
class Postbox:
    """The aiosmtpd handler: keeps what it is given, and refuses what a test tells it to."""

    received: list[Envelope] = field(default_factory=list)
    over_tls: list[bool] = field(default_factory=list)
    unknown: set[str] = field(default_factory=set)
    foreign_senders: bool = False
    data_reply: str = "250 2.0.0 Ok: queued"
    data_delay: float = 0
    data_attempts: int = 0

    async def handle_MAIL(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.foreign_senders:
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.unknown:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.data_attempts += 1
        await asyncio.sleep(self.data_delay)
        if self.data_reply.startswith("250"):
            self.received.append(envelope)
            self.over_tls.append(server.transport.get_extra_info("ssl_object") is not None)
        return self.data_reply

    def message(self) -> EmailMessage:
        [envelope] = self.received
        assert isinstance(envelope.content, bytes)
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def authenticate(server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    """AUTH PLAIN and LOGIN, for one account."""
    known = isinstance(data, LoginPassword) and data.login == USERNAME.encode() and data.password == PASSWORD.encode()
    # handled=False: aiosmtpd itself answers a failure with 535 5.7.8.
    return AuthResult(success=known, handled=False)


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A TLS context with a self-signed certificate for 127.0.0.1, as a small office server might have."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = Path(directory / "cert.pem"), Path(directory / "key.pem")
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextmanager
def mail_server(postbox: Postbox, security: str, tls: ssl.SSLContext | None = None) -> Iterator[int]:
    """An SMTP server on 127.0.0.1 speaking as ``security`` says; yields its port.

    With STARTTLS it refuses mail and AUTH until the session is encrypted, as a
    submission server on port 587 does.
    """
    port = free_port()
    options: dict[str, Any] = {"authenticator": authenticate}
    if security == "starttls":
        options.update(tls_context=tls, require_starttls=True)
    elif security == "tls":
        # aiosmtpd counts only a STARTTLS session as encrypted for AUTH; this one is TLS from the first byte.
        options.update(ssl_context=tls, auth_require_tls=False)
    else:
        options.update(auth_require_tls=False)
    controller = Controller(postbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@dataclass
class Mailer:
    """One E-mail connection of Alice's, and the way to call its one tool."""

    harness: Harness
    postbox: Postbox

    @property
    def companion(self) -> Companion:
        return self.harness.companion

    async def call(self, arguments: dict[str, Any]) -> CallResult:
        return await self.harness.call(SEND, arguments)

    async def ok(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self.harness.ok(SEND, arguments)

    async def row(self) -> Connection:
        return await self.harness.row()

    async def context(self) -> ToolContext:
        return await self.harness.context()


@asynccontextmanager
async def connected_mail(
    settings: Settings,
    registry: Registry,
    postbox: Postbox,
    port: int,
    *,
    security: str = "none",
    verify_tls: bool = False,
    password: str = PASSWORD,
    username_in_setup: bool = False,
) -> AsyncIterator[Mailer]:
    """Alice's E-mail connection to the server on ``port``, with a workspace rule allowing its tools."""
    setup: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "verify_tls": verify_tls,
        "from_address": USERNAME,
        "from_name": "Alice Archer",
    }
    credentials = {"method": "smtp", "username": USERNAME, "password": password}
    if username_in_setup:
        setup["username"] = credentials.pop("username")
    async with connected_to(
        settings, registry, "email", fake=postbox, method="smtp", setup=setup, credentials=credentials
    ) as harness:
        yield Mailer(harness, postbox)


@pytest.fixture
async def mail(settings: Settings, registry: Registry) -> AsyncIterator[Mailer]:
    """A connection to a plain SMTP server that signs in with AUTH PLAIN or LOGIN."""
    postbox = Postbox()
    with mail_server(postbox, "none") as port:
        async with connected_mail(settings, registry, postbox, port) as mailer:
            yield mailer


RECAP = {"to": ["bob@partner.test"], "subject": "Recap of today's call", "body_text": "Thanks for your time."}


async def test_a_message_arrives_with_its_headers_and_both_bodies(mail):
    sent = await mail.ok(
        {
            "to": ["bob@partner.test", "carol@partner.test"],
            "cc": ["dave@acme.test"],
            "bcc": ["erin@acme.test"],
            "reply_to": "sales@acme.test",
            "subject": "Recap — next steps",
            "body_text": "Thanks, Bob.\nNext steps below.",
            "body_html": "<p>Thanks, Bob.</p><ul><li>Next steps</li></ul>",
        }
    )
    message = mail.postbox.message()
    assert message["From"] == "Alice Archer <alice@acme.test>"
    assert message["To"] == "bob@partner.test, carol@partner.test"
    assert message["Cc"] == "dave@acme.test" and message["Reply-To"] == "sales@acme.test"
    assert message["Subject"] == "Recap — next steps" and message["Date"]
    assert message["Message-ID"] == sent["message_id"] and sent["message_id"].endswith("@acme.test>")
    assert message["Bcc"] is None
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and text.get_content().splitlines() == ["Thanks, Bob.", "Next steps below."]
    assert html is not None and "<li>Next steps</li>" in html.get_content()


async def test_bcc_recipients_are_only_on_the_envelope(mail):
    sent = await mail.ok({**RECAP, "cc": ["dave@acme.test"], "bcc": ["erin@acme.test", "BOB@partner.test"]})
    [envelope] = mail.postbox.received
    assert envelope.mail_from == USERNAME
    assert envelope.rcpt_tos == ["bob@partner.test", "dave@acme.test", "erin@acme.test"]
    assert b"erin@acme.test" not in envelope.content
    assert sent["accepted"] == ["bob@partner.test", "dave@acme.test", "erin@acme.test"] and sent["refused"] == {}


async def test_an_html_only_message_is_sent_as_html(mail):
    await mail.ok({"to": ["bob@partner.test"], "subject": "Agenda", "body_html": "<h1>Agenda</h1>"})
    message = mail.postbox.message()
    assert message.get_content_type() == "text/html" and "<h1>Agenda</h1>" in message.get_content()


async def test_a_message_needs_a_text_or_an_html_body(mail):
    result = await mail.call({"to": ["bob@partner.test"], "subject": "Empty"})
    assert result.error_code == "invalid_arguments" and "body_text" in result.message
    assert mail.postbox.data_attempts == 0


@pytest.mark.parametrize(
    ("arguments", "field_named"),
    [
        ({**RECAP, "to": ["Bob <bob@partner.test>"]}, "to.0"),
        ({**RECAP, "to": ["bob@partner.test, eve@elsewhere.test"]}, "to.0"),
        ({**RECAP, "bcc": ["not-an-address"]}, "bcc.0"),
        ({**RECAP, "subject": "Recap\nBcc: eve@elsewhere.test"}, "subject"),
        ({**RECAP, "to": []}, "to"),
    ],
)
async def test_arguments_that_could_smuggle_recipients_are_refused_by_field(mail, arguments, field_named):
    result = await mail.call(arguments)
    assert result.error_code == "invalid_arguments" and field_named in result.details["fields"]
    assert mail.postbox.data_attempts == 0


async def test_a_refused_recipient_is_reported_beside_the_accepted_ones(mail):
    mail.postbox.unknown.add("gone@partner.test")
    sent = await mail.ok({**RECAP, "to": ["bob@partner.test", "gone@partner.test"]})
    assert sent["accepted"] == ["bob@partner.test"]
    assert sent["refused"] == {
        "gone@partner.test": "550 5.1.1 <gone@partner.test>: Recipient address rejected: User unknown"
    }
    assert mail.postbox.received[0].rcpt_tos == ["bob@partner.test"]


async def test_when_every_recipient_is_refused_the_error_names_each_one(mail):
    mail.postbox.unknown.update({"gone@partner.test", "left@partner.test"})
    result = await mail.call({**RECAP, "to": ["gone@partner.test", "left@partner.test"]})
    assert result.error_code == "invalid_request"
    assert "gone@partner.test (550 5.1.1" in result.message and "left@partner.test (550 5.1.1" in result.message
    assert mail.postbox.received == []


async def test_a_sender_address_the_account_may_not_use_is_reported(mail):
    mail.postbox.foreign_senders = True
    result = await mail.call(RECAP)
    assert result.error_code == "invalid_request"
    assert result.message == (
        f"The mail server refused the sender address {USERNAME} "
        f"(553 5.7.1 <{USERNAME}>: Sender address rejected: not owned by user), so nothing was sent."
    )


async def test_a_temporary_refusal_of_the_message_is_reported_and_not_retried(mail):
    mail.postbox.data_reply = "451 4.3.0 Mail server temporarily rejected message"
    result = await mail.call(RECAP)
    assert result.error_code == "provider_unavailable" and "451 4.3.0" in result.message
    assert mail.postbox.data_attempts == 1


async def test_a_permanent_refusal_of_the_message_quotes_the_server(mail):
    mail.postbox.data_reply = "554 5.7.1 Message rejected as spam"
    result = await mail.call(RECAP)
    assert result.error_code == "invalid_request"
    assert result.message == "The mail server refused the message (554 5.7.1 Message rejected as spam)."


async def test_a_wrong_password_asks_for_reconnecting_without_repeating_it(settings, registry):
    postbox = Postbox()
    with mail_server(postbox, "none") as port:
        async with connected_mail(settings, registry, postbox, port, password="wrong horse") as mail:
            result = await mail.call(RECAP)
            assert result.error_code == "needs_reauth"
            assert result.message.startswith("The mail server refused the user name or password.")
            assert "wrong horse" not in result.message
            row = await mail.row()
            assert row.status is ConnectionStatus.NEEDS_REAUTH
            assert row.last_error == "The mail server refused the user name or password."
            again = await mail.call(RECAP)
            assert again.error_code == "needs_reauth" and postbox.data_attempts == 0


async def test_a_server_that_is_down_is_reported_as_unavailable(settings, registry):
    port = free_port()
    async with connected_mail(settings, registry, Postbox(), port) as mail:
        result = await mail.call(RECAP)
    assert result.error_code == "provider_unavailable"
    assert result.message == f"The mail server at 127.0.0.1:{port} could not be reached."


async def test_a_server_that_never_greets_is_given_up_on_in_time(settings, registry):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    quick = settings.model_copy(update={"provider_timeout_seconds": 0.3})
    async with listener, connected_mail(quick, registry, Postbox(), port) as mail:
        result = await mail.call(RECAP)
    assert result.error_code == "provider_unavailable"
    assert result.message == f"The mail server at 127.0.0.1:{port} did not answer in time."


async def test_a_server_that_stops_answering_after_the_message_may_have_sent_it(settings, registry):
    postbox = Postbox(data_delay=0.6)
    quick = settings.model_copy(update={"provider_timeout_seconds": 0.3})
    with mail_server(postbox, "none") as port:
        async with connected_mail(quick, registry, postbox, port) as mail:
            result = await mail.call(RECAP)
    assert result.error_code == "provider_timeout" and "may or may not have been sent" in result.message
    assert postbox.data_attempts == 1


async def test_starttls_encrypts_the_session_before_signing_in(settings, registry, server_tls):
    postbox = Postbox()
    with mail_server(postbox, "starttls", server_tls) as port:
        async with connected_mail(settings, registry, postbox, port, security="starttls") as mail:
            await mail.ok(RECAP)
    assert postbox.over_tls == [True]


async def test_tls_from_the_first_byte_sends_on_port_465_style_servers(settings, registry, server_tls):
    postbox = Postbox()
    with mail_server(postbox, "tls", server_tls) as port:
        async with connected_mail(settings, registry, postbox, port, security="tls") as mail:
            await mail.ok(RECAP)
    assert postbox.over_tls == [True]


async def test_an_unverifiable_certificate_is_refused_while_verification_is_on(settings, registry, server_tls):
    postbox = Postbox()
    with mail_server(postbox, "starttls", server_tls) as port:
        async with connected_mail(settings, registry, postbox, port, security="starttls", verify_tls=True) as mail:
            result = await mail.call(RECAP)
    assert result.error_code == "provider_unavailable" and "certificate that could not be verified" in result.message
    assert postbox.data_attempts == 0


async def test_tls_against_a_plain_port_points_at_the_security_setting(settings, registry):
    postbox = Postbox()
    with mail_server(postbox, "none") as port:
        async with connected_mail(settings, registry, postbox, port, security="tls") as mail:
            result = await mail.call(RECAP)
    assert result.error_code == "provider_unavailable"
    assert result.message.endswith("Check that the security setting suits the port (tls for 465, starttls for 587).")


async def test_signing_in_without_encryption_where_the_server_forbids_it_names_the_setting(
    settings, registry, server_tls
):
    postbox = Postbox()
    with mail_server(postbox, "starttls", server_tls) as port:
        async with connected_mail(settings, registry, postbox, port, security="none") as mail:
            result = await mail.call(RECAP)
    assert result.error_code == "provider_error" and "connecting via TLS (or STARTTLS)" in result.message


async def test_the_user_name_may_be_kept_in_the_setup_fields(settings, registry):
    postbox = Postbox()
    with mail_server(postbox, "none") as port:
        async with connected_mail(settings, registry, postbox, port, username_in_setup=True) as mail:
            await mail.ok(RECAP)
    assert len(postbox.received) == 1


async def test_the_connection_check_signs_in_and_names_the_account(mail):
    """Test connection reaches the check through the manifest, as the integrations API does."""
    check = mail.companion.registry.hooks["email"].test
    assert check is not None
    assert await check(await mail.context()) == f"Connected to 127.0.0.1 as {USERNAME}"
    assert mail.postbox.received == []


async def test_the_connection_check_reports_missing_settings_by_name(mail):
    context = replace(await mail.context(), credentials={"method": "smtp"})
    with pytest.raises(ToolError) as caught:
        await adapter.check(context)
    assert caught.value.code == "not_configured"
    assert str(caught.value).startswith("The E-mail connection is missing its user name, password.")


async def test_an_approval_states_the_recipients_and_the_subject(registry):
    arguments = {**RECAP, "to": ["bob@partner.test", "carol@partner.test"]}
    summary = render(registry.tools[SEND], arguments, None).splitlines()
    assert summary[0] == "Send an e-mail to bob@partner.test, carol@partner.test — subject “Recap of today's call”"
    assert "To: bob@partner.test" in summary and "To: carol@partner.test" in summary


async def test_a_remembered_approval_keeps_copies_to_the_same_domains(registry):
    conditions = _remember_conditions(registry.tools[SEND], {**RECAP, "cc": ["dave@acme.test"]})
    assert conditions == [
        {"arg": "to", "op": "domain_in", "value": ["partner.test"]},
        {"arg": "cc", "op": "domain_in", "value": ["acme.test"]},
        {"arg": "bcc", "op": "exists", "value": False},
        {"arg": "reply_to", "op": "exists", "value": False},
    ]
