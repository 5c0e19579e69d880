"""Keeps the garbage collector's full collections short in a long-running server.

CPython's full (generation 2) collection walks every object it tracks, and the
event loop waits while it does. Once ``companion serve`` has built its app,
about 200,000 objects are tracked, nearly all of them for the life of the
process: imported modules, SQLAlchemy's mappers, pydantic's validators, the
MCP SDK, the app manifests. Walked in every full collection, they paused the
loop for 100 to 160 ms under load (``bench/load.py``), and every call in flight
waited that long: a server's p99 is its longest pauses. ``gc.freeze()`` moves
the objects alive now out of the collector's sight, so later full collections
walk only what requests left behind. Frozen objects are still freed by
reference counting; only cycles among them stay for good.

What requests leave behind still took 10 to 28 ms to walk, and CPython runs a
full collection after every ten collections of the middle generation: every 2
to 3 s under load, each catching the one or two percent of calls in flight
then, which is where a p99 lives. Nearly all of a request's garbage dies in
the younger generations, so after the freeze full collections are made ten
times rarer; what waits for them meanwhile is a few thousand objects.
"""

from __future__ import annotations

import gc

FULL_COLLECTION_EVERY = 100  # collections of the middle generation per full one; CPython's default is 10


def freeze_long_lived() -> None:
    """Collect what start-up left as garbage, freeze everything still alive, and make full collections rarer.
    Call once, after start-up."""
    gc.collect()
    gc.freeze()
    youngest, middle, _ = gc.get_threshold()
    gc.set_threshold(youngest, middle, FULL_COLLECTION_EVERY)
