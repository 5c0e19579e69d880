"""Listing meetings at 100,000 meetings: page 1 against deep pages, by page number (OFFSET) and by cursor (keyset).

The real app runs in process over httpx's ASGI transport on a SQLite file (or
``--database-url`` PostgreSQL) seeded with the demo workspace plus N meetings.
For each of four requests it prints the median of ``--repeat`` runs:

- offset, page 1 and the last page (``page=N/per_page``);
- cursor, the page after the first (the first page has no cursor yet, and counts
  the total like page 1 does) and a page that starts ``--depth`` rows in.

A cursor's deep page should cost within 1.5x of its first page; an offset's
grows with the depth it skips.

    .venv/bin/python bench/api.py [--meetings 100000] [--per-page 20] [--repeat 25]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.app import Companion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "bench-secret"


async def seed(companion: Companion, count: int) -> tuple[str, str]:
    """The demo workspace, then ``count`` meetings in bulk; returns the admin's key and the workspace id."""
    from sqlalchemy import insert

    from server.services import demo
    from store.directory import workspace_by_slug
    from store.models import Meeting, MeetingStatus, new_id

    async with companion.db.transaction() as session:
        keys = await demo.seed(session, companion.registry, companion.box, SECRET.encode())
        workspace = await workspace_by_slug(session, "acme")
    rng = random.Random(7)
    start = datetime(2020, 1, 1, tzinfo=UTC)
    batch = 5000
    for first in range(0, count, batch):
        rows = [
            {
                "id": new_id("mtg"),
                "workspace_id": workspace.id,
                "title": f"Call {n}",
                "date": start + timedelta(minutes=rng.randrange(0, 3_000_000)),
                "duration": 1800,
                "status": MeetingStatus.PROCESSED,
            }
            for n in range(first, min(first + batch, count))
        ]
        async with companion.db.transaction() as session:
            await session.execute(insert(Meeting), rows)
    return keys.keys["admin@acme.test"], workspace.id


async def main(meetings: int, per_page: int, repeat: int, depth: int, database_url: str | None) -> None:
    import httpx
    from sqlalchemy import select

    from server.app import Companion, create_app
    from server.settings import Settings
    from store.migrate import upgrade_async
    from store.models import Meeting
    from tools.pagination import encode_cursor

    data = Path(tempfile.mkdtemp())
    url = database_url or f"sqlite+aiosqlite:///{data / 'bench.db'}"
    await upgrade_async(url)
    settings = Settings(database_url=url, data_dir=data, secret_key=SECRET, run_workers=False, auto_sync_minutes=0)
    companion = Companion.build(settings)
    started = time.perf_counter()
    key, workspace_id = await seed(companion, meetings)
    print(f"seeded {meetings:,} meetings in {time.perf_counter() - started:.1f} s ({url.split(':')[0]})")
    async with companion.db.session() as session:
        total = len((await session.execute(select(Meeting.id).where(Meeting.workspace_id == workspace_id))).all())
        deep_row = (
            await session.execute(
                select(Meeting.date, Meeting.id)
                .where(Meeting.workspace_id == workspace_id)
                .order_by(Meeting.date.desc(), Meeting.id.desc())
                .offset(depth - 1)
                .limit(1)
            )
        ).one()
    deep_cursor = encode_cursor(deep_row.date, deep_row.id)
    last_page = total // per_page
    app = create_app(companion)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://127.0.0.1:8000/api/v1",
            headers={"Authorization": f"Bearer {key}"},
        ) as client,
    ):
        second = (await client.get("/meetings", params={"per_page": per_page})).json()["pagination"]["next_cursor"]
        cases = {
            "offset page 1": {"per_page": per_page},
            f"offset page {last_page:,}": {"per_page": per_page, "page": last_page},
            "cursor page 2": {"per_page": per_page, "cursor": second},
            f"cursor {depth:,} rows in": {"per_page": per_page, "cursor": deep_cursor},
        }
        timings: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(repeat):
            for name, params in cases.items():
                query = {k: v for k, v in params.items() if v is not None}
                began = time.perf_counter()
                answer = await client.get("/meetings", params=query)
                timings[name].append(time.perf_counter() - began)
                assert answer.status_code == 200, answer.text
                assert len(answer.json()["data"]) == per_page
    medians = {name: statistics.median(values) * 1000 for name, values in timings.items()}
    print(f"GET /api/v1/meetings, {per_page} per page, median of {repeat} (ms):")
    for name, value in medians.items():
        print(f"  {name:<24} {value:8.2f}")
    names = list(medians)
    print(f"offset deep / page 1: {medians[names[1]] / medians[names[0]]:.2f}x")
    print(f"cursor deep / page 2: {medians[names[3]] / medians[names[2]]:.2f}x   (target: within 1.5x)")
    print(f"offset deep / cursor deep: {medians[names[1]] / medians[names[3]]:.2f}x")
    await companion.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--meetings", type=int, default=100_000)
    parser.add_argument("--per-page", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=25)
    parser.add_argument("--depth", type=int, default=99_000, help="how deep the cursor's page starts")
    parser.add_argument("--database-url", default=None)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.meetings, arguments.per_page, arguments.repeat, arguments.depth, arguments.database_url))
