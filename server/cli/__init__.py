"""The ``companion`` command: one module per command group, ``main`` in ``server.cli.main``."""

from server.cli.main import main

__all__ = ["main"]
