"""Uploads streamed to disk: a multipart body is parsed as it arrives and its files written chunk by chunk.

No file is ever held in memory whole. Each is written under a ``.part``
name while its SHA-256 and size are computed, and renamed once complete;
past the size limit, with a type outside the allow-list, or on any other
failure, every file of the upload is removed, so nothing partial stays.

The multipart parser is python-multipart's streaming ``MultipartParser``
(the one Starlette uses) fed from the request's byte stream: Starlette's own
``request.form()`` spools each file to a temporary file first and has no
limit on file parts, so it would neither stream to the destination nor
stop an oversized upload early.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from store.errors import CompanionError

if TYPE_CHECKING:
    # python-multipart defines its callbacks' TypedDict for type checkers only.
    from python_multipart.multipart import MultipartCallbacks

#: A transcript is text: ten hours of talk is about a megabyte. The parser reads it whole, so it is capped.
TRANSCRIPT_MAX_BYTES = 20 * 1024 * 1024
#: A text field (title, date, team id).
FIELD_MAX_BYTES = 64 * 1024
#: What framing and text fields may add to a body beyond its files.
FORM_OVERHEAD_BYTES = 1024 * 1024
MAX_PARTS = 16
#: A ``.part`` file untouched for this long belongs to no upload: its process died mid-way.
ABANDONED_AFTER_SECONDS = 3600

RECORDING_TYPES: Mapping[str, str] = {
    "audio/mpeg": ".mp3",
    "audio/mp4": ".m4a",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/webm": ".weba",
    "audio/ogg": ".ogg",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
}
TRANSCRIPT_TYPES: Mapping[str, str] = {"text/vtt": ".vtt", "application/x-subrip": ".srt"}
#: Other names clients send for accepted types (browsers on macOS send audio/x-m4a for .m4a).
ALIASES: Mapping[str, str] = {
    "audio/mp3": "audio/mpeg",
    "audio/x-m4a": "audio/mp4",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "application/srt": "application/x-subrip",
    "text/srt": "application/x-subrip",
}
#: For a part sent without a useful type: curl -F sends application/octet-stream for anything but a few types.
BY_EXTENSION: Mapping[str, str] = {
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".wav": "audio/wav",
    ".weba": "audio/webm",
    ".ogg": "audio/ogg",
    ".oga": "audio/ogg",
    ".opus": "audio/ogg",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
}
_GENERIC = ("", "application/octet-stream")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f]")


class UploadRejected(CompanionError):
    """The upload is refused: an error code and a message for the client."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code, details=details)


def too_large(limit: int, what: str = "The upload") -> UploadRejected:
    return UploadRejected("payload_too_large", f"{what} is larger than {limit} bytes.", {"limit": limit})


@dataclass(frozen=True)
class StoredFile:
    path: Path
    filename: str
    content_type: str
    size: int
    sha256: str


def content_type_of(declared: str, filename: str) -> str:
    """The part's media type, without parameters; a generic one is replaced by its file name's extension's."""
    base = declared.split(";", 1)[0].strip().lower()
    base = ALIASES.get(base, base)
    guessed = BY_EXTENSION.get(PurePosixPath(filename).suffix.lower(), "")
    if base in _GENERIC or (base == "text/plain" and guessed in TRANSCRIPT_TYPES):
        return guessed or base
    return base


def safe_filename(raw: bytes) -> str:
    """The client's file name, for display only: its last path component, without control characters."""
    try:
        name = raw.decode()
    except UnicodeDecodeError:
        name = raw.decode("latin-1")
    name = _UNSAFE_NAME.sub("", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:255] or "upload"


class FileSink:
    """One file being written: hashed and counted as it goes, under a ``.part`` name until complete."""

    def __init__(self, final: Path, limit: int, what: str) -> None:
        self.final = final
        self.partial = final.with_name(final.name + ".part")
        self.limit = limit
        self.what = what
        self.size = 0
        self._hash = hashlib.sha256()
        self._file: BinaryIO | None = None

    async def open(self) -> None:
        def create() -> BinaryIO:
            self.final.parent.mkdir(parents=True, exist_ok=True)
            return self.partial.open("xb")

        self._file = await asyncio.to_thread(create)

    async def write(self, chunk: bytes) -> None:
        if self.size + len(chunk) > self.limit:
            raise too_large(self.limit, self.what)
        self.size += len(chunk)
        await asyncio.to_thread(self._write, chunk)

    def _write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._hash.update(chunk)
        self._file.write(chunk)

    async def complete(self, filename: str, content_type: str) -> StoredFile:
        """Flush to the disk and give the file its final name: it exists complete, or not at all."""

        def finish() -> None:
            assert self._file is not None
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self.partial.replace(self.final)

        await asyncio.to_thread(finish)
        return StoredFile(self.final, filename, content_type, self.size, self._hash.hexdigest())

    async def discard(self) -> None:
        def remove() -> None:
            if self._file is not None:
                self._file.close()
            self.partial.unlink(missing_ok=True)
            self.final.unlink(missing_ok=True)

        await asyncio.to_thread(remove)


@dataclass
class FilePolicy:
    """A file field: the types it accepts (type → extension of the stored file) and its stored name's suffix."""

    types: Mapping[str, str]
    suffix: str = ""


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, StoredFile] = field(default_factory=dict)
    #: Fields the form could not take, with the reason (unknown, sent twice, not UTF-8).
    problems: dict[str, str] = field(default_factory=dict)
    sinks: list[FileSink] = field(default_factory=list)

    async def discard(self) -> None:
        """Remove every file of this upload, complete or not."""
        for sink in self.sinks:
            await sink.discard()


@dataclass
class _Part:
    name: str
    filename: str | None
    content_type: str
    sink: FileSink | None = None
    text: bytearray | None = None


class FormReader:
    """Reads one multipart body, writing its file fields under ``directory`` as ``<stem><suffix><extension>``."""

    def __init__(
        self,
        directory: Path,
        stem: str,
        files: Mapping[str, FilePolicy],
        fields: set[str],
        *,
        max_bytes: int,
    ) -> None:
        self.directory = directory
        self.stem = stem
        self.policies = files
        self.field_names = fields
        self.max_bytes = max_bytes
        self.form = ReceivedForm()
        self._events: list[tuple[str, bytes, dict[bytes, bytes]]] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_name = b""
        self._header_value = b""
        self._ended = False
        self._parts = 0
        self._file_bytes = 0
        self._part: _Part | None = None

    async def read(self, content_type: str, chunks: AsyncIterator[bytes]) -> ReceivedForm:
        """The form; on any failure (including the client going away) nothing of it stays on disk."""
        try:
            await self._read(content_type, chunks)
        except BaseException:
            await asyncio.shield(self.form.discard())
            raise
        return self.form

    async def _read(self, content_type: str, chunks: AsyncIterator[bytes]) -> None:
        media, params = parse_options_header(content_type)
        if media != b"multipart/form-data":
            raise UploadRejected(
                "unsupported_media_type", "Send the upload as multipart/form-data.", {"content_type": content_type}
            )
        boundary = params.get(b"boundary")
        if not boundary:
            raise UploadRejected("bad_request", "The multipart/form-data content type has no boundary.")
        try:
            parser = MultipartParser(boundary, self._callbacks())
        except FormParserError as exc:
            raise UploadRejected("bad_request", f"Malformed multipart body: {exc}") from None
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > self.max_bytes + FORM_OVERHEAD_BYTES:
                raise too_large(self.max_bytes)
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise UploadRejected("bad_request", f"Malformed multipart body: {exc}") from None
            for event, data, headers in self._events:
                await self._handle(event, data, headers)
            self._events.clear()
        if not self._ended:
            raise UploadRejected("bad_request", "The multipart body ended before its closing boundary.")

    def _callbacks(self) -> MultipartCallbacks:
        # python-multipart calls these synchronously; they only record, and ``_handle`` does the (async) work.
        def header_field(data: bytes, start: int, end: int) -> None:
            self._header_name += data[start:end]

        def header_value(data: bytes, start: int, end: int) -> None:
            self._header_value += data[start:end]

        def header_end() -> None:
            self._headers.append((self._header_name.lower(), self._header_value))
            self._header_name = self._header_value = b""

        def headers_finished() -> None:
            # One chunk may hold several parts: each part's headers travel with its own event.
            self._events.append(("begin", b"", dict(self._headers)))
            self._headers = []

        def part_data(data: bytes, start: int, end: int) -> None:
            self._events.append(("data", data[start:end], {}))

        def part_end() -> None:
            self._events.append(("end", b"", {}))

        def end() -> None:
            self._ended = True

        return {
            "on_header_field": header_field,
            "on_header_value": header_value,
            "on_header_end": header_end,
            "on_headers_finished": headers_finished,
            "on_part_data": part_data,
            "on_part_end": part_end,
            "on_end": end,
        }

    async def _handle(self, event: str, data: bytes, headers: dict[bytes, bytes]) -> None:
        if event == "begin":
            self._part = await self._begin(headers)
        elif event == "data":
            await self._data(data)
        else:
            await self._end()

    async def _begin(self, headers: dict[bytes, bytes]) -> _Part:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise UploadRejected("bad_request", f"The form has more than {MAX_PARTS} parts.")
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        filename = safe_filename(raw_filename) if raw_filename is not None else None
        declared = headers.get(b"content-type", b"").decode("latin-1")
        part = _Part(name, filename, content_type_of(declared, filename or ""))
        seen = name in self.form.files or name in self.form.fields or name in self.form.problems
        if seen:
            self.form.problems[name] = "sent more than once"
        elif name in self.policies:
            part.sink = await self._sink(part, self.policies[name])
        elif name in self.field_names:
            part.text = bytearray()
        else:
            self.form.problems[name or "(unnamed part)"] = "not a field of this form"
        return part

    async def _sink(self, part: _Part, policy: FilePolicy) -> FileSink:
        extension = policy.types.get(part.content_type)
        if extension is None:
            sent = part.content_type or "a file without a content type"
            raise UploadRejected(
                "unsupported_media_type",
                f"{part.name}: {sent} is not accepted; send one of {', '.join(sorted(policy.types))}.",
                {"field": part.name, "content_type": part.content_type, "accepted": sorted(policy.types)},
            )
        remaining = self.max_bytes - self._file_bytes
        if part.content_type in TRANSCRIPT_TYPES and remaining > TRANSCRIPT_MAX_BYTES:
            limit, what = TRANSCRIPT_MAX_BYTES, "The transcript"
        else:
            limit, what = remaining, "The upload"
        sink = FileSink(self.directory / f"{self.stem}{policy.suffix}{extension}", limit, what)
        self.form.sinks.append(sink)
        await sink.open()
        return sink

    async def _data(self, data: bytes) -> None:
        part = self._part
        if part is None:
            return
        if part.sink is not None:
            await part.sink.write(data)
            self._file_bytes += len(data)
        elif part.text is not None:
            if len(part.text) + len(data) > FIELD_MAX_BYTES:
                raise too_large(FIELD_MAX_BYTES, f"The field {part.name}")
            part.text.extend(data)

    async def _end(self) -> None:
        part, self._part = self._part, None
        if part is None:
            return
        if part.sink is not None:
            self.form.files[part.name] = await part.sink.complete(part.filename or part.name, part.content_type)
        elif part.text is not None:
            try:
                self.form.fields[part.name] = part.text.decode()
            except UnicodeDecodeError:
                self.form.problems[part.name] = "must be UTF-8 text"


def sweep_abandoned(root: Path, *, older_than: float = ABANDONED_AFTER_SECONDS) -> int:
    """Remove the ``.part`` files a process that died mid-upload left under ``root``; returns how many.

    An upload in progress writes its file with every chunk, so only files left
    untouched for ``older_than`` seconds are taken, even with several replicas
    sharing the directory.
    """
    if not root.is_dir():
        return 0
    cutoff = time.time() - older_than
    removed = 0
    for path in root.rglob("*.part"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
