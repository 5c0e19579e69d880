"""Processing uploads: the job queue, the pipeline and its steps, and the WebVTT and SRT parsers.

An upload goes in over the API; a worker (``work_once``, or the real ``worker`` loop) takes its job.
Webhook events are read from the outbox, where the pipeline writes them with each status change.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from server.app import Companion
from server.services.processing import jobs
from server.services.processing import worker as processing_worker
from server.services.processing.pipeline import (
    NO_TRANSCRIPT,
    PROCESS_MEETING,
    Pipeline,
    ProcessingContext,
    Segment,
    StepFailed,
    StepRegistry,
    SummaryDraft,
)
from server.services.processing.steps.transcript_file import TranscriptError, TranscriptFile, parse_srt, parse_webvtt
from server.services.processing.worker import pipeline_for, step_registry, work_once
from server.services.webhooks.outbox import EVENTS
from server.settings import Settings
from store.directory import workspace_by_slug
from store.models import (
    Insight,
    Job,
    JobStatus,
    Meeting,
    MeetingStatus,
    Recording,
    Summary,
    TranscriptSegment,
    WebhookDelivery,
    WebhookEndpoint,
)
from store.models import utcnow as now
from tests.test_uploads import AUDIO, serving, upload

pytestmark = pytest.mark.anyio

TEAMS_VTT = (
    b"WEBVTT\n\n"
    b"a1b2-3c4d/12-0\n00:00:05.120 --> 00:00:09.300\n<v Alice Archer>Thanks for joining today. Let's go\n"
    b"through the renewal.</v>\n\n"
    b"a1b2-3c4d/13-0\n00:00:09.800 --> 00:00:11.950\n<v Carol Chen>Sounds good.</v>\n"
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"run_workers": False})


@pytest.fixture
async def api(companion, demo_keys):
    async with serving(companion, demo_keys) as api:
        yield api


async def subscribe(companion: Companion) -> None:
    """A webhook endpoint of the demo workspace that wants every event, so the outbox records them all."""
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, "acme")
        session.add(
            WebhookEndpoint(
                workspace_id=workspace.id, url="https://hooks.example/in", events=list(EVENTS), sealed_secret="x"
            )
        )


async def outbox(companion: Companion) -> list[tuple[str, dict[str, Any]]]:
    async with companion.db.session() as session:
        rows = await session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.created_at))
        return [(row.event, json.loads(row.body)["data"]) for row in rows]


async def job_of(companion: Companion, meeting_id: str) -> Job:
    async with companion.db.session() as session:
        return await session.scalar(select(Job).where(Job.subject_id == meeting_id))


async def meeting_of(companion: Companion, meeting_id: str) -> Meeting:
    async with companion.db.session() as session:
        return await session.get(Meeting, meeting_id)


async def uploaded(api, transcript: bytes | None = TEAMS_VTT, **fields: str) -> str:
    async with api.client() as alice:
        answer = await upload(alice, transcript=("call.vtt", transcript, "text/vtt") if transcript else None, **fields)
    assert answer.status_code == 202, answer.text
    return answer.json()["id"]


def shipped_pipeline(companion: Companion) -> Pipeline:
    """The pipeline the server's worker runs, with the steps the settings name."""
    return pipeline_for(companion.settings, companion.db, companion.http)


def pipeline(companion: Companion, *steps: Any) -> Pipeline:
    settings = companion.settings
    return Pipeline(companion.db, list(steps), data_dir=settings.data_dir, http=companion.http, settings=settings)


async def make_due(companion: Companion) -> None:
    async with companion.db.transaction() as session:
        await session.execute(update(Job).where(Job.status == JobStatus.QUEUED).values(run_after=now()))


# --- end to end --------------------------------------------------------------------------------------------


async def test_an_upload_is_processed_and_its_transcript_read_by_the_api_and_the_tool(api, companion):
    await subscribe(companion)
    meeting_id = await uploaded(api)
    assert await work_once(companion.db, shipped_pipeline(companion), "worker-1")
    assert not await work_once(companion.db, shipped_pipeline(companion), "worker-1")  # nothing left

    async with api.client() as alice:
        status = (await alice.get(f"/meetings/{meeting_id}/status")).json()
        over_rest = (await alice.get(f"/meetings/{meeting_id}/transcript")).json()
    assert status["status"] == "processed" and status["error"] is None
    assert status["job"]["state"] == "succeeded" and status["job"]["attempts"] == 1
    expected = [
        {
            "speaker": "Alice Archer",
            "text": "Thanks for joining today. Let's go through the renewal.",
            "timestamp": "00:00:05",
        },
        {"speaker": "Carol Chen", "text": "Sounds good.", "timestamp": "00:00:09"},
    ]
    assert [{k: line[k] for k in ("speaker", "text", "timestamp")} for line in over_rest["transcript"]] == expected

    principal = await companion.principal_for(api.keys["agent:alice@acme.test"])
    result = await companion.gateway.call(principal, "harmony_get_transcript", {"meeting_id": meeting_id})
    assert result.ok, result.message
    assert result.data["transcript"] == expected and result.data["title"] == "Customer Call"

    meeting = await meeting_of(companion, meeting_id)
    assert meeting.status is MeetingStatus.PROCESSED and meeting.duration == 12  # the last cue ends at 11.95 s
    events = await outbox(companion)
    assert [event for event, _ in events] == ["meeting.started", "meeting.processed"]
    assert events[0][1] == {"meeting_id": meeting_id, "title": "Customer Call", "date": "2026-02-01T10:00:00Z"}
    assert events[1][1] == {"meeting_id": meeting_id, "title": "Customer Call", "duration": 12}


async def test_without_a_transcript_or_speech_to_text_the_meeting_fails_saying_why(api, companion):
    await subscribe(companion)
    meeting_id = await uploaded(api, transcript=None)
    assert await work_once(companion.db, shipped_pipeline(companion), "worker-1")
    async with api.client() as alice:
        status = (await alice.get(f"/meetings/{meeting_id}/status")).json()
        transcript = (await alice.get(f"/meetings/{meeting_id}/transcript")).json()
    assert status["status"] == "failed" and status["error"] == NO_TRANSCRIPT
    assert status["job"]["state"] == "failed" and status["job"]["attempts"] == 1  # not retried: it cannot help
    assert transcript["transcript"] == []  # nothing invented
    events = await outbox(companion)
    assert [event for event, _ in events] == ["meeting.started", "meeting.failed"]
    assert events[1][1] == {"meeting_id": meeting_id, "title": "Customer Call", "reason": NO_TRANSCRIPT}


async def test_a_malformed_transcript_fails_the_meeting_naming_the_line(api, companion):
    await subscribe(companion)
    meeting_id = await uploaded(api, transcript=b"WEBVTT\n\n00:00:01.000 --> 00:00:0x.000\nHello\n")
    assert await work_once(companion.db, shipped_pipeline(companion), "worker-1")
    job = await job_of(companion, meeting_id)
    assert job.status is JobStatus.FAILED
    assert job.last_error == (
        "The transcript cannot be read: line 3: '00:00:0x.000' is not a timestamp (expected HH:MM:SS.mmm)"
    )
    assert (await outbox(companion))[-1] == (
        "meeting.failed",
        {"meeting_id": meeting_id, "title": "Customer Call", "reason": job.last_error},
    )


# --- steps as plug-ins ---------------------------------------------------------------------------------------


@dataclass
class SpeechToText:
    """A stand-in for a speech-to-text plug-in: it hears the audio file's size, which is what tests can check."""

    name: str = "speech_to_text"

    async def run(self, context: ProcessingContext) -> None:
        if not context.segments:
            context.segments = [Segment("Speaker 1", f"{context.recording.size} bytes heard", 0.0)]
            context.duration = 60


@dataclass
class Summariser:
    name: str = "summarise"

    async def run(self, context: ProcessingContext) -> None:
        context.summary = SummaryDraft(f"{len(context.segments)} segments", ["one point"])
        context.add_insight("sentiment", "Positive call", {"score": 0.8})
        context.add_insight("topics", "Renewal", {"topics": ["renewal"]})


async def test_plug_in_steps_add_a_transcript_a_summary_and_insights(api, companion):
    await subscribe(companion)
    registry = StepRegistry([TranscriptFile(), SpeechToText(), Summariser()])
    steps = registry.resolve(["transcript_file", "speech_to_text", "summarise"])
    audio_only, with_file = await uploaded(api, transcript=None), await uploaded(api)
    assert await work_once(companion.db, pipeline(companion, *steps), "w")
    assert await work_once(companion.db, pipeline(companion, *steps), "w")

    async with companion.db.session() as session:
        heard = list(await session.scalars(select(TranscriptSegment).where(TranscriptSegment.meeting_id == audio_only)))
        read = list(await session.scalars(select(TranscriptSegment).where(TranscriptSegment.meeting_id == with_file)))
        summary = await session.get(Summary, audio_only)
        insights = list(await session.scalars(select(Insight).where(Insight.meeting_id == with_file)))
    assert [s.text for s in heard] == [f"{len(AUDIO)} bytes heard"]
    assert [s.speaker for s in read] == ["Alice Archer", "Carol Chen"]  # the uploaded transcript wins
    assert summary.text == "1 segments" and summary.key_points == ["one point"]
    assert sorted(i.kind for i in insights) == ["sentiment", "topics"]
    generated = [data for event, data in await outbox(companion) if event == "insight.generated"]
    assert len(generated) == 4
    assert {"insight_id": insights[0].id, "meeting_id": with_file, "kind": insights[0].kind,
            "title": insights[0].title} in generated  # fmt: skip


def test_the_registry_names_its_steps_and_refuses_unknown_or_duplicate_ones(monkeypatch):
    registry = StepRegistry([TranscriptFile()])
    with pytest.raises(ValueError, match=r"unknown processing step\(s\) whisper \(registered: transcript_file\)"):
        registry.resolve(["transcript_file", "whisper"])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(TranscriptFile())
    with pytest.raises(TypeError, match="not a processing step"):
        registry.register(object())  # type: ignore[arg-type]

    @dataclass
    class EntryPoint:
        name: str
        target: Any

        def load(self) -> Any:
            return self.target

    plugins = [EntryPoint("stt", SpeechToText), EntryPoint("summary", Summariser())]
    monkeypatch.setattr(
        processing_worker, "entry_points", lambda group: plugins if group == "companion.processing_steps" else []
    )
    assert step_registry().names() == ["speech_to_text", "summarise", "transcript_file"]


# --- retries ---------------------------------------------------------------------------------------------------


@dataclass
class Flaky:
    """Fails ``failures`` times with an error whose text must not reach the API, then works."""

    failures: int
    name: str = "flaky"

    async def run(self, context: ProcessingContext) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("https://provider.example/?token=SECRET said no")


async def test_passing_trouble_is_retried_with_backoff_then_succeeds(api, companion):
    await subscribe(companion)
    meeting_id = await uploaded(api)
    flaky = pipeline(companion, Flaky(1), TranscriptFile())
    before = now()
    assert await work_once(companion.db, flaky, "w")
    job = await job_of(companion, meeting_id)
    assert job.status is JobStatus.QUEUED and job.attempts == 1
    assert job.last_error == "Step flaky failed unexpectedly (RuntimeError)"
    assert before + timedelta(seconds=9) < job.run_after < now() + timedelta(seconds=11)
    assert (await meeting_of(companion, meeting_id)).status is MeetingStatus.PROCESSING
    assert not await work_once(companion.db, flaky, "w")  # not due yet

    await make_due(companion)
    assert await work_once(companion.db, flaky, "w")
    assert (await meeting_of(companion, meeting_id)).status is MeetingStatus.PROCESSED
    assert [event for event, _ in await outbox(companion)] == ["meeting.started", "meeting.processed"]  # started once


async def test_after_the_last_attempt_the_meeting_fails_with_the_reason(api, companion, monkeypatch):
    await subscribe(companion)
    monkeypatch.setattr(jobs, "MAX_ATTEMPTS", 2)
    meeting_id = await uploaded(api)
    flaky = pipeline(companion, Flaky(5), TranscriptFile())
    assert await work_once(companion.db, flaky, "w")
    await make_due(companion)
    assert await work_once(companion.db, flaky, "w")
    job = await job_of(companion, meeting_id)
    reason = "Step flaky failed unexpectedly (RuntimeError); gave up after 2 attempts"
    assert job.status is JobStatus.FAILED and job.attempts == 2 and job.last_error == reason
    assert (await outbox(companion))[-1] == (
        "meeting.failed",
        {"meeting_id": meeting_id, "title": "Customer Call", "reason": reason},
    )
    assert "SECRET" not in json.dumps(await outbox(companion))


def test_backoff_doubles_up_to_an_hour():
    assert [jobs.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert jobs.backoff(30) == timedelta(hours=1)


# --- restarts and several workers ------------------------------------------------------------------------------


async def expire_leases(companion: Companion) -> None:
    async with companion.db.transaction() as session:
        await session.execute(
            update(Job).where(Job.status == JobStatus.RUNNING).values(locked_until=now() - timedelta(seconds=1))
        )


async def test_a_job_left_running_is_picked_up_once_its_lease_runs_out(api, companion):
    meeting_id = await uploaded(api)
    died = await jobs.claim(companion.db, "worker-that-died", [PROCESS_MEETING])
    assert len(died) == 1  # claimed, then the process was killed
    assert not await work_once(companion.db, shipped_pipeline(companion), "other")  # its lease still holds

    await expire_leases(companion)
    restarted = Companion.build(companion.settings, registry=companion.registry)
    try:
        assert await work_once(restarted.db, shipped_pipeline(restarted), "after-restart")
    finally:
        await restarted.aclose()
    job = await job_of(companion, meeting_id)
    assert job.status is JobStatus.SUCCEEDED and job.attempts == 2 and job.locked_by == "after-restart"
    assert (await meeting_of(companion, meeting_id)).status is MeetingStatus.PROCESSED


@pytest.mark.settings(processing_poll_seconds=0.02)
async def test_the_worker_started_with_a_new_process_takes_the_queued_jobs(api, companion, monkeypatch):
    first, second = await uploaded(api), await uploaded(api)
    restarted = Companion.build(companion.settings, registry=companion.registry)
    loop = asyncio.create_task(processing_worker.worker(restarted.settings, restarted.db, restarted.http))
    try:
        for _ in range(500):
            states = {(await meeting_of(companion, m)).status for m in (first, second)}
            if states == {MeetingStatus.PROCESSED}:
                break
            await asyncio.sleep(0.02)
        assert states == {MeetingStatus.PROCESSED}
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
        await restarted.aclose()


async def test_a_job_failing_every_time_its_worker_dies_is_given_up(api, companion, monkeypatch):
    await subscribe(companion)
    monkeypatch.setattr(jobs, "MAX_ATTEMPTS", 2)
    meeting_id = await uploaded(api)
    for name in ("died-1", "died-2"):
        assert await jobs.claim(companion.db, name, [PROCESS_MEETING])
        await expire_leases(companion)
    assert await work_once(companion.db, shipped_pipeline(companion), "third")
    job = await job_of(companion, meeting_id)
    assert job.status is JobStatus.FAILED and job.last_error == "Processing stopped unfinished 2 times; gave up"
    assert (await meeting_of(companion, meeting_id)).status is MeetingStatus.FAILED
    assert [event for event, _ in await outbox(companion)] == ["meeting.failed"]


@dataclass
class Counting:
    """Records each meeting it runs for; the pause lets two workers overlap."""

    runs: list[str]
    name: str = "counting"

    async def run(self, context: ProcessingContext) -> None:
        self.runs.append(context.meeting_id)
        await asyncio.sleep(0.02)


async def test_two_workers_never_run_one_job_twice(api, companion):
    meetings = [await uploaded(api) for _ in range(8)]
    runs: list[str] = []
    replicas = [Companion.build(companion.settings, registry=companion.registry) for _ in range(2)]

    async def drain(replica: Companion, name: str) -> int:
        steps = pipeline(replica, Counting(runs), TranscriptFile())
        done = 0
        while await work_once(replica.db, steps, name):
            done += 1
        return done

    try:
        done = await asyncio.gather(drain(replicas[0], "replica-a"), drain(replicas[1], "replica-b"))
    finally:
        for replica in replicas:
            await replica.aclose()
    assert sorted(runs) == sorted(meetings) and sum(done) == 8 and all(done)  # each once, and both worked
    for meeting_id in meetings:
        job = await job_of(companion, meeting_id)
        assert job.status is JobStatus.SUCCEEDED and job.attempts == 1


async def test_racing_claims_on_one_job_have_one_winner(companion, settings):
    async with companion.db.transaction() as session:
        jobs.enqueue(session, "test", "subject")
    replicas = [Companion.build(settings, registry=companion.registry) for _ in range(4)]
    try:
        won = await asyncio.gather(*(jobs.claim(r.db, f"r{i}", ["test"]) for i, r in enumerate(replicas)))
    finally:
        for replica in replicas:
            await replica.aclose()
    assert sorted(len(claims) for claims in won) == [0, 0, 0, 1]


async def test_a_worker_that_lost_its_lease_writes_nothing(api, companion):
    await subscribe(companion)
    meeting_id = await uploaded(api)
    (stalled,) = await jobs.claim(companion.db, "stalled", [PROCESS_MEETING], lease=timedelta(0))
    (taker,) = await jobs.claim(companion.db, "taker", [PROCESS_MEETING])
    with pytest.raises(jobs.LeaseLost):
        await pipeline(companion, TranscriptFile()).process(stalled)
    assert (await meeting_of(companion, meeting_id)).status is MeetingStatus.UPLOADED and await outbox(companion) == []
    await pipeline(companion, TranscriptFile()).process(taker)
    assert (await meeting_of(companion, meeting_id)).status is MeetingStatus.PROCESSED


async def test_the_lease_is_renewed_while_the_work_runs_and_losing_it_cancels_the_work(companion):
    short = timedelta(seconds=0.3)
    async with companion.db.transaction() as session:
        jobs.enqueue(session, "test", "a")
    (claim,) = await jobs.claim(companion.db, "holder", ["test"], lease=short)

    async def contender() -> list[jobs.Claim]:
        await asyncio.sleep(0.5)
        return await jobs.claim(companion.db, "contender", ["test"], lease=short)

    result, stolen = await asyncio.gather(
        jobs.run_leased(companion.db, claim, asyncio.sleep(0.7, "done"), lease=short), contender()
    )
    assert result == "done" and stolen == []

    async with companion.db.transaction() as session:
        await session.execute(update(Job).where(Job.id == claim.job_id).values(locked_by="thief"))
    cancelled = asyncio.Event()

    async def long_work() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(jobs.LeaseLost):
        await asyncio.wait_for(jobs.run_leased(companion.db, claim, long_work(), lease=short), timeout=5)
    assert cancelled.is_set()


# --- the transcript parsers ----------------------------------------------------------------------------------


def segments(transcript) -> list[tuple[str, str, float]]:
    return [(s.speaker, s.text, s.offset_seconds) for s in transcript.segments]


def test_webvtt_with_voice_tags_styles_notes_settings_and_entities():
    sample = (
        "\ufeffWEBVTT - Quarterly review\r\n"
        "Kind: captions\r\nLanguage: en\r\n\r\n"
        'STYLE\r\n::cue(v[voice="Alice Archer"]) { color: cyan }\r\n\r\n'
        "NOTE exported by the meeting app\r\nspans two lines\r\n\r\n"
        "intro\r\n00:01.000 --> 00:04.250 align:start position:10%\r\n"
        "<v.loud Alice Archer><i>Welcome</i> &amp; thanks</v>\r\n"
        "<v Bob Builder>Glad to be here &lt;3</v>\r\n\r\n"
        "01:02:03.5 --> 01:02:04.000\r\n<c.yellow>No voice</c> here\r\n"
    ).encode()
    transcript = parse_webvtt(sample)
    assert segments(transcript) == [
        ("Alice Archer", "Welcome & thanks", 1.0),
        ("Bob Builder", "Glad to be here <3", 1.0),
        ("", "No voice here", 3723.5),
    ]
    assert transcript.end == 3724.0


def test_youtube_style_inline_timestamps_are_dropped():
    sample = b"WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nso<00:00:00.500><c> we</c><00:00:01.000><c> start</c>\n"
    assert segments(parse_webvtt(sample)) == [("", "so we start", 0.0)]


def test_zoom_exports_name_the_speaker_before_a_colon():
    sample = (
        b"WEBVTT\n\n1\n00:00:01.000 --> 00:00:03.000\nAlice Archer: Shall we start?\n\n"
        b"2\n00:00:03.500 --> 00:00:06.000\nCarol Chen: Yes. Agenda: pricing, then dates.\n\n"
        b"3\n00:00:06.000 --> 00:00:07.000\nO'Brien-Smith: OK\n"
    )
    assert segments(parse_webvtt(sample)) == [
        ("Alice Archer", "Shall we start?", 1.0),
        ("Carol Chen", "Yes. Agenda: pricing, then dates.", 3.5),
        ("O'Brien-Smith", "OK", 6.0),
    ]


def test_a_colon_in_a_few_lines_does_not_make_speakers():
    sample = (
        b"1\n00:00:01,000 --> 00:00:02,000\nLet's look at the numbers.\n\n"
        b"2\n00:00:02,000 --> 00:00:03,000\nNext steps: send the deck.\n\n"
        b"3\n00:00:03,000 --> 00:00:04,000\nThat's all.\n"
    )
    assert [speaker for speaker, _, _ in segments(parse_srt(sample))] == ["", "", ""]


def test_srt_with_bom_crlf_tags_multi_line_cues_and_missing_blank_lines():
    sample = (
        "\ufeff1\r\n00:00:01,000 --> 00:00:03,500\r\n<i>Alice:</i> First line\r\nsecond line\r\n\r\n\r\n"
        '2\r\n00:00:04.000 --> 00:00:05,000 X1:40 X2:600 Y1:20 Y2:50\r\n{\\an8}<font color="#fff">Bob:</font> Hi\r\n'
        "3\r\n0:00:06,000 --> 0:00:07,250\r\nAlice: Bye\r\n"
    ).encode()
    transcript = parse_srt(sample)
    assert segments(transcript) == [
        ("Alice", "First line second line", 1.0),
        ("Bob", "Hi", 4.0),
        ("Alice", "Bye", 6.0),
    ]
    assert transcript.end == 7.25


@pytest.mark.parametrize(
    ("parse", "sample", "message"),
    [
        (parse_srt, b"1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03,000 --> 00:00:0x,000\nbad\n",
         "line 6: '00:00:0x,000' is not a timestamp (expected HH:MM:SS,mmm)"),
        (parse_srt, b"1\n00:00:01,000 -> 00:00:02,000\nHello\n",
         "line 1: expected a cue timing (HH:MM:SS,mmm --> HH:MM:SS,mmm) or a cue number, found '1'"),
        (parse_srt, b"1\n00:00:05,000 --> 00:00:04,000\nBackwards\n",
         "line 2: the cue ends (00:00:04,000) before it starts (00:00:05,000)"),
        (parse_srt, b"1\n00:00:01,000 --> \nHello\n",
         "line 2: '00:00:01,000 -->' is not a cue timing (expected HH:MM:SS,mmm --> HH:MM:SS,mmm)"),
        (parse_webvtt, b"WEBVTT\n\n00:00:61.000 --> 00:01:02.000\nx\n",
         "line 3: '00:00:61.000' is not a timestamp (minutes and seconds go up to 59)"),
        (parse_webvtt, b"\xef\xbb\xbf1\n00:00:01.000 --> 00:00:02.000\nx\n",
         "line 1: a WebVTT file starts with the line WEBVTT"),
        (parse_webvtt, b"WEBVTTX\n", "line 1: a WebVTT file starts with the line WEBVTT"),
        (parse_webvtt, b"WEBVTT\n\nNOTE only a note\n", "the transcript has no cue with any text"),
        (parse_srt, b"1\n00:00:01,000 --> 00:00:02,000\n\xe9t\xe9\n",
         "line 3: the file is not UTF-8 text (byte 32 cannot be decoded)"),
    ],
)  # fmt: skip
def test_bad_files_are_refused_naming_the_line(parse, sample, message):
    with pytest.raises(TranscriptError) as refused:
        parse(sample)
    assert str(refused.value) == message


def test_nul_characters_do_not_reach_the_database():
    sample = b"WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n<v A\x00B>x\x00y</v>\n"
    assert segments(parse_webvtt(sample)) == [("A\ufffdB", "x\ufffdy", 1.0)]


async def test_a_step_failure_is_final_and_other_errors_are_passing(api, companion):
    """StepFailed fails at once; the NO_TRANSCRIPT check is the pipeline's own, after every step ran."""

    @dataclass
    class Refuses:
        name: str = "refuses"

        async def run(self, context: ProcessingContext) -> None:
            raise StepFailed("The recording is silent")

    meeting_id = await uploaded(api)
    assert await work_once(companion.db, pipeline(companion, Refuses(), TranscriptFile()), "w")
    job = await job_of(companion, meeting_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1 and job.last_error == "The recording is silent"


async def test_a_transcript_missing_from_storage_fails_without_retrying(api, companion):
    meeting_id = await uploaded(api)
    async with companion.db.session() as session:
        recording = await session.get(Recording, meeting_id)
    (companion.settings.data_dir / recording.transcript_path).unlink()
    assert await work_once(companion.db, shipped_pipeline(companion), "w")
    job = await job_of(companion, meeting_id)
    assert job.status is JobStatus.FAILED and job.last_error == "The transcript file is missing from storage"
