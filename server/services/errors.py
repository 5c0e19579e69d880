"""How a use case refuses: one base with ``code``, ``message`` and ``details``, no HTTP in it.

The front ends map these at their edge: REST to a status and its error body
(``server.api.errors.from_service``), the CLI to one line, the console to a
page. The message is written for the person who asked, so it may be shown as is.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from store.errors import CompanionError


class ServiceError(CompanionError):
    """A refusal; ``code`` says which kind, ``details`` carries what a program may act on."""

    code = "refused"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details=details)


class NotFound(ServiceError):
    """No such object that the actor may see: another's object is not found either, so none is revealed."""

    code = "not_found"


class Forbidden(ServiceError):
    """The actor may see the thing but not do this to it (a member changing a workspace rule, a plan's limit)."""

    code = "forbidden"


class Conflict(ServiceError):
    """The object is not in a state that allows this now (a delivery not failed, an endpoint paused)."""

    code = "conflict"


class InvalidInput(ServiceError):
    """Values that cannot be used; ``fields`` maps each bad field to its problem, and the message lists them."""

    code = "invalid_request"

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(
            "; ".join(f"{name}: {problem}" for name, problem in fields.items()), details={"fields": fields}
        )
        self.fields = fields

    @classmethod
    def of(cls, exc: ValidationError, *, prefix: str = "") -> InvalidInput:
        return cls(fields_of(exc, prefix=prefix))


class InvalidArguments(InvalidInput):
    """Arguments a tool's input schema refuses (``arguments.<path>``): the call described could not be made."""

    code = "invalid_arguments"


def fields_of(exc: ValidationError, *, prefix: str = "") -> dict[str, str]:
    """A pydantic error as ``{field: problem}``, each field a dotted path under ``prefix``."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        location = ".".join(str(p) for p in err["loc"]) or "(body)"
        message = err["msg"].removeprefix("Value error, ")
        head, _, rest = message.partition(": ")
        if err["type"] == "value_error" and rest and " " not in head:
            # Model-level checks name their own field first ("cap: only an allow rule ...").
            location, message = ".".join(filter(None, [location if location != "(body)" else "", head])), rest
        fields[f"{prefix}{location}"] = message
    return fields
