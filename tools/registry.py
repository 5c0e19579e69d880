"""The tool registry: manifests joined to the adapter functions that carry them out.

Loading checks everything a broken manifest could get wrong before the server
takes a single call: the YAML, the schemas, that each adapter exists, that its
argument model agrees with the input schema in fields, types and defaults, and
that names are unique.

Apps are plugins. Each is an entry point in the ``harmony_companion.apps``
group: its name is the app's id, its value the app's adapter module, and that
module's ``MANIFEST`` is the path of the app's manifest file. The shipped apps
register this way too (in ``pyproject.toml``), so an installed distribution
adds an app exactly as Companion adds its own.
"""

from __future__ import annotations

import importlib
import inspect
import os
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaViolation
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as ModelViolation
from pydantic.errors import PydanticUserError

from tools import canonical
from tools.context import ToolContext
from tools.errors import InvalidArguments
from tools.manifest import Manifest, ManifestError, Risk, ToolSpec, manifest_files, parse_manifest
from tools.sync import SyncRecord

ADAPTER_PACKAGES = ("tools.adapters",)
APPS_GROUP = "harmony_companion.apps"

Adapter = Callable[[ToolContext, Any], Awaitable[Any]]

_ANNOTATIONS: dict[Risk, dict[str, bool]] = {
    Risk.READ: {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True},
    Risk.WRITE: {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False},
    Risk.SEND: {"readOnlyHint": False, "destructiveHint": False, "idempotentHint": False},
    Risk.DELETE: {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": True},
}


def _field_of(error: SchemaViolation) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    # An error the validator raised has its validator's value and schema set; the stubs also allow "unset".
    required, schema = error.validator_value, error.schema
    if error.validator == "required" and isinstance(error.instance, dict) and isinstance(required, list):
        missing = [name for name in required if name not in error.instance]
        return ".".join(filter(None, [path, missing[0] if missing else ""]))
    if error.validator == "additionalProperties" and isinstance(error.instance, dict) and isinstance(schema, Mapping):
        allowed = set(schema.get("properties", {}))
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
            # Both as written and as kept: "#C0LEADERS1" names an id, though its canonical form looks like a name.
            for item in [*(value if many else [value]), *(canonical if many else [canonical])]:
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


@dataclass(frozen=True)
class AdapterModules:
    """Where a manifest's ``module.function`` references are looked up: the module an installed app registered
    under that name first, then ``<package>.<module>`` in each package in turn."""

    registered: Mapping[str, ModuleType]
    packages: tuple[str, ...]

    def find(self, name: str) -> ModuleType | None:
        module = self.registered.get(name)
        return module if module is not None else _import_adapter_module(name, self.packages)

    def searched(self, name: str) -> str:
        return ", ".join([f"app {name!r} in {APPS_GROUP}", *(f"{p}.{name}" for p in self.packages)])


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
    path: Path, index: int, spec: ToolSpec, modules: AdapterModules
) -> tuple[Adapter, type[BaseModel]]:
    where = f"{path}: tools[{index}].adapter"
    module_name, _, function_name = spec.adapter.partition(".")
    module = modules.find(module_name)
    if module is None:
        raise ManifestError(
            [f"{where}: no adapter module {module_name!r} (looked for {modules.searched(module_name)})"]
        )
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
    sync: Callable[[ToolContext, str | None], AsyncIterator[SyncRecord]] | None = None
    push: Callable[[ToolContext, str | None, dict[str, Any]], Awaitable[str]] | None = None
    choices: dict[str, Callable[[ToolContext], Awaitable[list[dict[str, Any]]]]] = field(default_factory=dict)


def _resolve_hooks(path: Path, manifest: Manifest, modules: AdapterModules) -> AppHooks:
    problems: list[str] = []

    def find(where: str, reference: str | None, check: Callable[[Any], bool], shape: str) -> Any:
        if reference is None:
            return None
        module_name, _, function_name = reference.partition(".")
        module = modules.find(module_name)
        function = getattr(module, function_name, None) if module else None
        if function is None or not check(function):
            problems.append(f"{path}: {where}: {reference} is not {shape}")
        return function

    classify = find(
        "api.classify",
        manifest.api.classify if manifest.api else None,
        lambda f: callable(f) and not inspect.iscoroutinefunction(f),
        "a function (httpx.Response) -> Reading | None",
    )
    if classify is not None:
        manifest.bind_classify(classify)

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


def _resolve_canonical_hooks(path: Path, index: int, spec: ToolSpec, modules: AdapterModules) -> HooksOfTool:
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
            module = modules.find(module_name)
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
    problems.extend(_type_and_default_problems(where, spec.input_schema, model))
    if problems:
        raise ManifestError(problems)


_JSON_TYPE_OF: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (type(None), "null"),
    (list, "array"),
    (dict, "object"),
)


def _type_of(value: Any) -> str:
    return next((name for kind, name in _JSON_TYPE_OF if isinstance(value, kind)), "object")


def _json_types(node: Any, defs: Mapping[str, Any]) -> frozenset[str] | None:
    """The JSON types a schema admits; None where it does not say (no type, or a combination left unread)."""
    if not isinstance(node, dict):
        return None
    if isinstance(node.get("$ref"), str):
        return _json_types(defs.get(node["$ref"].rsplit("/", 1)[-1]), defs)
    if "const" in node:
        return frozenset({_type_of(node["const"])})
    if isinstance(node.get("enum"), list):
        return frozenset(_type_of(value) for value in node["enum"])
    declared = node.get("type")
    if isinstance(declared, str):
        return frozenset({declared})
    if isinstance(declared, list):
        return frozenset(str(t) for t in declared)
    for combination in ("anyOf", "oneOf"):
        if isinstance(node.get(combination), list):
            parts = [_json_types(part, defs) for part in node[combination]]
            known = [part for part in parts if part is not None]
            return frozenset[str]().union(*known) if len(known) == len(parts) else None
    return None


def _admits(types: frozenset[str], other: frozenset[str]) -> bool:
    """Every value of a type in ``other`` is of a type in ``types``: a JSON integer is a number too."""
    return all(t in types or (t == "integer" and "number" in types) for t in other)


def _resolved(node: Any, defs: Mapping[str, Any]) -> Any:
    while isinstance(node, dict) and isinstance(node.get("$ref"), str):
        node = defs.get(node["$ref"].rsplit("/", 1)[-1])
    if isinstance(node, dict) and isinstance(node.get("anyOf"), list):
        # Optional[X]: what matters below is X's items or properties.
        others = [part for part in node["anyOf"] if not (isinstance(part, dict) and part.get("type") == "null")]
        if len(others) == 1:
            return _resolved(others[0], defs)
    return node


def _type_problems(
    where: str, name: str, declared: Any, modelled: Any, defs: Mapping[str, Any], optional: bool, owner: str
) -> list[str]:
    """Where the manifest's schema of one argument and the model's disagree on a JSON type, arrays' items and
    nested objects' properties included. The model may also take null for an argument it defaults to None."""
    declared_types, modelled_types = _json_types(declared, defs), _json_types(modelled, defs)
    problems = []
    if declared_types is not None and modelled_types is not None:
        if optional and "null" not in declared_types:
            modelled_types = modelled_types - {"null"}
        if not (_admits(modelled_types, declared_types) and _admits(declared_types, modelled_types)):
            problems.append(
                f"{where}: properties.{name}: type {'|'.join(sorted(declared_types))} but {owner} takes "
                f"{'|'.join(sorted(modelled_types))}"
            )
            return problems
    declared, modelled = _resolved(declared, {}), _resolved(modelled, defs)
    if not (isinstance(declared, dict) and isinstance(modelled, dict)):
        return problems
    if "items" in declared and "items" in modelled:
        problems += _type_problems(where, f"{name}[]", declared["items"], modelled["items"], defs, False, owner)
    inner, modelled_inner = declared.get("properties"), modelled.get("properties")
    if isinstance(inner, dict) and isinstance(modelled_inner, dict):
        for key in sorted(set(inner) & set(modelled_inner)):
            problems += _type_problems(where, f"{name}.{key}", inner[key], modelled_inner[key], defs, True, owner)
    return problems


def _type_and_default_problems(where: str, schema: dict[str, Any], model: type[BaseModel]) -> list[str]:
    """The schema and the model must agree on each argument's JSON type, and on the default of each argument
    the schema gives one: a caller reads the schema, the adapter gets the model's value."""
    owner = model.__name__
    try:
        modelled = model.model_json_schema(by_alias=True, mode="validation")
    except PydanticUserError as exc:
        return [f"{where}: {owner} cannot be described as JSON Schema to compare: {exc}"]
    defs: dict[str, Any] = modelled.get("$defs", {})
    properties: dict[str, Any] = schema.get("properties", {})
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    problems: list[str] = []
    for name in sorted(set(properties) & set(fields) & set(modelled.get("properties", {}))):
        info, declared = fields[name], properties[name]
        optional = not info.is_required() and info.get_default(call_default_factory=True) is None
        problems += _type_problems(where, name, declared, modelled["properties"][name], defs, optional, owner)
        if not isinstance(declared, dict) or "default" not in declared:
            continue
        default = declared["default"]
        if not Draft202012Validator(declared).is_valid(default):
            problems.append(f"{where}: properties.{name}: default {default!r} is not valid for its own schema")
            continue
        if info.is_required():
            continue  # the required lists differ, said above
        try:
            meant = TypeAdapter[Any](info.annotation).validate_python(default) if info.annotation else default
        except ModelViolation:
            meant = default
        actual = info.get_default(call_default_factory=True)
        if meant != actual:
            problems.append(f"{where}: properties.{name}: default {default!r} but {owner} defaults to {actual!r}")
    return problems


@dataclass(frozen=True)
class RegisteredApp:
    """One entry point of the ``harmony_companion.apps`` group, loaded: the app's id, adapter module and manifest."""

    id: str
    module: ModuleType
    manifest: Path
    origin: str


def registered_apps(group: str = APPS_GROUP) -> tuple[list[RegisteredApp], list[str]]:
    """The apps installed distributions register in ``group``, by id; and a problem for each broken entry point.

    Read from the installed distributions' metadata on every call, so an app installed while the process
    runs is seen by the next registry built.
    """
    apps: dict[str, RegisteredApp] = {}
    problems: list[str] = []
    for point in sorted(entry_points(group=group), key=lambda p: (p.name, p.value)):
        origin = f"entry point {point.name} = {point.value}" + (f" of {point.dist.name}" if point.dist else "")
        if point.name in apps:
            problems.append(f"{origin}: app {point.name!r} is registered twice, also by {apps[point.name].origin}")
            continue
        try:
            module = point.load()
        except Exception as exc:  # a broken plugin is reported with the rest, not a crash at start
            problems.append(f"{origin}: cannot be imported: {type(exc).__name__}: {exc}")
            continue
        manifest = getattr(module, "MANIFEST", None)
        if not isinstance(module, ModuleType) or not isinstance(manifest, str | os.PathLike):
            problems.append(f"{origin}: must name an adapter module whose MANIFEST is the path of its manifest")
            continue
        path = Path(manifest)
        if not path.is_file():
            problems.append(f"{origin}: MANIFEST {path} is not a file")
            continue
        apps[point.name] = RegisteredApp(point.name, module, path, origin)
    return list(apps.values()), problems


class Registry:
    """Every app and tool the server offers, checked and ready to call."""

    def __init__(
        self, manifests: dict[str, Manifest], tools: dict[str, RegisteredTool], hooks: dict[str, AppHooks]
    ) -> None:
        self.manifests = manifests
        self.tools = tools
        self.hooks = hooks

    @classmethod
    def load(
        cls, *directories: Path, adapter_packages: tuple[str, ...] = ADAPTER_PACKAGES, plugins: bool = True
    ) -> Registry:
        """Every app registered in the ``harmony_companion.apps`` entry-point group (unless ``plugins`` is
        false), and every manifest in ``directories``; raise ManifestError listing every problem found.

        A manifest in a directory takes the place of the registered app with its id, whose adapter module
        it keeps: so ``companion manifests validate DIR`` checks an edited manifest in place of the installed
        one. Adapter references (``module.function``) name a registered app's module, or else a module in
        ``adapter_packages``, tried in order.
        """
        problems: list[str] = [f"{d}: not a directory of manifests" for d in directories if not d.is_dir()]
        if problems:
            raise ManifestError(problems)
        registered, problems = registered_apps() if plugins else ([], [])
        modules = AdapterModules({app.id: app.module for app in registered}, adapter_packages)
        manifests: dict[str, Manifest] = {}
        tools: dict[str, RegisteredTool] = {}
        hooks: dict[str, AppHooks] = {}
        owner_of_tool: dict[str, Path] = {}
        owner_of_app: dict[str, Path] = {}
        parsed: list[tuple[Path, Manifest]] = []
        for path in [path for directory in directories for path in manifest_files(directory)]:
            try:
                parsed.append((path, parse_manifest(path)))
            except ManifestError as exc:
                problems.extend(exc.problems)
        given = {manifest.id for _, manifest in parsed}
        from_plugins: list[tuple[Path, Manifest]] = []
        for app in registered:
            if app.id in given:
                continue
            try:
                manifest = parse_manifest(app.manifest)
            except ManifestError as exc:
                problems.extend(exc.problems)
                continue
            if manifest.id != app.id:
                problems.append(f"{app.manifest}: id: {manifest.id!r} but {app.origin} registers it as {app.id!r}")
                continue
            from_plugins.append((app.manifest, manifest))
        for path, manifest in from_plugins + parsed:
            if manifest.id in owner_of_app:
                problems.append(f"{path}: id: duplicate app id {manifest.id!r}, also in {owner_of_app[manifest.id]}")
                continue
            owner_of_app[manifest.id] = path
            manifests[manifest.id] = manifest
            try:
                hooks[manifest.id] = _resolve_hooks(path, manifest, modules)
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
                    adapter, model = _resolve_adapter(path, index, spec, modules)
                    _check_model_matches_schema(path, index, spec, model)
                    hooks_of_tool = _resolve_canonical_hooks(path, index, spec, modules)
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
            where = ", ".join(
                [*map(str, directories), f"entry points {APPS_GROUP}"] if plugins else map(str, directories)
            )
            raise ManifestError([f"{where}: no manifests (*.yaml) found"])
        return cls(manifests, tools, hooks)

    def tools_of(self, app: str) -> list[RegisteredTool]:
        return [tool for tool in self.tools.values() if tool.app == app]
