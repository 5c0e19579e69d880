"""Uploading a recording over the REST API: streamed to disk with its SHA-256, limits, types, fields, sharing.

Processing is not run here (the app starts no workers); tests/test_processing.py takes it from the queued job.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from server.app import Companion, create_app
from server.services import demo
from server.services.processing import storage
from server.services.processing.storage import FilePolicy, FormReader, UploadRejected
from server.settings import Settings
from store.directory import add_member, create_workspace, user_by_email, workspace_by_slug
from store.keys import create_key
from store.models import KeyKind, Meeting, Plan, Recording, Role, Team, Workspace

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
AUDIO = os.urandom(256 * 1024 + 17)
VTT = b"WEBVTT\n\n00:00:05.000 --> 00:00:07.000\n<v Alice Archer>Thanks for joining today.</v>\n"
FIELDS = {"title": "Customer Call", "date": "2026-02-01T10:00:00Z"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No background workers: each test decides when a job runs."""
    return settings.model_copy(update={"run_workers": False})


@dataclass
class Api:
    companion: Companion
    app: Any
    keys: dict[str, str]

    def client(self, who: str = "alice@acme.test") -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=f"{BASE}/api/v1",
            headers={"Authorization": f"Bearer {self.keys[who]}"},
        )


async def user_key(companion: Companion, email: str, slug: str = "acme") -> str:
    async with companion.db.transaction() as session:
        workspace = await workspace_by_slug(session, slug)
        user = await user_by_email(session, email)
        assert workspace is not None and user is not None
        return (await create_key(session, workspace_id=workspace.id, user_id=user.id, kind=KeyKind.USER)).token


@asynccontextmanager
async def serving(companion: Companion, keys: demo.DemoKeys) -> AsyncIterator[Api]:
    """The app with user keys for admin, alice and bob of the demo workspace, and the agent key of alice."""
    people = dict(keys.user_keys)
    people["bob@acme.test"] = await user_key(companion, "bob@acme.test")
    people["agent:alice@acme.test"] = keys.keys["alice@acme.test"]
    app = create_app(companion)
    async with app.router.lifespan_context(app):
        yield Api(companion, app, people)


@pytest.fixture
async def api(companion: Companion, demo_keys: demo.DemoKeys) -> AsyncIterator[Api]:
    async with serving(companion, demo_keys) as api:
        yield api


async def upload(
    client: httpx.AsyncClient,
    file: tuple[str, bytes, str] | None = ("call.mp3", AUDIO, "audio/mpeg"),
    transcript: tuple[str, bytes, str] | None = ("call.vtt", VTT, "text/vtt"),
    **fields: str,
) -> httpx.Response:
    files = {name: part for name, part in (("file", file), ("transcript", transcript)) if part is not None}
    return await client.post("/meetings/upload", files=files, data={**FIELDS, **fields})


def stored_files(settings: Settings) -> list[Path]:
    root = settings.data_dir / "recordings"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def meeting_count(companion: Companion) -> int:
    async with companion.db.session() as session:
        return await session.scalar(select(func.count()).select_from(Meeting).where(Meeting.title == "Customer Call"))


async def test_an_upload_streams_to_disk_with_its_sha256_and_queues_a_job(api, settings):
    async with api.client() as alice:
        answer = await upload(alice)
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body["status"] == "uploaded" and body["id"].startswith("mtg_")
        assert body["file"] == {
            "filename": "call.mp3",
            "content_type": "audio/mpeg",
            "size": len(AUDIO),
            "sha256": hashlib.sha256(AUDIO).hexdigest(),
        }
        assert body["transcript"]["sha256"] == hashlib.sha256(VTT).hexdigest()
        assert answer.headers["location"] == body["status_url"] == f"{BASE}/api/v1/meetings/{body['id']}/status"

        status = (await alice.get(f"/meetings/{body['id']}/status")).json()
        assert status["status"] == "uploaded" and status["error"] is None
        assert status["job"]["state"] == "queued" and status["job"]["attempts"] == 0

    async with api.companion.db.session() as session:
        meeting = await session.get(Meeting, body["id"])
        recording = await session.get(Recording, body["id"])
        alice_id = (await user_by_email(session, "alice@acme.test")).id
    assert meeting.owner_id == alice_id and meeting.date.isoformat() == "2026-02-01T10:00:00+00:00"
    directory = settings.data_dir / "recordings" / meeting.workspace_id
    assert stored_files(settings) == [directory / f"{meeting.id}.mp3", directory / f"{meeting.id}.transcript.vtt"]
    assert (settings.data_dir / recording.path).read_bytes() == AUDIO
    assert (settings.data_dir / recording.transcript_path).read_bytes() == VTT


async def test_the_seeds_curl_example_works_types_come_from_the_extension_when_generic(api, settings):
    """curl -F file=@recording.mp3 sends application/octet-stream; the extension names the type."""
    async with api.client() as alice:
        answer = await upload(alice, ("recording.mp3", AUDIO, "application/octet-stream"), None)
        assert answer.status_code == 202, answer.text
        assert answer.json()["file"]["content_type"] == "audio/mpeg" and answer.json()["transcript"] is None
        macos = await upload(alice, ("memo.m4a", b"m4a", "audio/x-m4a"), None)
        assert macos.json()["file"]["content_type"] == "audio/mp4"


async def test_a_transcript_alone_is_an_upload(api, settings):
    srt = b"1\r\n00:00:01,000 --> 00:00:02,000\r\nHello\r\n"
    async with api.client() as alice:
        answer = await upload(alice, ("notes.srt", srt, "application/x-subrip"), None)
        assert answer.status_code == 202, answer.text
        both = await upload(alice, ("notes.vtt", VTT, "text/vtt"), ("again.vtt", VTT, "text/vtt"))
    assert both.status_code == 422 and "transcript" in both.json()["error"]["details"]["fields"]
    async with api.companion.db.session() as session:
        recording = await session.get(Recording, answer.json()["id"])
    assert recording.transcript_path == recording.path and recording.transcript_content_type == "application/x-subrip"


@pytest.mark.settings(upload_max_bytes=100_000)
async def test_too_large_is_413_and_leaves_nothing_on_disk(api, settings, monkeypatch):
    async with api.client() as alice:
        streamed = await upload(alice)  # past the limit while streaming
        announced = await upload(alice, ("big.mp3", os.urandom(1_200_000), "audio/mpeg"))  # by Content-Length
        monkeypatch.setattr(storage, "TRANSCRIPT_MAX_BYTES", 10)
        transcript = await upload(alice, ("call.mp3", b"tiny", "audio/mpeg"))
    for answer in (streamed, announced):
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "payload_too_large"
        assert answer.json()["error"]["details"] == {"limit": 100_000}
    assert transcript.status_code == 413 and "transcript" in transcript.json()["error"]["message"]
    assert stored_files(settings) == [] and await meeting_count(api.companion) == 0


async def test_a_type_outside_the_list_is_415(api, settings):
    async with api.client() as alice:
        image = await upload(alice, ("photo.png", b"\x89PNG", "image/png"))
        unknown = await upload(alice, ("data.bin", b"\x00", "application/octet-stream"))
        audio_as_transcript = await upload(alice, transcript=("call.mp3", AUDIO, "audio/mpeg"))
        json_body = await alice.post("/meetings/upload", json=FIELDS)
    assert image.status_code == 415
    error = image.json()["error"]
    assert error["code"] == "unsupported_media_type" and error["details"]["field"] == "file"
    assert "audio/mpeg" in error["details"]["accepted"] and "image/png" in error["message"]
    assert unknown.status_code == 415 and audio_as_transcript.status_code == 415
    assert audio_as_transcript.json()["error"]["details"]["accepted"] == ["application/x-subrip", "text/vtt"]
    assert json_body.status_code == 415
    assert stored_files(settings) == [] and await meeting_count(api.companion) == 0


async def test_missing_and_bad_fields_are_422_naming_each(api, settings):
    async with api.client() as alice:
        empty = await alice.post("/meetings/upload", files={"other": ("x.txt", b"x", "text/plain")}, data={})
        naive = await upload(alice, date="2026-02-01T10:00:00")
        blank = await upload(alice, title="   ", date="yesterday")
        twice = await alice.post(
            "/meetings/upload",
            files=[("file", ("a.mp3", b"a", "audio/mpeg")), ("file", ("b.mp3", b"b", "audio/mpeg"))],
            data=FIELDS,
        )
    assert empty.status_code == 422
    assert empty.json()["error"]["code"] == "invalid_request"
    assert set(empty.json()["error"]["details"]["fields"]) == {"file", "title", "date", "other"}
    assert set(naive.json()["error"]["details"]["fields"]) == {"date"}
    assert "timezone" in naive.json()["error"]["details"]["fields"]["date"]
    assert set(blank.json()["error"]["details"]["fields"]) == {"title", "date"}
    assert twice.json()["error"]["details"]["fields"] == {"file": "sent more than once"}
    assert stored_files(settings) == [] and await meeting_count(api.companion) == 0


async def test_a_malformed_body_is_400_and_leaves_nothing(api, settings):
    async with api.client() as alice:
        cut = await alice.post(
            "/meetings/upload",
            content=b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n'
            b"Content-Type: audio/mpeg\r\n\r\npartial audio",
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        no_boundary = await alice.post("/meetings/upload", content=b"", headers={"Content-Type": "multipart/form-data"})
    assert cut.status_code == 400 and "closing boundary" in cut.json()["error"]["message"]
    assert no_boundary.status_code == 400
    assert stored_files(settings) == []


async def test_the_uploader_owns_the_meeting_and_others_get_404(api, companion):
    async with companion.db.session() as session:
        sales = await session.scalar(select(Team.id).where(Team.name == "Sales"))
        product = await session.scalar(select(Team.id).where(Team.name == "Product"))
    async with api.client() as alice, api.client("bob@acme.test") as bob, api.client("admin@acme.test") as admin:
        mine = (await upload(alice)).json()["id"]
        shared = await upload(alice, team_id=sales)
        assert shared.status_code == 202 and shared.json()["team_id"] == sales
        assert (await alice.get(f"/meetings/{mine}/status")).status_code == 200
        assert (await admin.get(f"/meetings/{mine}/status")).status_code == 200
        hidden = await bob.get(f"/meetings/{mine}/status")
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
        assert (await bob.get(f"/meetings/{shared.json()['id']}/status")).status_code == 404
        not_my_team = await upload(alice, team_id=product)
        assert not_my_team.json()["error"]["details"]["fields"] == {"team_id": "you are not a member of this team"}
        assert (await upload(admin, team_id=product)).status_code == 202  # admins may file a meeting anywhere
        assert (await upload(alice, team_id="team_nope")).status_code == 422
        unauthenticated = await httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url=BASE).get(
            f"/api/v1/meetings/{mine}/status"
        )
        assert unauthenticated.status_code == 401

    async with companion.db.transaction() as session:
        other = await create_workspace(session, slug="globex", name="Globex")
        await add_member(session, other, email="gina@globex.example", role=Role.OWNER)
    outsider = await user_key(companion, "gina@globex.example", "globex")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app),
        base_url=f"{BASE}/api/v1",
        headers={"Authorization": f"Bearer {outsider}"},
    ) as gina:
        answer = await gina.get(f"/meetings/{mine}/status")
        assert answer.status_code == 404 and answer.json()["error"]["message"] == "Meeting not found"
        assert (await upload(gina, team_id=sales)).json()["error"]["details"]["fields"] == {
            "team_id": "no such team in this workspace"
        }


async def test_the_solo_plan_cannot_upload(api, companion, settings):
    async with companion.db.transaction() as session:
        await session.execute(update(Workspace).where(Workspace.slug == "acme").values(plan=Plan.SOLO))
    async with api.client() as alice:
        refused = await upload(alice)
    assert refused.status_code == 403 and refused.json()["error"]["details"] == {"plan": "solo"}
    assert stored_files(settings) == []


async def test_a_meeting_that_was_not_uploaded_has_no_job(api, companion):
    async with companion.db.session() as session:
        seeded = await session.scalar(select(Meeting.id).where(Meeting.status == "processed").limit(1))
    async with api.client("admin@acme.test") as admin:
        status = (await admin.get(f"/meetings/{seeded}/status")).json()
    assert status == {"meeting_id": seeded, "status": "processed", "error": None, "job": None}


async def test_the_openapi_document_describes_the_upload(api):
    async with api.client() as alice:
        document = (await alice.get("/openapi.json")).json()
    operation = document["paths"]["/meetings/upload"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file", "title", "date"]
    assert form["properties"]["file"]["format"] == "binary" and "team_id" in form["properties"]
    assert {"202", "400", "413", "415", "422"} <= set(operation["responses"])
    assert "/meetings/{id}/status" in document["paths"]


async def chunks(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def multipart(boundary: str, *parts: tuple[str, str | None, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        out += f"Content-Type: {content_type}\r\n".encode() if content_type else b""
        out += b"\r\n" + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize("size", [1, 61, 64 * 1024, 10**7])
async def test_parts_are_read_whole_however_the_body_is_cut(tmp_path, size):
    """curl sends the file first and the fields after it: one chunk may hold the headers of several parts."""
    body = multipart(
        "curl-like",
        ("file", "recording.mp3", "application/octet-stream", AUDIO[:5000]),
        ("title", None, None, b"Customer Call"),
        ("date", None, None, b"2026-02-01T10:00:00Z"),
        ("transcript", "call.vtt", "text/vtt", VTT),
    )
    policies = {"file": FilePolicy(storage.RECORDING_TYPES), "transcript": FilePolicy(storage.TRANSCRIPT_TYPES, ".t")}
    reader = FormReader(tmp_path, "mtg_0", policies, {"title", "date"}, max_bytes=10**7)
    form = await reader.read("multipart/form-data; boundary=curl-like", chunks(body, size))
    assert form.fields == {"title": "Customer Call", "date": "2026-02-01T10:00:00Z"} and form.problems == {}
    assert form.files["file"].path.read_bytes() == AUDIO[:5000] and form.files["file"].content_type == "audio/mpeg"
    assert form.files["transcript"].path.read_bytes() == VTT


async def test_the_reader_writes_chunk_by_chunk_under_a_part_name(tmp_path):
    """Tiny chunks split the boundary everywhere; the file grows on disk while the body is still arriving."""
    body = multipart("b0undary", ("file", "x.wav", "audio/wav", AUDIO), ("title", None, None, "Réunion".encode()))
    reader = FormReader(tmp_path, "mtg_1", {"file": FilePolicy(storage.RECORDING_TYPES)}, {"title"}, max_bytes=10**7)
    seen_growing: list[int] = []

    async def watched() -> AsyncIterator[bytes]:
        async for chunk in chunks(body, 997):
            partial = tmp_path / "mtg_1.wav.part"
            if partial.exists():
                seen_growing.append(partial.stat().st_size)
            yield chunk

    form = await reader.read("multipart/form-data; boundary=b0undary", watched())
    stored = form.files["file"]
    assert stored.path == tmp_path / "mtg_1.wav" and stored.path.read_bytes() == AUDIO
    assert stored.sha256 == hashlib.sha256(AUDIO).hexdigest() and stored.size == len(AUDIO)
    assert form.fields == {"title": "Réunion"}
    assert len(set(seen_growing)) > 20 and 0 < max(seen_growing) < len(AUDIO)  # buffered 8 KiB at a time
    assert not (tmp_path / "mtg_1.wav.part").exists()


async def test_the_reader_removes_its_files_when_the_client_goes_away(tmp_path):
    body = multipart("zz", ("transcript", "t.vtt", "text/vtt", VTT), ("file", "x.ogg", "audio/ogg", AUDIO))
    policies = {"file": FilePolicy(storage.RECORDING_TYPES), "transcript": FilePolicy(storage.TRANSCRIPT_TYPES, ".t")}
    reader = FormReader(tmp_path, "mtg_2", policies, set(), max_bytes=10**7)

    async def interrupted() -> AsyncIterator[bytes]:
        async for chunk in chunks(body[: len(body) // 2], 4096):
            yield chunk
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await reader.read("multipart/form-data; boundary=zz", interrupted())
    assert list(tmp_path.iterdir()) == []  # the complete transcript too


async def test_the_reader_counts_every_file_against_one_limit(tmp_path):
    body = multipart("q", ("file", "a.mp3", "audio/mpeg", b"a" * 600), ("transcript", "t.srt", None, b"1" * 600))
    policies = {"file": FilePolicy(storage.RECORDING_TYPES), "transcript": FilePolicy(storage.TRANSCRIPT_TYPES, ".t")}
    reader = FormReader(tmp_path, "mtg_3", policies, set(), max_bytes=1000)
    with pytest.raises(UploadRejected) as refused:
        await reader.read("multipart/form-data; boundary=q", chunks(body, 100))
    assert refused.value.code == "payload_too_large" and list(tmp_path.iterdir()) == []


@pytest.mark.settings(upload_max_bytes=1_000_000)
async def test_over_a_real_server_a_file_first_upload_works_and_an_oversized_one_stops_early(
    live_server, demo_keys, settings, monkeypatch
):
    """uvicorn on 127.0.0.1, the body streamed in chunks as curl would send it (file first, then the fields)."""
    fields = [(name, None, None, value.encode()) for name, value in FIELDS.items()]

    async def post(audio: bytes) -> httpx.Response:
        body = multipart("curl", ("file", "recording.mp3", "application/octet-stream", audio), *fields)
        async with httpx.AsyncClient(base_url=f"{live_server}/api/v1", timeout=30) as http:
            return await http.post(
                "/meetings/upload",
                content=chunks(body, 64 * 1024),  # no Content-Length: only the streamed count can stop it
                headers={
                    "Authorization": f"Bearer {demo_keys.user_keys['alice@acme.test']}",
                    "Content-Type": "multipart/form-data; boundary=curl",
                },
            )

    accepted = await post(AUDIO)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["file"]["sha256"] == hashlib.sha256(AUDIO).hexdigest()
    kept = stored_files(settings)
    refused = await post(os.urandom(1_500_000))
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "payload_too_large"
    assert stored_files(settings) == kept


def test_partial_files_left_by_a_dead_process_are_swept(tmp_path):
    workspace = tmp_path / "recordings" / "ws_1"
    workspace.mkdir(parents=True)
    old, fresh, done = workspace / "mtg_old.mp3.part", workspace / "mtg_new.mp3.part", workspace / "mtg_done.mp3"
    for path in (old, fresh, done):
        path.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    for path in (old, done):
        os.utime(path, (two_hours_ago, two_hours_ago))
    assert storage.sweep_abandoned(tmp_path / "recordings") == 1
    assert sorted(p.name for p in workspace.iterdir()) == ["mtg_done.mp3", "mtg_new.mp3.part"]
    assert storage.sweep_abandoned(tmp_path / "nothing-yet") == 0
