"""The manifest format: one YAML file per app, validated by these models.

A manifest is the whole public contract of an app: how it connects, which
setup fields it asks for, and which tools it gives the assistant, each with
JSON Schemas and a risk level that decides whether a person must approve.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from tools.reading import Classify

IDENTIFIER = r"^[a-z][a-z0-9_]*$"
# RFC 9110's token: the characters a header name may have.
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
# Credentials come from the connection, never from a file anyone can read.
CREDENTIAL_HEADERS = {"authorization", "proxy-authorization", "cookie"}
ADAPTER_REFERENCE = r"^[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*$"


class ManifestError(Exception):
    """One or more manifests are broken; each problem names its file and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class Risk(StrEnum):
    READ = "read"
    WRITE = "write"
    SEND = "send"
    DELETE = "delete"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SetupField(Strict):
    """A field a person fills in when connecting the app."""

    name: str = Field(pattern=IDENTIFIER)
    label: str
    type: Literal["string", "url", "secret", "select", "multiselect", "integer", "boolean"] = "string"
    required: bool = True
    help: str = ""
    options: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(
        default_factory=list, description="For url fields: host globs the URL must match, e.g. *.my.salesforce.com"
    )
    method: Literal["oauth2", "api_key", "basic", "smtp"] | None = Field(
        default=None, description="Asked only when connecting with this method; by default, always."
    )
    default: str | int | bool | list[str] | None = None
    choices_from: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*$",
        description="Adapter function (ctx) -> [{id, label}] listing the provider's choices, e.g. calendars.",
    )

    @model_validator(mode="after")
    def _kind_specific(self) -> SetupField:
        if self.type in ("select", "multiselect") and not (self.options or self.choices_from):
            raise ValueError("a select field needs options or choices_from")
        if self.type == "url" and not self.allowed_hosts:
            raise ValueError("a url field needs allowed_hosts, so the server never fetches an arbitrary address")
        return self


AuthMethod = Literal["none", "oauth2", "api_key", "basic", "smtp"]


class OAuth2Spec(Strict):
    authorize_url: str
    token_url: str
    scopes: list[str] = Field(default_factory=list)
    scope_separator: str = " "
    pkce: bool = True
    token_auth: Literal["client_secret_post", "client_secret_basic"] = "client_secret_post"
    authorize_params: dict[str, str] = Field(
        default_factory=dict, description="Extra query parameters, e.g. Google's access_type=offline."
    )


class ApiKeySpec(Strict):
    """How an API key travels: which header, and the scheme word before it (empty for a bare key)."""

    header: str = "Authorization"
    scheme: str = "Bearer"


class AuthSpec(Strict):
    type: AuthMethod
    fields: list[SetupField] = Field(default_factory=list)
    oauth2: OAuth2Spec | None = None
    api_key: ApiKeySpec | None = Field(
        default=None, description="Required for type api_key; beside oauth2 it lets a person paste a key instead."
    )

    @model_validator(mode="after")
    def _method_sections(self) -> AuthSpec:
        if self.type == "oauth2" and self.oauth2 is None:
            raise ValueError("auth type oauth2 needs an oauth2 section with authorize_url and token_url")
        if self.type == "api_key" and self.api_key is None:
            raise ValueError("auth type api_key needs an api_key section naming its header")
        names = [f.name for f in self.fields]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate setup field {', '.join(duplicates)}")
        for item in self.fields:
            if item.method is not None and item.method not in self.methods:
                raise ValueError(f"setup field {item.name} is for {item.method}, which this app does not offer")
        return self

    @property
    def methods(self) -> list[AuthMethod]:
        """Every way to connect, the preferred one first."""
        methods: list[AuthMethod] = [self.type]
        if self.api_key is not None and self.type != "api_key":
            methods.append("api_key")
        return methods

    def fields_for(self, method: str) -> list[SetupField]:
        return [f for f in self.fields if f.method in (None, method)]


class ApiSpec(Strict):
    """Where the provider's API lives. ``{field}`` placeholders take setup values, e.g. a Salesforce instance.

    An app that speaks no HTTP (SMTP) names only its connection test.
    """

    base_url: str | None = None
    test: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*$",
        description="Adapter function that makes one cheap authenticated call, for Test connection.",
    )
    account: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*$",
        description="Adapter function (ctx) -> str naming who the connection acts as, in the provider's words "
        "(a mailbox address); asked when the connection is made, and shown with every call it sends.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers sent on every request to the API, e.g. an API version; a call's own headers win.",
    )
    classify: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*$",
        description="Adapter function (httpx.Response) -> tools.provider.Reading | None, reading the provider's "
        "answers where the HTTP status misstates them: a rate limit, a refused token, a thing not found.",
    )

    @field_validator("headers")
    @classmethod
    def _headers_are_plain(cls, headers: dict[str, str]) -> dict[str, str]:
        for name, value in headers.items():
            if not re.match(HEADER_NAME, name):
                raise ValueError(f"{name!r} is not a header name")
            if name.lower() in CREDENTIAL_HEADERS:
                raise ValueError(f"{name}: credentials come from the connection, not from the manifest")
            if any(c in value for c in "\r\n\0"):
                raise ValueError(f"{name}: a header value is one line")
        return headers


class SyncSpec(Strict):
    """What an app syncs into Harmony, and the field mappings a person can change."""

    object: Literal["contacts", "events", "users"]
    adapter: str = Field(
        pattern=r"^[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*$",
        description="Async generator (ctx, since) yielding SyncRecord, every page of the provider's list.",
    )
    push: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*$",
        description="Adapter function (ctx, external_id | None, fields) -> external id, for bidirectional sync.",
    )
    provider_objects: list[str] = Field(
        default_factory=list,
        description="Provider objects Harmony's object may map to (Salesforce: Contact or Lead); the first is default.",
    )
    provider_fields: list[str] = Field(min_length=1, description="Fields the provider's records carry.")
    default_mappings: dict[str, str] = Field(
        default_factory=dict, description="Harmony field -> provider field, until a person changes them."
    )

    @model_validator(mode="after")
    def _mappings_name_fields(self) -> SyncSpec:
        for harmony_field, provider_field in self.default_mappings.items():
            if provider_field not in self.provider_fields:
                raise ValueError(f"default_mappings.{harmony_field}: {provider_field!r} is not in provider_fields")
        return self


def _check_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ValueError(f"invalid JSON Schema at {where}: {exc.message}") from None
    if schema.get("type") != "object":
        raise ValueError('must be a JSON Schema of "type": "object"')
    return schema


class RememberSpec(Strict):
    """One argument constraint a "remember this" approval keeps in the rule it creates.

    ``eq`` keeps the value, ``in`` its items, ``domain_in`` the domains of its addresses (an empty list stays
    empty), ``keys_in`` the fields an object sets, ``exists`` whether an optional field is set at all.
    """

    arg: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    op: Literal["eq", "in", "domain_in", "keys_in", "exists"] = "eq"


ARGUMENT_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
ARGUMENT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ReadSpec(Strict):
    """A read tool of the same app that a card calls, as the person who asked, to say what a call touches.

    The read gets ``arguments`` and, in ``argument``, the value the card asks about (an id). With ``items``, the
    answer is a list in the result, and the object is the item one of whose ``match`` fields equals the value;
    without it, the result is the object.
    """

    tool: str = Field(pattern=IDENTIFIER)
    argument: str | None = Field(default=None, pattern=ARGUMENT_NAME)
    arguments: dict[str, Any] = Field(default_factory=dict)
    items: str | None = Field(default=None, pattern=ARGUMENT_NAME)
    match: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _finds_one_object(self) -> ReadSpec:
        if (self.items is None) != (not self.match):
            raise ValueError("items and match go together: the list to look in, and the fields that hold the value")
        if self.argument is None and self.items is None:
            raise ValueError("name the argument that takes the value, or the items to find it among")
        if self.argument is not None and self.argument in self.arguments:
            raise ValueError(f"arguments.{self.argument}: it takes the value, so it cannot be fixed too")
        return self


class ShownAs(ReadSpec):
    """How a person sees an argument that holds an id: the ``field`` of the object it names (a meeting's title)."""

    field: str = Field(pattern=ARGUMENT_NAME)


class CurrentSpec(ReadSpec):
    """Where an update tool's arguments have their current values: the object ``key`` names, read as
    ``ReadSpec`` says, and the field of it that each argument sets."""

    key: str = Field(pattern=ARGUMENT_NAME)
    fields: dict[str, str] = Field(min_length=1)


def schema_at(schema: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The schema of the argument at a dotted path, arrays stepped through; None when there is no such argument."""
    node: dict[str, Any] | None = schema
    for name in path.split("."):
        while node is not None and node.get("type") == "array" and isinstance(node.get("items"), dict):
            node = node["items"]
        properties = node.get("properties") if node is not None else None
        node = properties.get(name) if isinstance(properties, dict) else None
    return node


def _mailbox_paths(schema: dict[str, Any]) -> list[str]:
    """Top-level arguments that hold e-mail addresses, alone or in an array."""
    found = []
    for name, node in schema.get("properties", {}).items():
        items = node.get("items") if node.get("type") == "array" else node
        if isinstance(items, dict) and items.get("format") == "email":
            found.append(name)
    return found


class ToolSpec(Strict):
    name: str = Field(pattern=IDENTIFIER, max_length=64)
    title: str
    description: str
    risk: Risk
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    adapter: str = Field(pattern=r"^[a-z][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
    summary: str = Field(
        default="",
        description="How an approval states this call in plain words; {argument} placeholders are filled in.",
    )
    remember: list[RememberSpec] | None = Field(
        default=None,
        description="What a remembered approval keeps constant; by default every required argument must match.",
    )

    recipients: list[str] | None = Field(
        default=None,
        description="Egress arguments, as names or dotted paths: who or where the call sends to (addresses, "
        "attendees, channels, URLs). Rules can cover them all at once, and the summary names each in full. "
        "By default, the arguments of format email.",
    )
    shown: list[str] | None = Field(
        default=None,
        description="The arguments a person sees in the summary, in this order; by default all of them.",
    )
    canonical: dict[str, str] = Field(
        default_factory=dict,
        description="Argument path -> adapter function (str) -> str that puts the value in the one form the "
        "provider acts on, before any rule decides, e.g. a Slack channel name without its #.",
    )
    resolve: dict[str, str] = Field(
        default_factory=dict,
        description="Argument path -> async adapter function (ctx, str) -> str that asks the provider for the "
        "value's one form, after canonical and before any rule decides, e.g. a Slack channel id to its name.",
    )
    rule_form: dict[str, str] = Field(
        default_factory=dict,
        description="Argument path -> adapter function (str) -> str that checks a rule's value for a resolved "
        "argument, raising ValueError for a value no resolved call can have (a Slack channel id), so such a "
        "rule is refused at save instead of never matching.",
    )

    shown_as: dict[str, ShownAs] = Field(
        default_factory=dict,
        description="Argument -> how a person sees the object its id names: a read tool of this app, as the person "
        "who asked, and the field of its answer to show (a meeting's title); the id is shown when the read fails.",
    )
    current: CurrentSpec | None = Field(
        default=None,
        description="For an update: a read tool of this app giving the object's current values, shown beside the "
        "new ones.",
    )

    _schemas_are_valid = field_validator("input_schema", "output_schema")(_check_json_schema)

    @property
    def egress(self) -> tuple[str, ...]:
        """The egress argument paths, declared or inferred from format email."""
        if self.recipients is not None:
            return tuple(self.recipients)
        return tuple(_mailbox_paths(self.input_schema))

    @model_validator(mode="after")
    def _placeholders_name_arguments(self) -> ToolSpec:
        properties = set(self.input_schema.get("properties", {}))
        for name in re.findall(r"{([^{}]+)}", self.summary):
            if name not in properties:
                raise ValueError(f"summary: {{{name}}} is not an argument of {self.name}")
        for index, item in enumerate(self.remember or []):
            if item.arg not in properties:
                raise ValueError(f"remember[{index}].arg: {item.arg!r} is not an argument of {self.name}")
        named = [
            *((f"recipients[{i}]", path, ARGUMENT_PATH) for i, path in enumerate(self.recipients or [])),
            *((f"shown[{i}]", name, r"^[A-Za-z_][A-Za-z0-9_]*$") for i, name in enumerate(self.shown or [])),
            *((f"canonical.{path}", path, ARGUMENT_PATH) for path in self.canonical),
            *((f"resolve.{path}", path, ARGUMENT_PATH) for path in self.resolve),
            *((f"rule_form.{path}", path, ARGUMENT_PATH) for path in self.rule_form),
        ]
        for where, path, pattern in named:
            if not re.match(pattern, path) or schema_at(self.input_schema, path) is None:
                raise ValueError(f"{where}: {path!r} is not an argument of {self.name}")
        for where, hooks in (("canonical", self.canonical), ("resolve", self.resolve), ("rule_form", self.rule_form)):
            for path, reference in hooks.items():
                if not re.match(ADAPTER_REFERENCE, reference):
                    raise ValueError(f"{where}.{path}: {reference!r} is not an adapter function, module.function")
        for name in self.shown_as:
            if name not in properties:
                raise ValueError(f"shown_as.{name}: {name!r} is not an argument of {self.name}")
            if name in {path.split(".")[0] for path in self.egress}:
                # Who or where a call sends to is shown as it is, in full, never as a name an app gives it.
                raise ValueError(f"shown_as.{name}: a recipient argument is shown in full, not by name")
        if self.current is not None:
            for where, name in (("key", self.current.key), *((f"fields.{n}", n) for n in self.current.fields)):
                if name not in properties:
                    raise ValueError(f"current.{where}: {name!r} is not an argument of {self.name}")
        for path in self.resolve:
            if path not in self.rule_form:
                # Without it, a rule naming the unresolved form would save and then never match.
                raise ValueError(f"resolve.{path}: needs rule_form.{path}, saying which values rules may name")
        if self.remember is not None:
            # A remembered approval must never reach someone the approved call did not.
            kept = {item.arg for item in self.remember}
            for path in self.egress:
                if path.split(".")[0] not in kept:
                    raise ValueError(f"remember: keeps nothing of the recipient argument {path!r} of {self.name}")
        return self


class Manifest(Strict):
    id: str = Field(pattern=IDENTIFIER, max_length=32)
    name: str
    description: str
    category: str
    scopes: list[Literal["workspace", "personal"]] = Field(min_length=1)
    open_world: bool = Field(default=True, description="False only for apps whose tools touch nothing outside Harmony.")
    auto_install: bool = Field(
        default=False, description="Installed in every workspace when it is created (Harmony's own data)."
    )
    auth: AuthSpec
    api: ApiSpec | None = None
    sync: SyncSpec | None = None
    options: list[SetupField] = Field(
        default_factory=list, description="Settings a person can change after connecting, e.g. calendars to read."
    )
    tools: list[ToolSpec] = Field(min_length=1)

    # The app's api.classify function, bound by the registry: the shared client reads answers through it.
    _classify: Classify | None = PrivateAttr(default=None)

    @property
    def classify(self) -> Classify | None:
        """The app's hook reading its provider's answers, once the registry bound it."""
        return self._classify

    def bind_classify(self, hook: Classify) -> None:
        self._classify = hook

    @model_validator(mode="after")
    def _no_credential_in_default_headers(self) -> Manifest:
        key = self.auth.api_key
        if self.api and key and key.header.lower() in {h.lower() for h in self.api.headers}:
            raise ValueError(f"api.headers.{key.header}: the API key's header comes from the connection")
        return self

    @model_validator(mode="after")
    def _api_placeholders_are_setup_fields(self) -> Manifest:
        fields = {f.name for f in self.auth.fields}
        for name in re.findall(r"{([^{}]+)}", self.api.base_url or "" if self.api else ""):
            if name not in fields:
                raise ValueError(f"api.base_url: {{{name}}} is not a setup field")
        return self

    @model_validator(mode="after")
    def _reads_are_reads_of_this_app(self) -> Manifest:
        tools = {tool.name: tool for tool in self.tools}
        for index, tool in enumerate(self.tools):
            reads: list[tuple[str, ReadSpec, list[str]]] = [
                (f"shown_as.{name}", spec, [spec.field]) for name, spec in tool.shown_as.items()
            ]
            if tool.current is not None:
                reads.append(("current", tool.current, list(tool.current.fields.values())))
            for where, spec, shown in reads:
                problem = _read_problem(tools.get(spec.tool), spec, shown)
                if problem:
                    raise ValueError(f"tools[{index}].{where}: {problem}")
        return self

    @model_validator(mode="after")
    def _tool_names(self) -> Manifest:
        seen: set[str] = set()
        for index, tool in enumerate(self.tools):
            if not tool.name.startswith(f"{self.id}_"):
                raise ValueError(f"tools[{index}].name: {tool.name!r} must start with the app id, '{self.id}_'")
            if tool.name in seen:
                raise ValueError(f"tools[{index}].name: duplicate tool name {tool.name!r}")
            seen.add(tool.name)
        return self


def _read_problem(read: ToolSpec | None, spec: ReadSpec, shown: list[str]) -> str | None:
    """What is wrong with a card's read of another tool of the app, or None."""
    if read is None:
        return f"{spec.tool!r} is not a tool of this app"
    if read.risk is not Risk.READ:
        return f"{spec.tool!r} is a {read.risk.value} tool; a card only reads"
    inputs = set(read.input_schema.get("properties", {}))
    for name in [*spec.arguments, *([spec.argument] if spec.argument else [])]:
        if name not in inputs:
            return f"{name!r} is not an argument of {spec.tool}"
    answer: dict[str, Any] | None = read.output_schema
    if spec.items is not None:
        listed = read.output_schema.get("properties", {}).get(spec.items)
        answer = listed.get("items") if isinstance(listed, dict) and listed.get("type") == "array" else None
        if not isinstance(answer, dict):
            return f"{spec.tool} answers no list {spec.items!r}"
    fields = set((answer or {}).get("properties", {}))
    for name in [*spec.match, *shown]:
        if name not in fields:
            return f"{spec.tool} answers no field {name!r}" + (f" in {spec.items}" if spec.items else "")
    return None


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def parse_manifest(path: Path) -> Manifest:
    """Read and validate one manifest file; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ManifestError([f"{path}: not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ManifestError([f"{path}: a manifest must be a mapping of fields"])
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = _location(err["loc"])
            message = re.sub(r"^Value error, ", "", err["msg"])
            if err["type"] == "missing":
                message = "field required"
            # Model-level checks name their field inside the message.
            problems.append(f"{path}: {message}" if field == "(root)" else f"{path}: {field}: {message}")
        raise ManifestError(problems) from None


def manifest_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
