"""Which addresses the server will call on a user's say: webhook URLs, and hosts typed into setup fields.

A webhook URL is chosen by a user, and the server calls it from inside the
deployment's network, so an unchecked URL would let a user reach internal
services (a metadata endpoint, a database's HTTP port). Every address the
host name resolves to is checked, when the endpoint is saved and again at
each delivery, and the delivery connects to an address that was checked
(``pinned``), so a name that resolves to a public address at the check and
to a private one a moment later (DNS rebinding) cannot slip through.

The same policy holds for a host a person types when connecting an app (the
E-mail app's SMTP server): ``HostPolicy`` checks it when the connection is
saved and again each time a connection is opened, and the adapter connects to
an address it returned. ``COMPANION_WEBHOOKS_ALLOW_PRIVATE`` lifts both, for
development and on-premises servers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from server.settings import Settings

MAX_URL_LENGTH = 2000
RESOLVE_SECONDS = 5.0
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Host name and port to the addresses a connection may use; the event loop's getaddrinfo by default.
Resolver = Callable[[str, int], Awaitable[list[str]]]


class UnsafeUrl(ValueError):
    """A URL the server refuses to call; the message says why, without the addresses it resolved to."""

    #: True when the address is refused by the policy; False when the host did not resolve at all.
    refused = True


def allow_private(settings: Settings) -> bool:
    """Whether private and loopback addresses are allowed (``COMPANION_WEBHOOKS_ALLOW_PRIVATE``, development only)."""
    return settings.webhooks_allow_private


def require_https(settings: Settings) -> bool:
    return settings.env == "production"


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect, and the names the request must carry."""

    url: str
    parts: SplitResult
    host: str
    port: int

    def pinned(self, address: str) -> str:
        """The URL with its host replaced by ``address``, so the connection goes where the check looked."""
        return urlunsplit(self.parts._replace(netloc=_netloc(address, self.parts.port)))

    @property
    def host_header(self) -> str:
        """The Host header the URL implies, for a request sent to a pinned address."""
        return _netloc(self.host, self.parts.port)


def _netloc(host: str, port: int | None) -> str:
    literal = f"[{host}]" if ":" in host else host
    return f"{literal}:{port}" if port else literal


def parse(url: str, *, https_only: bool) -> Target:
    """Check the URL's form: http(s), a host, no credentials, no fragment."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeUrl("must not contain spaces or control characters")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsafeUrl("must be an http(s) URL, such as https://hooks.example.com/harmony")
    if https_only and scheme != "https":
        raise UnsafeUrl("must use https")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("must not contain a user name or password; authenticate with the signature instead")
    if parts.fragment:
        raise UnsafeUrl("must not contain a fragment (#...)")
    if not parts.hostname:
        raise UnsafeUrl("must name a host")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise UnsafeUrl("has an invalid port") from None
    try:
        # Internationalised names travel as their ASCII (IDNA) form, in DNS and in the Host header.
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeUrl("has an invalid host name") from None
    return Target(url=url, parts=parts, host=host, port=port)


async def system_resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


def refusal(address: Address) -> str | None:
    """Why a delivery may not go to ``address``, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv4 address carried inside IPv6 reaches that IPv4 address: judge the embedded one.
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        elif address.sixtofour is not None:
            address = address.sixtofour
        elif address.teredo is not None:
            address = address.teredo[1]
        elif address.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((name for name, hit in checks if hit), None)


class Unresolved(UnsafeUrl):
    """A host name that did not resolve (now): not a refusal of where it points, since it points nowhere yet."""

    refused = False


async def checked_addresses(
    host: str, port: int, *, allow_private: bool, resolver: Resolver = system_resolve, only: str
) -> list[str]:
    """The addresses ``host`` resolves to, every one of them public unless allowed; ``only`` ends a refusal."""
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            addresses = await resolver(host, port)
    except TimeoutError:
        raise Unresolved(f"the host {host} did not resolve within {RESOLVE_SECONDS:g} s") from None
    except OSError:
        raise Unresolved(f"the host {host} does not resolve") from None
    if not addresses:
        raise Unresolved(f"the host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            reason = refusal(ipaddress.ip_address(address))
            if reason is not None:
                raise UnsafeUrl(f"the host {host} resolves to a {reason} address; {only}")
    return addresses


async def resolve(
    url: str,
    *,
    https_only: bool,
    allow_private: bool,
    resolver: Resolver = system_resolve,
    only: str = "webhooks are delivered to public addresses only",
) -> tuple[Target, list[str]]:
    """The URL checked, and the addresses its host resolves to, every one of them public (unless allowed);
    ``only`` ends a refusal, saying what the policy is for."""
    target = parse(url, https_only=https_only)
    addresses = await checked_addresses(
        target.host, target.port, allow_private=allow_private, resolver=resolver, only=only
    )
    return target, addresses


MAX_HOST_LENGTH = 253


def host_name(value: str) -> str:
    """A host typed into a setup field, in its ASCII form: a name or an IP address, nothing around it."""
    host = value.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an IPv6 literal as URLs write it
    if not host or len(host) > MAX_HOST_LENGTH:
        raise UnsafeUrl(f"must be a host name of at most {MAX_HOST_LENGTH} characters, such as smtp.example.com")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F or c in "/:@?#[]\\%" for c in host):
        raise UnsafeUrl("must be a host name alone, such as smtp.example.com: no scheme, port, path or user")
    try:
        ascii_host = host.encode("idna").decode("ascii").rstrip(".").lower()
    except UnicodeError:
        raise UnsafeUrl("is not a valid host name") from None
    if not ascii_host:
        raise UnsafeUrl("is not a valid host name")
    return ascii_host


@dataclass(frozen=True)
class HostPolicy:
    """Where a connection typed into a setup field may go: public addresses, unless the deployment allows more."""

    allow_private: bool = False
    resolver: Resolver = system_resolve

    async def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to ``host`` on; UnsafeUrl (Unresolved for a name that points nowhere)."""
        return await checked_addresses(
            host_name(host),
            port,
            allow_private=self.allow_private,
            resolver=self.resolver,
            only="Companion connects only to servers on public addresses",
        )


def host_policy(settings: Settings, resolver: Resolver = system_resolve) -> HostPolicy:
    """The deployment's policy for hosts in setup fields: the webhook policy, with its one switch."""
    return HostPolicy(allow_private=allow_private(settings), resolver=resolver)
