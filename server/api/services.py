"""The services the REST API is handed by the composition root (``server.services.wiring.RestServices``)."""

from __future__ import annotations

from starlette.requests import Request

from server.services.wiring import RestServices


def services_of(request: Request) -> RestServices:
    """The REST API's services, which ``server.app`` put on the app's state as ``rest``."""
    services = request.app.state.rest
    if not isinstance(services, RestServices):
        raise TypeError(f"app.state.rest is {type(services).__name__}, not RestServices")
    return services
