"""Checking what a person typed when connecting an app, against the manifest's setup fields.

Secrets (API keys, passwords, client secrets) are split from plain settings
here, so only the sealed credentials ever hold them.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any
from urllib.parse import urlsplit

from server.services.addresses import HostPolicy, Unresolved, UnsafeUrl
from tools.manifest import Manifest, SetupField

#: Setup fields that name a host the server connects to (the E-mail app's SMTP server).
HOST_FIELD_NAMES = frozenset({"host"})


class SetupProblems(Exception):
    """Setup values that fail their fields; ``fields`` maps ``setup.<name>`` to the problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


def _check(field: SetupField, value: Any) -> tuple[Any, str | None]:
    if field.type == "boolean":
        return (value, None) if isinstance(value, bool) else (value, "must be true or false")
    if field.type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return value, "must be a whole number"
        return value, None
    if field.type == "multiselect":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return value, "must be a list of strings"
        unknown = [v for v in value if field.options and v not in field.options]
        return value, f"unknown choice {unknown[0]!r}" if unknown else None
    if not isinstance(value, str) or not value.strip():
        return value, "must be a non-empty string"
    value = value.strip()
    if field.type == "select" and field.options and value not in field.options:
        return value, f"must be one of {', '.join(field.options)}"
    if field.type == "url":
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            return value, "must be an https:// address"
        if parts.username or parts.password:
            return value, "must not carry a user name or password"
        if not any(fnmatch(parts.hostname.lower(), pattern) for pattern in field.allowed_hosts):
            return value, f"must be on {' or '.join(field.allowed_hosts)}"
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}", None
    return value, None


def split_setup(
    manifest: Manifest, method: str, values: dict[str, Any], *, require_secrets: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain settings, secrets) for ``method``; raises SetupProblems naming every bad field."""
    fields = {f.name: f for f in manifest.auth.fields_for(method)}
    problems: dict[str, str] = {}
    for name in values:
        if name not in fields:
            problems[f"setup.{name}"] = f"not a setup field of {manifest.name} when connecting with {method}"
    plain: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for name, field in fields.items():
        if name not in values or values[name] in (None, ""):
            if field.default is not None:
                plain[name] = field.default
            elif field.required and (require_secrets or field.type != "secret"):
                problems[f"setup.{name}"] = f"{field.label} is required"
            continue
        value, problem = _check(field, values[name])
        if problem:
            problems[f"setup.{name}"] = problem
        elif field.type == "secret":
            secrets[name] = value
        else:
            plain[name] = value
    if problems:
        raise SetupProblems(problems)
    return plain, secrets


def check_options(manifest: Manifest, values: dict[str, Any]) -> dict[str, Any]:
    """Options a person changes after connecting, checked like setup fields."""
    fields = {f.name: f for f in manifest.options}
    problems: dict[str, str] = {}
    checked: dict[str, Any] = {}
    for name, value in values.items():
        field = fields.get(name)
        if field is None:
            problems[f"options.{name}"] = f"not an option of {manifest.name}"
            continue
        value, problem = _check(field, value)
        if problem:
            problems[f"options.{name}"] = problem
        else:
            checked[name] = value
    if problems:
        raise SetupProblems(problems)
    return checked


def host_fields(manifest: Manifest, method: str) -> list[SetupField]:
    """The setup fields of ``method`` that name a host the server will connect to."""
    return [f for f in manifest.auth.fields_for(method) if f.type == "string" and f.name in HOST_FIELD_NAMES]


async def check_hosts(
    manifest: Manifest, method: str, plain: dict[str, Any], policy: HostPolicy, *, unresolved_ok: bool
) -> None:
    """Refuse a host field that is, or resolves to, an internal address (the webhook address policy).

    When a connection is saved, a name that does not resolve yet is let through (``unresolved_ok``):
    it points nowhere, and it is checked again each time a connection is opened, where it must resolve.
    """
    problems: dict[str, str] = {}
    for field in host_fields(manifest, method):
        value = plain.get(field.name)
        if not isinstance(value, str) or not value:
            continue
        given_port = plain.get("port")
        port = given_port if isinstance(given_port, int) else 0
        try:
            await policy.addresses(value, port)
        except Unresolved as exc:
            if not unresolved_ok:
                problems[f"setup.{field.name}"] = f"{field.label}: {exc}"
        except UnsafeUrl as exc:
            problems[f"setup.{field.name}"] = f"{field.label}: {exc}"
    if problems:
        raise SetupProblems(problems)
