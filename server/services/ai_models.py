"""The AI models Companion can work with, read from a YAML file, and which of them a workspace has turned on.

The list is configuration (``server/models.yaml``, or ``COMPANION_MODELS_FILE``);
each workspace's choices are rows of ``workspace_models``. A model without a
row is on or off as the file's ``enabled_by_default`` says.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from server.settings import Settings, SettingsError
from store.db import dialect_name
from store.models import WorkspaceModel, utcnow

# Configuration, beside the settings (server/models.yaml), not beside this use case.
SHIPPED_MODELS_FILE = Path(__file__).parent.parent / "models.yaml"


class ModelsFileError(SettingsError):
    """The models file cannot be used; the message names the file and each bad field."""


class AiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._:-]*$", max_length=200)
    name: str = Field(min_length=1)
    provider: str = Field(min_length=1)
    description: str = ""
    context_window: int = Field(gt=0, description="Tokens the model reads at once.")
    max_output: int | None = Field(default=None, gt=0, description="Tokens the model writes in one answer.")
    enabled_by_default: bool = True


class ModelsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[AiModel] = Field(min_length=1)

    @field_validator("models")
    @classmethod
    def _ids_are_unique(cls, models: list[AiModel]) -> list[AiModel]:
        ids = [m.id for m in models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate model id {', '.join(duplicates)}")
        return models


def _location(loc: tuple[int | str, ...]) -> str:
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", ".".join(str(p) for p in loc)) or "(root)"


@functools.lru_cache(maxsize=4)
def _parse(path: Path, _modified: int) -> tuple[AiModel, ...]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelsFileError(f"{path}: cannot be read as YAML: {exc}") from None
    try:
        return tuple(ModelsFile.model_validate(raw).models)
    except ValidationError as exc:
        problems = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ModelsFileError(f"{path}: {problems}") from None


def load_models(path: Path) -> tuple[AiModel, ...]:
    """The models in ``path``, parsed again only when the file changes."""
    try:
        modified = path.stat().st_mtime_ns
    except OSError as exc:
        raise ModelsFileError(f"{path}: cannot be read: {exc.strerror}") from None
    return _parse(path, modified)


def catalogue_of(settings: Settings) -> tuple[AiModel, ...]:
    return load_models(settings.models_file or SHIPPED_MODELS_FILE)


@dataclass(frozen=True)
class ModelChoice:
    """A model as one workspace has it: on or off, and who last changed that."""

    model: AiModel
    enabled: bool
    changed_by: str | None = None
    changed_at: datetime | None = None


async def workspace_models(
    session: AsyncSession, workspace_id: str, catalogue: tuple[AiModel, ...]
) -> list[ModelChoice]:
    """Every model in the catalogue, in its order, with this workspace's choice."""
    rows = {
        row.model_id: row
        for row in await session.scalars(select(WorkspaceModel).where(WorkspaceModel.workspace_id == workspace_id))
    }
    choices = []
    for model in catalogue:
        row = rows.get(model.id)
        if row is None:
            choices.append(ModelChoice(model, model.enabled_by_default))
        else:
            choices.append(ModelChoice(model, row.enabled, row.changed_by, row.changed_at))
    return choices


async def enabled_models(session: AsyncSession, workspace_id: str, catalogue: tuple[AiModel, ...]) -> list[AiModel]:
    """The models Companion may use in this workspace."""
    return [choice.model for choice in await workspace_models(session, workspace_id, catalogue) if choice.enabled]


async def set_model_enabled(
    session: AsyncSession,
    workspace_id: str,
    catalogue: tuple[AiModel, ...],
    model_id: str,
    *,
    enabled: bool,
    by: str,
) -> ModelChoice:
    """Turn a model on or off for the workspace; a model the catalogue does not list is a LookupError."""
    model = next((m for m in catalogue if m.id == model_id), None)
    if model is None:
        raise LookupError(f"There is no model {model_id!r} in the models file.")
    now = utcnow()
    values = {"enabled": enabled, "changed_by": by, "changed_at": now}
    # An upsert, so two admins turning the same model on at once both succeed.
    insert = (postgresql.insert if dialect_name(session) == "postgresql" else sqlite.insert)(WorkspaceModel)
    await session.execute(
        insert.values(workspace_id=workspace_id, model_id=model_id, **values).on_conflict_do_update(
            index_elements=["workspace_id", "model_id"], set_=values
        )
    )
    return ModelChoice(model, enabled, by, now)
