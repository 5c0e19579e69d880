"""Keeps the garbage collector's full collections short in a long-running server.

CPython's full (generation 2) collection walks every object it tracks, and the
event loop waits while it does. Once ``companion serve`` has built its app,
about 200,000 objects are tracked, nearly all of them for the life of the
process: imported modules, SQLAlchemy's mappers, pydantic's validators, the
MCP SDK, the app manifests. Walked in every full collection, they paused the
loop for 100 to 160 ms under load (``bench/load.py``), and every call in flight
waited that long: a server's p99 is its longest pauses. ``gc.freeze()`` moves
the objects alive now out of the collector's sight, so later full collections
walk only what requests left behind (about 15 ms). Frozen objects are still
freed by reference counting; only cycles among them stay for good.
"""

from __future__ import annotations

import gc


def freeze_long_lived() -> None:
    """Collect what start-up left as garbage, then freeze everything still alive. Call once, after start-up."""
    gc.collect()
    gc.freeze()
