"""The version of the installed distribution, as ``/healthz``, MCP's ``initialize`` and the OpenAPI document say."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    try:
        return version("harmony-companion")
    except PackageNotFoundError:
        return "0+unknown"
