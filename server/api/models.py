"""AI models: which of the models file's models the caller's workspace lets Companion use.

Any valid key may read it, an assistant's agent key included: the assistant's
host is who needs to know which models it may run with.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.requests import Request

from server.api.auth import principal_of
from server.api.router import ApiRouter
from server.api.services import services_of
from server.services.ai_models import AiModel, catalogue_of, enabled_models

api = ApiRouter("Models")


class EnabledModels(BaseModel):
    data: list[AiModel]


@api.get("/models", response=EnabledModels, summary="List the AI models enabled for this workspace")
async def list_models(request: Request) -> EnabledModels:
    principal = principal_of(request)
    services = services_of(request)
    async with services.db.session() as session:
        models = await enabled_models(session, principal.workspace_id, catalogue_of(services.settings))
    return EnabledModels(data=models)
