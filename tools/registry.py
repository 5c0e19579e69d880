"""The tool registry: manifests joined to the adapter functions that carry them out.

Loading checks everything a broken manifest could get wrong before the server
takes a single call: the YAML, the schemas, that each adapter exists, that its
argument model agrees with the input schema, and that names are unique.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation
from pydantic import BaseModel
from pydantic import ValidationError as ModelViolation

from tools import canonical
from tools.context import ToolContext
from tools.errors import InvalidArguments
from tools.manifest import Manifest, ManifestError, Risk, ToolSpec, manifest_files, parse_manifest

ADAPTER_PACKAGES = ("tools.adapters",)

Adapter = Callable[[ToolContext, Any], Awaitable[Any]]

_ANNOTATIONS: dict[Risk, dict[str, bool]] = {
    Risk.READ: {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True},
    Risk.WRITE: {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False},
    Risk.SEND: {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False},
    Risk.DELETE: {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True},
}


def _field_of(error: SchemaViolation) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return ".".join(filter(None, [path, missing[0] if missing else ""]))
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in allowed)
        return ".".join(filter(None, [path, extra[0] if extra else ""]))
    return path or "(arguments)"


@dataclass(frozen=True)
class RegisteredTool:
    manifest: Manifest
    spec: ToolSpec
    adapter: Adapter
    arguments_model: type[BaseModel]
    input_validator: Draft202012Validator
    output_validator: Draft202012Validator
    canonical_hooks: Mapping[str, canonical.Hook] = field(default_factory=dict)
    resolvers: Mapping[str, canonical.Resolver] = field(default_factory=dict)
    rule_forms: Mapping[str, canonical.Hook] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def app(self) -> str:
        return self.manifest.id

    @property
    def risk(self) -> Risk:
        return self.spec.risk

    @property
    def annotations(self) -> dict[str, Any]:
        return {"title": self.spec.title, **_ANNOTATIONS[self.spec.risk], "openWorldHint": self.manifest.open_world}

    @property
    def egress(self) -> tuple[str, ...]:
        """The argument paths naming who or where the call sends to, for rules that cover every recipient."""
        return self.spec.egress

    def canonicalize(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments in the one form that is digested, decided on, shown and run; pure and idempotent."""
        return canonical.canonicalize(self.spec.input_schema, arguments, self.canonical_hooks)

    async def resolve(self, ctx: ToolContext, arguments: dict[str, Any]) -> dict[str, Any]:
        """Canonical, valid arguments with the values only the provider can put in their one form resolved:
        the last step before anything is digested, decided on, shown or run."""
        return await canonical.resolve(ctx, arguments, self.resolvers)

    def canonical_value(self, arg: str, value: Any) -> Any:
        """One value as this tool would canonicalise it in argument ``arg`` (``@recipients``: its first
        egress argument), so a rule's values are compared in the form calls are; ValueError if it has none."""
        name = (self.egress[0] if arg == "@recipients" and self.egress else arg).split(".")[0]
        if "." in arg or name not in self.spec.input_schema.get("properties", {}):
            return value
        schema = self.spec.input_schema["properties"][name]
        many = isinstance(schema, dict) and schema.get("type") == "array"
        try:
            canonical = self.canonicalize({name: [value] if many else value})[name]
        except InvalidArguments as exc:
            raise ValueError(next(iter(exc.fields.values()), str(exc))) from None
        rule_form = self.rule_forms.get(name)
        if rule_form is not None:
            for item in canonical if many else [canonical]:
                if isinstance(item, str):
                    rule_form(item)
        return canonical[0] if many else canonical

    def recipients(self, arguments: dict[str, Any]) -> tuple[str, ...]:
        """Every egress value of canonical arguments, in order, each once."""
        return canonical.recipients(arguments, self.egress)

    def parse_arguments(self, arguments: dict[str, Any]) -> BaseModel:
        """Canonicalise, check against the manifest schema, then type; errors name each field.

        Canonicalising again is a no-op on arguments that already were, so the adapter always
        gets the canonical form, whichever path brought the call here.
        """
        arguments = self.canonicalize(arguments)
        problems: dict[str, str] = {}
        for error in sorted(self.input_validator.iter_errors(arguments), key=lambda e: list(e.absolute_path)):
            problems.setdefault(_field_of(error), error.message)
        if problems:
            raise InvalidArguments(problems)
        try:
            return self.arguments_model.model_validate(arguments)
        except ModelViolation as exc:
            raise InvalidArguments(
                {".".join(str(p) for p in err["loc"]) or "(arguments)": err["msg"] for err in exc.errors()}
            ) from None

    def output_problems(self, result: Any) -> list[str]:
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(result)'}: {e.message}"
            for e in self.output_validator.iter_errors(result)
        ]


def _import_adapter_module(name: str, packages: tuple[str, ...]) -> ModuleType | None:
    for package in packages:
        qualified = f"{package}.{name}"
        try:
            return importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise
    return None


def _resolve_adapter(
    path: Path, index: int, spec: ToolSpec, packages: tuple[str, ...]
) -> tuple[Adapter, type[BaseModel]]:
    where = f"{path}: tools[{index}].adapter"
    module_name, _, function_name = spec.adapter.partition(".")
    module = _import_adapter_module(module_name, packages)
    if module is None:
        searched = ", ".join(f"{p}.{module_name}" for p in packages)
        raise ManifestError([f"{where}: no adapter module {module_name!r} (looked for {searched})"])
    function = getattr(module, function_name, None)
    if function is None or not inspect.iscoroutinefunction(function):
        raise ManifestError([f"{where}: {spec.adapter} is not an async function in {module.__name__}"])
    parameters = list(inspect.signature(function).parameters)
    hints = typing.get_type_hints(function)
    model = hints.get(parameters[1]) if len(parameters) == 2 else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ManifestError([f"{where}: {spec.adapter} must take (ctx, arguments: <pydantic model>)"])
    return function, model


@dataclass(frozen=True)
class AppHooks:
    """An app's functions beyond its tools: the cheap call behind Test connection, and its sync."""

    test: Callable[[ToolContext], Awaitable[str]] | None = None
    account: Callable[[ToolContext], Awaitable[str]] | None = None
    sync: Callable[[ToolContext, str | None], AsyncIterator[Any]] | None = None
    push: Callable[[ToolContext, str | None, dict[str, Any]], Awaitable[str]] | None = None
    choices: dict[str, Callable[[ToolContext], Awaitable[list[dict[str, Any]]]]] = field(default_factory=dict)


def _resolve_hooks(path: Path, manifest: Manifest, packages: tuple[str, ...]) -> AppHooks:
    problems: list[str] = []

    def find(where: str, reference: str | None, check: Callable[[Any], bool], shape: str) -> Any:
        if reference is None:
            return None
        module_name, _, function_name = reference.partition(".")
        module = _import_adapter_module(module_name, packages)
        function = getattr(module, function_name, None) if module else None
        if function is None or not check(function):
            problems.append(f"{path}: {where}: {reference} is not {shape}")
        return function

    hooks = AppHooks(
        test=find(
            "api.test",
            manifest.api.test if manifest.api else None,
            inspect.iscoroutinefunction,
            "an async function (ctx) -> str",
        ),
        account=find(
            "api.account",
            manifest.api.account if manifest.api else None,
            inspect.iscoroutinefunction,
            "an async function (ctx) -> str",
        ),
        sync=find(
            "sync.adapter",
            manifest.sync.adapter if manifest.sync else None,
            inspect.isasyncgenfunction,
            "an async generator (ctx, since) yielding SyncRecord",
        ),
        push=find(
            "sync.push",
            manifest.sync.push if manifest.sync else None,
            inspect.iscoroutinefunction,
            "an async function (ctx, external_id, fields) -> str",
        ),
    )
    for index, option in enumerate(manifest.options):
        function = find(
            f"options[{index}].choices_from",
            option.choices_from,
            inspect.iscoroutinefunction,
            "an async function (ctx) -> [{id, label}]",
        )
        if function is not None:
            hooks.choices[option.name] = function
    if problems:
        raise ManifestError(problems)
    return hooks


@dataclass(frozen=True)
class HooksOfTool:
    canonicalizers: dict[str, canonical.Hook]
    resolvers: dict[str, canonical.Resolver]
    rule_forms: dict[str, canonical.Hook]


def _resolve_canonical_hooks(path: Path, index: int, spec: ToolSpec, packages: tuple[str, ...]) -> HooksOfTool:
    """The functions that put the tool's declared arguments in their one form: plain synchronous functions
    with no I/O (``canonical``), async ones that ask the provider (``resolve``), and the check of a rule's
    value for a resolved argument (``rule_form``)."""
    hooks: dict[str, canonical.Hook] = {}
    resolvers: dict[str, canonical.Resolver] = {}
    rule_forms: dict[str, canonical.Hook] = {}
    problems: list[str] = []
    for where, declared, found, is_async, shape in (
        ("canonical", spec.canonical, hooks, False, "a function (str) -> str"),
        ("resolve", spec.resolve, resolvers, True, "an async function (ctx, str) -> str"),
        ("rule_form", spec.rule_form, rule_forms, False, "a function (str) -> str"),
    ):
        for argument, reference in declared.items():
            module_name, _, function_name = reference.partition(".")
            module = _import_adapter_module(module_name, packages)
            function = getattr(module, function_name, None) if module else None
            if not callable(function) or inspect.iscoroutinefunction(function) is not is_async:
                problems.append(f"{path}: tools[{index}].{where}.{argument}: {reference} is not {shape}")
                continue
            found[argument] = function
    if problems:
        raise ManifestError(problems)
    return HooksOfTool(hooks, resolvers, rule_forms)


def _check_model_matches_schema(path: Path, index: int, spec: ToolSpec, model: type[BaseModel]) -> None:
    """The adapter's argument model and the manifest schema must describe the same fields."""
    where = f"{path}: tools[{index}].input_schema"
    schema_fields = set(spec.input_schema.get("properties", {}))
    model_fields = {f.alias or name for name, f in model.model_fields.items()}
    problems = []
    if schema_fields - model_fields:
        problems.append(f"{where}: properties {sorted(schema_fields - model_fields)} unknown to {model.__name__}")
    if model_fields - schema_fields:
        missing = sorted(model_fields - schema_fields)
        problems.append(f"{where}: {model.__name__} fields {missing} missing from properties")
    schema_required = set(spec.input_schema.get("required", []))
    model_required = {f.alias or name for name, f in model.model_fields.items() if f.is_required()}
    if schema_required != model_required:
        problems.append(
            f"{where}: required {sorted(schema_required)} but {model.__name__} requires {sorted(model_required)}"
        )
    if problems:
        raise ManifestError(problems)


class Registry:
    """Every app and tool the server offers, checked and ready to call."""

    def __init__(
        self, manifests: dict[str, Manifest], tools: dict[str, RegisteredTool], hooks: dict[str, AppHooks]
    ) -> None:
        self.manifests = manifests
        self.tools = tools
        self.hooks = hooks

    @classmethod
    def load(cls, *directories: Path, adapter_packages: tuple[str, ...] = ADAPTER_PACKAGES) -> Registry:
        """Load every manifest in ``directories``; raise ManifestError listing every problem found.

        Adapters are looked up in ``adapter_packages`` in order, so a deployment
        can add apps of its own beside the shipped ones.
        """
        problems: list[str] = [f"{d}: not a directory of manifests" for d in directories if not d.is_dir()]
        if problems:
            raise ManifestError(problems)
        manifests: dict[str, Manifest] = {}
        tools: dict[str, RegisteredTool] = {}
        hooks: dict[str, AppHooks] = {}
        owner_of_tool: dict[str, Path] = {}
        owner_of_app: dict[str, Path] = {}
        for path in [path for directory in directories for path in manifest_files(directory)]:
            try:
                manifest = parse_manifest(path)
            except ManifestError as exc:
                problems.extend(exc.problems)
                continue
            if manifest.id in owner_of_app:
                problems.append(f"{path}: id: duplicate app id {manifest.id!r}, also in {owner_of_app[manifest.id]}")
                continue
            owner_of_app[manifest.id] = path
            manifests[manifest.id] = manifest
            try:
                hooks[manifest.id] = _resolve_hooks(path, manifest, adapter_packages)
            except ManifestError as exc:
                problems.extend(exc.problems)
            for index, spec in enumerate(manifest.tools):
                if spec.name in owner_of_tool:
                    problems.append(
                        f"{path}: tools[{index}].name: duplicate tool name {spec.name!r}, "
                        f"also in {owner_of_tool[spec.name]}"
                    )
                    continue
                owner_of_tool[spec.name] = path
                try:
                    adapter, model = _resolve_adapter(path, index, spec, adapter_packages)
                    _check_model_matches_schema(path, index, spec, model)
                    hooks_of_tool = _resolve_canonical_hooks(path, index, spec, adapter_packages)
                except ManifestError as exc:
                    problems.extend(exc.problems)
                    continue
                checker = Draft202012Validator.FORMAT_CHECKER
                tools[spec.name] = RegisteredTool(
                    manifest=manifest,
                    spec=spec,
                    adapter=adapter,
                    arguments_model=model,
                    input_validator=Draft202012Validator(spec.input_schema, format_checker=checker),
                    output_validator=Draft202012Validator(spec.output_schema, format_checker=checker),
                    canonical_hooks=hooks_of_tool.canonicalizers,
                    resolvers=hooks_of_tool.resolvers,
                    rule_forms=hooks_of_tool.rule_forms,
                )
        if problems:
            raise ManifestError(problems)
        if not manifests:
            raise ManifestError([f"{', '.join(map(str, directories))}: no manifests (*.yaml) found"])
        return cls(manifests, tools, hooks)

    def tools_of(self, app: str) -> list[RegisteredTool]:
        return [tool for tool in self.tools.values() if tool.app == app]
