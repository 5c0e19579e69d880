"""The background worker that processes uploaded meetings, one job at a time, for as long as the server runs.

Every replica may run one: jobs are claimed with a lease (``server.services.processing.jobs``), so each runs once.
Started with the server, it first finds what a previous run left: queued jobs are due at once, jobs left
running by a process that died become due when their lease runs out, and the partial files of uploads it
was receiving are removed.

Steps are looked up by name among the built-in ones and those installed packages declare as entry points
of the ``companion.processing_steps`` group (an entry point names a ``Step`` class or instance)::

    [project.entry-points."companion.processing_steps"]
    whisper = "companion_whisper:WhisperStep"
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from importlib.metadata import entry_points

import httpx

from server.services.processing import jobs, storage
from server.services.processing.jobs import LeaseLost
from server.services.processing.pipeline import PROCESS_MEETING, Pipeline, Step, StepRegistry
from server.services.processing.steps.transcript_file import TranscriptFile
from server.settings import Settings
from store.db import Database

log = logging.getLogger(__name__)

STEP_PLUGINS = "companion.processing_steps"


def step_registry() -> StepRegistry:
    """The built-in steps and every installed plug-in's."""
    registry = StepRegistry([TranscriptFile()])
    for entry in entry_points(group=STEP_PLUGINS):
        loaded = entry.load()
        step: Step = loaded() if isinstance(loaded, type) else loaded
        registry.register(step)
    return registry


def pipeline_for(settings: Settings, db: Database, http: httpx.AsyncClient) -> Pipeline:
    steps = step_registry().resolve(tuple(settings.processing_steps))
    return Pipeline(db, steps, data_dir=settings.data_dir, http=http, settings=settings)


def worker_name() -> str:
    """Who holds a lease, as people reading the jobs table would want to know: host, process, and a tag."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


async def work_once(db: Database, pipeline: Pipeline, name: str) -> bool:
    """Claim one due job and process it; False when there was nothing to do."""
    claimed = await jobs.claim(db, name, [PROCESS_MEETING])
    if not claimed:
        return False
    claim = claimed[0]
    try:
        await jobs.run_leased(db, claim, pipeline.process(claim))
    except LeaseLost:
        log.warning("job %s was taken over by another worker; this attempt's result is dropped", claim.job_id)
    return True


async def worker(settings: Settings, db: Database, http: httpx.AsyncClient) -> None:
    """Process uploads until cancelled; an error is logged and the loop goes on."""
    pipeline = pipeline_for(settings, db, http)
    name = worker_name()
    swept = await asyncio.to_thread(storage.sweep_abandoned, settings.data_dir / "recordings")
    if swept:
        log.info("removed %d partial upload file(s) left by a process that stopped mid-upload", swept)
    log.info("upload processing worker %s started with steps %s", name, ", ".join(s.name for s in pipeline.steps))
    while True:
        try:
            busy = await work_once(db, pipeline, name)
        except Exception:
            log.exception("upload processing worker %s: a round failed", name)
            busy = False
        if not busy:
            await asyncio.sleep(settings.processing_poll_seconds)
