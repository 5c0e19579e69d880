"""The local transcript step: a WebVTT or SRT file uploaded beside the recording becomes the meeting's transcript.

Nothing is made up. A file that cannot be read fails processing with the
line at fault; with no transcript file this step does nothing, and the
pipeline fails the meeting unless a speech-to-text step produced one.

Speakers come from WebVTT voice tags (``<v Alice Archer>Hello</v>``) or,
in files with no voice tags where most cues start that way, from a
``Name: text`` prefix (Zoom's export). A line with neither keeps the
speaker unknown: the segment's speaker is the empty string. Parsing follows
what real files do rather than the letter of the specs: a byte-order mark,
CRLF or CR line ends, a missing blank line between cues, SRT's ``,`` or
``.`` before the milliseconds, and styling tags are all fine.
"""

from __future__ import annotations

import asyncio
import codecs
import html
import math
import re
from dataclasses import dataclass

from server.services.processing.pipeline import ProcessingContext, Segment, StepFailed

WEBVTT = "text/vtt"
SUBRIP = "application/x-subrip"

_TIMESTAMP = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,3}))?")
_VOICE = re.compile(r"<v(?:\.[^\s>]*)?[ \t]+([^>]*)>", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^>\n]*>|</[a-zA-Z]*>|<\d[\d:.]*>")
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")
_PREFIX = re.compile(r"^([^\W\d_][\w.'\u2019 -]{0,58}[\w.])[ \t]*:[ \t]+(\S.*)$")
_DIGITS = re.compile(r"^\d+$")
_SPACES = re.compile(r"\s+")


class TranscriptError(ValueError):
    """The transcript cannot be read; the message names the line."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Transcript:
    segments: list[Segment]
    end: float


def _lines(data: bytes) -> list[str]:
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TranscriptError(f"the file is not UTF-8 text (byte {exc.start} cannot be decoded)", line) from None
    # NUL has no place in text (and PostgreSQL refuses it); WebVTT's parser replaces it the same way.
    return text.replace("\x00", "\ufffd").replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _seconds(value: str, number: int, form: str) -> float:
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise TranscriptError(f"{value.strip()!r} is not a timestamp (expected {form})", number)
    hours, minutes, seconds, fraction = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise TranscriptError(f"{value.strip()!r} is not a timestamp (minutes and seconds go up to 59)", number)
    millis = int((fraction or "0").ljust(3, "0"))
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + millis / 1000


def _timing(line: str, number: int, form: str) -> tuple[float, float]:
    """``start --> end``, and after it WebVTT's cue settings or SRT's coordinates."""
    left, _, right = line.partition("-->")
    if not left.strip() or not right.strip():
        raise TranscriptError(f"{line.strip()!r} is not a cue timing (expected {form} --> {form})", number)
    end_text = right.split()[0]
    start, end = _seconds(left, number, form), _seconds(end_text, number, form)
    if end < start:
        raise TranscriptError(f"the cue ends ({end_text}) before it starts ({left.strip()})", number)
    return start, end


def _cues(lines: list[str], index: int, *, webvtt: bool) -> list[Cue]:
    form = "HH:MM:SS.mmm" if webvtt else "HH:MM:SS,mmm"
    cues: list[Cue] = []
    total = len(lines)
    while index < total:
        line = lines[index]
        if not line.strip():
            index += 1
            continue
        if "-->" not in line:
            if webvtt and re.match(r"(NOTE|STYLE|REGION)(\s|$)", line):
                while index < total and lines[index].strip():
                    index += 1
                continue
            if index + 1 < total and "-->" in lines[index + 1]:
                index += 1  # the cue's identifier (SRT's sequence number)
            else:
                found = f"found {line.strip()[:80]!r}"
                raise TranscriptError(f"expected a cue timing ({form} --> {form}) or a cue number, {found}", index + 1)
        start, end = _timing(lines[index], index + 1, form)
        index += 1
        payload: list[str] = []
        while index < total and lines[index].strip() and "-->" not in lines[index]:
            if _DIGITS.match(lines[index].strip()) and index + 1 < total and "-->" in lines[index + 1]:
                break  # the next cue's number, after a missing blank line
            payload.append(lines[index])
            index += 1
        cues.append(Cue(start, end, tuple(payload)))
    return cues


def _clean(text: str) -> str:
    text = _ASS_OVERRIDE.sub("", _TAG.sub("", text))
    return _SPACES.sub(" ", html.unescape(text)).strip()


def _prefixed(text: str) -> tuple[str, str] | None:
    match = _PREFIX.match(_clean(text))
    if match is None or len(match.group(1).split()) > 5:
        return None
    return match.group(1), match.group(2)


def _pieces(raw: str, use_prefixes: bool) -> list[tuple[str | None, str]]:
    """A payload line as (speaker, text) pieces; speaker None continues the speaker before."""
    voices = list(_VOICE.finditer(raw))
    if voices:
        head = _clean(raw[: voices[0].start()])
        pieces: list[tuple[str | None, str]] = [(None, head)] if head else []
        for number, voice in enumerate(voices):
            stop = voices[number + 1].start() if number + 1 < len(voices) else len(raw)
            pieces.append((_clean(voice.group(1)), _clean(raw[voice.end() : stop])))
        return pieces
    named = _prefixed(raw) if use_prefixes else None
    return [named] if named else [(None, _clean(raw))]


def _segments(cues: list[Cue]) -> list[Segment]:
    voiced = any(_VOICE.search(text) for cue in cues for text in cue.lines)
    prefixed = sum(1 for cue in cues if cue.lines and _prefixed(cue.lines[0]))
    use_prefixes = not voiced and prefixed * 2 >= len(cues)
    segments: list[Segment] = []
    for cue in sorted(cues, key=lambda c: c.start):
        parts: list[tuple[str, list[str]]] = []
        for raw in cue.lines:
            for speaker, text in _pieces(raw, use_prefixes):
                if speaker is not None or not parts:
                    parts.append((speaker or "", [text]))
                else:
                    parts[-1][1].append(text)
        for speaker, texts in parts:
            text = " ".join(t for t in texts if t)
            if text:
                segments.append(Segment(speaker=speaker, text=text, offset_seconds=cue.start))
    return segments


def _transcript(cues: list[Cue]) -> Transcript:
    segments = _segments(cues)
    if not segments:
        raise TranscriptError("the transcript has no cue with any text")
    return Transcript(segments, max(cue.end for cue in cues))


def parse_webvtt(data: bytes) -> Transcript:
    lines = _lines(data)
    first = lines[0]
    if not first.startswith("WEBVTT") or first[6:7] not in ("", " ", "\t"):
        raise TranscriptError("a WebVTT file starts with the line WEBVTT", 1)
    index = 1
    while index < len(lines) and lines[index].strip() and "-->" not in lines[index]:
        index += 1  # header lines ("Kind: captions", "Language: en")
    return _transcript(_cues(lines, index, webvtt=True))


def parse_srt(data: bytes) -> Transcript:
    return _transcript(_cues(_lines(data), 0, webvtt=False))


def parse_transcript(data: bytes, content_type: str) -> Transcript:
    """A transcript by its content type; an SRT-typed file that is really WebVTT is read as WebVTT."""
    if content_type == WEBVTT or data.removeprefix(codecs.BOM_UTF8).startswith(b"WEBVTT"):
        return parse_webvtt(data)
    if content_type == SUBRIP:
        return parse_srt(data)
    raise TranscriptError(f"{content_type} is not a transcript format (WebVTT or SRT)")


class TranscriptFile:
    """Reads the transcript uploaded with the recording (or uploaded as the recording) into the context."""

    name = "transcript_file"

    async def run(self, context: ProcessingContext) -> None:
        files = context.recording
        if files.transcript_path is None or context.segments:
            return
        try:
            data = await asyncio.to_thread(files.transcript_path.read_bytes)
        except FileNotFoundError:
            raise StepFailed("The transcript file is missing from storage") from None
        try:
            transcript = parse_transcript(data, files.transcript_content_type or "")
        except TranscriptError as exc:
            raise StepFailed(f"The transcript cannot be read: {exc}") from None
        context.segments = transcript.segments
        context.duration = max(context.duration or 0, math.ceil(transcript.end))
