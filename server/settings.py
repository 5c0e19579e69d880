"""Configuration, read once from the environment (prefix ``COMPANION_``).

Every knob lives here so that a deployment is described by its environment alone.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from store.db import POOL_SIZE

log = logging.getLogger(__name__)

SECRET_KEY_FILE = "secret.key"
#: The directory name under the platform's user data directory.
APP_DIR_NAME = "harmony-companion"
#: The ``server`` package, in a source checkout or installed.
PACKAGE_DIR = Path(__file__).resolve().parent


def user_data_dir(platform: str = sys.platform, environ: Mapping[str, str] = os.environ) -> Path:
    """Where this platform keeps an application's data for the person running it.

    Written out rather than taken from ``platformdirs``: three rules do not justify a dependency.
    """
    if platform == "win32":
        return Path(environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / APP_DIR_NAME
    if platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_DIR_NAME
    xdg = environ.get("XDG_DATA_HOME", "")
    # The XDG specification says a relative XDG_DATA_HOME is invalid and to be ignored.
    return (Path(xdg) if Path(xdg).is_absolute() else Path.home() / ".local" / "share") / APP_DIR_NAME


def default_data_dir(package: Path = PACKAGE_DIR) -> Path:
    """The data directory when ``COMPANION_DATA_DIR`` is unset, the same from wherever a command starts.

    A source checkout (its ``pyproject.toml`` beside the package, where a wheel never puts one) keeps its data in
    its own ``.companion``, where ``scripts/demo`` has always put it; an installed package uses the person's data
    directory.
    """
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".companion"
    return user_data_dir()


class SettingsError(ValueError):
    """The environment describes a deployment that cannot start."""


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class OAuthClient(BaseModel):
    """The client an operator registered with a provider, for the OAuth apps it offers."""

    client_id: str = Field(min_length=1)
    client_secret: SecretStr = SecretStr("")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COMPANION_", extra="ignore")

    env: Literal["development", "production"] = "development"
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Where the SQLite file, the development key and uploads live: by default the source checkout's "
        ".companion, or else the platform's user data directory.",
    )
    database_url: str = ""
    database_pool_size: int = Field(
        default=POOL_SIZE,
        ge=1,
        le=1000,
        description="PostgreSQL connections each process keeps open; a burst opens up to 10 more for a moment.",
    )
    secret_key: SecretStr | None = None
    old_secret_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    base_url: str = "http://127.0.0.1:8000"
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    authorization_servers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="The issuer URL of an external OAuth authorization server whose JWT access tokens Companion "
        "accepts, instead of running its own; at most one.",
    )
    authorization_user_claim: str = Field(
        default="email",
        min_length=1,
        description="The claim of an external server's access token that holds the person's e-mail address.",
    )
    authorization_workspace_claim: str = Field(
        default="",
        description="The claim of an external server's access token that holds the workspace's slug; empty (or "
        "absent from a token): the person's only workspace.",
    )
    api_key_touch_seconds: int = Field(default=60, ge=0)
    approval_ttl_seconds: int = Field(default=900, ge=10, le=7 * 86400, description="How long an approval waits.")
    approval_wait_seconds: float = Field(
        default=60, ge=0, le=600, description="How long a call waits for a decision made elsewhere, or a run."
    )
    max_pending_approvals_per_key: int = Field(
        default=20, ge=1, le=10_000, description="How many approvals one key may have waiting for a person at once."
    )
    cache_seconds: float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="How long a process may reuse a key lookup or a tool list; 0 turns the caches off.",
    )

    oauth_clients: dict[str, OAuthClient] = Field(
        default_factory=dict,
        description='Per app id, as JSON: {"linear": {"client_id": "...", "client_secret": "..."}}.',
    )
    provider_origins: dict[str, str] = Field(
        default_factory=dict,
        description="Per app id, an origin that replaces the provider's in every URL it calls: a proxy or a sandbox.",
    )
    provider_timeout_seconds: float = Field(default=20, gt=0, le=300)
    provider_retries: int = Field(default=3, ge=0, le=10, description="Retries after a 429 or 5xx answer.")
    provider_max_wait_seconds: float = Field(
        default=30, ge=0, le=600, description="A Retry-After longer than this fails the call instead of waiting."
    )
    auto_sync_minutes: int = Field(
        default=60, ge=0, le=7 * 24 * 60, description="How often connections with auto sync on are synced; 0: never."
    )
    webhooks_allow_private: bool = Field(
        default=False,
        description="Let webhook URLs, and hosts typed into setup fields (the SMTP server), reach private, loopback "
        "and link-local addresses (development and on-premises).",
    )
    upload_max_bytes: int = Field(
        default=500 * 1024 * 1024,
        ge=1,
        le=2**31 - 1,
        description="Largest upload accepted, all its files together, in bytes.",
    )
    processing_poll_seconds: float = Field(
        default=2.0, gt=0, le=300, description="How long an idle upload-processing worker waits before looking again."
    )
    processing_steps: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["transcript_file"],
        description="Processing steps in order, by name: transcript_file and those of installed plug-ins.",
    )
    run_workers: bool = Field(
        default=True, description="Run background workers (webhook delivery, upload processing) in this process."
    )
    oauth_state_seconds: int = Field(default=600, ge=60, le=3600, description="How long a connect link stays valid.")
    oauth_access_token_seconds: int = Field(
        default=3600, ge=60, le=86400, description="How long an access token from Companion's own sign-in works."
    )
    oauth_refresh_token_days: int = Field(
        default=30, ge=1, le=365, description="How long a refresh token works if unused; each use replaces it."
    )
    oauth_registrations_per_window: int = Field(
        default=10, ge=1, le=10_000, description="Dynamic client registrations one address may make in 15 minutes."
    )
    oauth_unused_client_days: int = Field(
        default=7, ge=1, le=365, description="A registered client no one has signed in with is removed after this."
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="The bearer token GET /metrics requires; unset, /metrics answers 404."
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="The CLI's log lines: text, or one JSON object per line with a request id."
    )
    execution_lease_seconds: float = Field(
        default=30,
        ge=1,
        le=3600,
        description="How long a running call's claim lasts unless its process renews it; past it, the call's "
        "outcome is unknown (its process died).",
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="uvicorn worker processes of `companion serve`, each with its own app (not background workers).",
    )
    shutdown_seconds: float = Field(
        default=20,
        ge=0,
        le=600,
        description="On SIGTERM, how long running calls may take to finish before the process stops anyway.",
    )
    keep_alive_seconds: int = Field(
        default=75,
        ge=1,
        le=3600,
        description=(
            "How long `companion serve` keeps an idle HTTP connection open for the client's next request. Keep it"
            " above your load balancer's idle timeout (docs/deploy.md), so the balancer, not the server, closes an"
            " idle connection: a request sent on one the server is closing fails without an answer."
        ),
    )
    smtp_host: str = Field(default="", description="The mail server for Companion's own e-mail; empty sends none.")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    mail_from: str = Field(default="Harmony Companion <companion@localhost>", description="The From of its e-mail.")
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="The Slack app's signing secret (Basic Information > App Credentials), which Slack signs its "
        "button presses with; unset, no approval goes to Slack (docs/slack-approvals.md).",
    )
    vapid_private_key: SecretStr | None = Field(
        default=None,
        description="The P-256 key Web Push notifications are signed with (VAPID, RFC 8292): base64url of its raw "
        "32 bytes, or PEM. Unset: derived from COMPANION_SECRET_KEY, the same on every replica, but rotating that key "
        "then makes every device enable notifications again.",
    )
    vapid_subject: str = Field(
        default="",
        description="The contact push services see on each notification (a mailto: or https: URL); empty: mailto: "
        "the address of COMPANION_MAIL_FROM.",
    )
    models_file: Path | None = Field(
        default=None, description="A YAML file of the AI models Companion offers, instead of server/models.yaml."
    )

    _split = field_validator(
        "old_secret_keys",
        "allowed_hosts",
        "allowed_origins",
        "authorization_servers",
        "processing_steps",
        mode="before",
    )(_split_list)

    @field_validator("data_dir")
    @classmethod
    def _data_dir_is_absolute(cls, value: Path) -> Path:
        # Resolved once, against the directory the command started in, so nothing later depends on the cwd.
        return value.expanduser().resolve()

    @field_validator("base_url")
    @classmethod
    def _base_url_is_absolute(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL, such as https://companion.example.com")
        return value.rstrip("/")

    @field_validator("vapid_subject")
    @classmethod
    def _vapid_subject_is_a_contact(cls, value: str) -> str:
        # RFC 8292 section 2.1: a push service that needs to reach the sender uses this, so only a contact URL.
        if value and not value.startswith(("mailto:", "https://")):
            raise ValueError("must be a mailto: or https: URL, such as mailto:ops@example.com")
        return value

    @field_validator("provider_origins")
    @classmethod
    def _origins_are_origins(cls, value: dict[str, str]) -> dict[str, str]:
        for app, origin in value.items():
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
                raise ValueError(f"{app}: {origin!r} must be an origin such as https://proxy.example.com")
        return {app: origin.rstrip("/") for app, origin in value.items()}

    @model_validator(mode="after")
    def _one_authorization_server(self) -> Settings:
        # Several would each need their own keys, claims and metadata in the protected resource metadata, and an
        # assistant offered several would have to choose; one is what deployments have asked for.
        if len(self.authorization_servers) > 1:
            raise ValueError(
                f"COMPANION_AUTHORIZATION_SERVERS names {len(self.authorization_servers)} servers; Companion "
                "accepts the tokens of one external authorization server (or runs its own when it is empty)"
            )
        for issuer in self.authorization_servers:
            parts = urlsplit(issuer)
            # RFC 8414 section 2: an issuer is an https URL with no query or fragment. http is for development,
            # where the server is also allowed to fetch from private addresses.
            schemes = ("http", "https") if self.webhooks_allow_private else ("https",)
            if parts.scheme not in schemes or not parts.netloc or parts.query or parts.fragment:
                raise ValueError(
                    f"COMPANION_AUTHORIZATION_SERVERS: {issuer!r} must be an issuer URL such as "
                    "https://login.example.com, https unless COMPANION_WEBHOOKS_ALLOW_PRIVATE is set, with no query "
                    "or fragment"
                )
        return self

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> Settings:
        if self.env == "production" and (self.secret_key is None or not self.secret_key.get_secret_value().strip()):
            raise ValueError("COMPANION_SECRET_KEY is required (and may not be empty) when COMPANION_ENV=production")
        return self

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL, with the driver filled in for plain URLs."""
        url = self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'companion.db'}"
        if url.startswith("sqlite:///"):
            return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):
                return "postgresql+asyncpg://" + url.removeprefix(plain)
        return url

    @property
    def authorization_server(self) -> str | None:
        """The external authorization server's issuer, exactly as configured; None when Companion runs its own."""
        return self.authorization_servers[0] if self.authorization_servers else None

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    @cached_property
    def host_allowlist(self) -> list[str]:
        """Host headers the MCP endpoint accepts; the base URL's host is always among them."""
        base = urlsplit(self.base_url)
        hosts = {base.netloc, f"{base.hostname}:*"}
        if base.hostname in ("127.0.0.1", "localhost"):
            hosts |= {"127.0.0.1:*", "localhost:*", "127.0.0.1", "localhost"}
        return sorted(hosts | set(self.allowed_hosts))

    @cached_property
    def origin_allowlist(self) -> list[str]:
        base = urlsplit(self.base_url)
        origins = {f"{base.scheme}://{base.netloc}"}
        if base.hostname in ("127.0.0.1", "localhost"):
            origins |= {"http://127.0.0.1:*", "http://localhost:*"}
        return sorted(origins | set(self.allowed_origins))

    def encryption_keys(self) -> list[bytes]:
        """The current key first, then keys that still decrypt during a rotation.

        In development a missing key is generated once and kept in the data directory,
        so a restart can still read the credentials it stored.
        """
        current = self.secret_key.get_secret_value() if self.secret_key else self._dev_key()
        return [current.encode()] + [key.get_secret_value().encode() for key in self.old_secret_keys]

    def _dev_key(self) -> str:
        path = self.data_dir / SECRET_KEY_FILE
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        path.write_text(key + "\n")
        path.chmod(0o600)
        log.warning(
            "COMPANION_SECRET_KEY is not set: generated a development key in %s. "
            "Set COMPANION_SECRET_KEY in production.",
            path,
        )
        return key


def load_settings() -> Settings:
    """Read the environment, turning a validation failure into one readable line."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"COMPANION_{'_'.join(str(p) for p in err['loc']).upper() or 'SETTINGS'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(problems) from None
