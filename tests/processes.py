"""Real ``companion serve`` processes on 127.0.0.1, for tests that need a server to start, stop or die."""

from __future__ import annotations

import asyncio
import subprocess
import time

import httpx2

from tests.conftest import COMPANION


def start(env: dict[str, str], port: int, *options: str) -> subprocess.Popen[bytes]:
    """``companion serve`` on 127.0.0.1:``port`` with ``options`` added; it is up once ``healthy`` returns."""
    return subprocess.Popen(
        [COMPANION, "serve", "--host", "127.0.0.1", "--port", str(port), *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def healthy(base: str) -> None:
    deadline = time.monotonic() + 30
    async with httpx2.AsyncClient(base_url=base) as http:
        while True:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            await asyncio.sleep(0.1)
