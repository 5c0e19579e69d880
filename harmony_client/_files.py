"""Files for an upload, turned into multipart parts afresh for every attempt.

A retried upload (after a 429) must send the whole file again. A path is
opened anew for each attempt; httpx reads a file object from its start each
time it sends it, so a file object that cannot seek back (a pipe) is refused
up front rather than sent empty on a retry.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import PurePath
from typing import IO, Any

#: A path, an open binary file that can seek, or ``(filename, bytes)`` for content already in memory.
FileInput = str | os.PathLike[str] | IO[bytes] | tuple[str, bytes]
Part = tuple[str, IO[bytes] | bytes, str]


def _typed(filename: str, content: IO[bytes] | bytes) -> Part:
    """The server types a part by its file name when it is sent as application/octet-stream."""
    return filename, content, mimetypes.guess_type(filename)[0] or "application/octet-stream"


def _opener(value: FileInput) -> Callable[[ExitStack], Part]:
    if isinstance(value, tuple):
        filename, content = value
        return lambda opened: _typed(filename, content)
    if isinstance(value, str | os.PathLike):
        path = os.fspath(value)
        return lambda opened: _typed(PurePath(path).name, opened.enter_context(open(path, "rb")))
    if not value.seekable():
        raise ValueError("An upload's file object must be seekable; pass a path or (filename, bytes) instead.")
    filename = PurePath(str(getattr(value, "name", "") or "upload")).name
    return lambda opened: _typed(filename, value)


def multipart(files: Mapping[str, FileInput | None]) -> Callable[[ExitStack], dict[str, Any]]:
    """The ``files=`` of one attempt, for each field given a file; paths opened are closed by ``opened``."""
    openers = {field: _opener(value) for field, value in files.items() if value is not None}
    return lambda opened: {field: open_part(opened) for field, open_part in openers.items()}
