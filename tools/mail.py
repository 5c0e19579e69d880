"""Mail for every app that sends it (Gmail's API, any SMTP server): composing a message, and what an address is."""

from __future__ import annotations

import re
import unicodedata
from email.message import EmailMessage

import idna


def set_body(message: EmailMessage, text: str | None, html: str | None) -> None:
    """Plain text, HTML, or both as multipart/alternative so each reader shows the one it can."""
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")


#: RFC 5322 atext: the characters of a dot-atom local part besides the dots between atoms.
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$")
_LDH_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def _invisible(char: str) -> bool:
    """Controls, format characters (zero-width ones among them), separators, and unassigned or private points."""
    return unicodedata.category(char)[0] in "CZ"


def canonical_domain(domain: str) -> str:
    """A domain as DNS looks it up: IDNA-encoded to lowercase ASCII, letters, digits and hyphens, with a dot.

    Raises ValueError naming what is wrong.
    """
    if not domain:
        raise ValueError("has no domain after the @")
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"has a domain that is not a valid internationalised name ({exc})") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2:
        raise ValueError("has a domain without a dot")
    if len(ascii_domain) > 253 or not all(_LDH_LABEL.match(label) for label in labels):
        raise ValueError("has a domain that is not letters, digits and hyphens between dots")
    return ascii_domain


def canonical_mailbox(text: str) -> str:
    """Exactly one plain mailbox, ``local@domain``, with its domain canonical; ValueError otherwise.

    Strict on purpose: a rule that allows a domain and the mail server that delivers must read the same
    address, so display names, comments, quoting, several @ and invisible characters are refused, not guessed at.
    """
    if any(_invisible(char) for char in text):
        raise ValueError("contains whitespace, a control or an invisible character")
    if text.count("@") != 1:
        raise ValueError("must have exactly one @")
    local, _, domain = text.partition("@")
    if not local or len(local) > 64 or not all(_ATEXT.match(atom) for atom in local.split(".")):
        raise ValueError("has a local part (before the @) that is not a plain dot-atom")
    # Lower case throughout: mail systems read local parts without regard to case, and a rule on
    # ceo@acme.test must not miss CEO@acme.test.
    address = f"{local.lower()}@{canonical_domain(domain)}"
    if len(address) > 254:
        raise ValueError("is longer than 254 characters")
    return address
