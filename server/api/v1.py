"""Everything under /api/v1: the routers of each resource, and the OpenAPI document that lists them.

A resource module declares its operations on an ``ApiRouter``; listing it here
mounts its routes and puts it in the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from server.api import (
    approvals,
    assistants,
    contacts,
    in_chat_policy,
    insights,
    integrations,
    keys,
    meetings,
    models,
    notifications,
    rules,
    uploads,
    webhooks,
    workspace_sign_in,
)
from server.api.openapi import openapi_document
from server.api.router import ApiRouter
from server.api.services import services_of
from server.version import package_version

ROUTERS: list[ApiRouter] = [
    meetings.api,
    contacts.api,
    insights.api,
    keys.api,
    in_chat_policy.api,
    notifications.api,
    assistants.api,
    workspace_sign_in.api,
    webhooks.api,
    uploads.api,
    models.api,
    approvals.api,
    rules.api,
    integrations.api,
]


def document(base_url: str) -> dict[str, Any]:
    operations = [operation for router in ROUTERS for operation in router.operations]
    return openapi_document(
        operations,
        title="Harmony Companion API",
        version=package_version(),
        server_url=f"{base_url}/api/v1",
    )


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document(services_of(request).settings.base_url))


def routes() -> list[BaseRoute]:
    declared = [route for router in ROUTERS for route in router.routes()]
    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *declared,
    ]
