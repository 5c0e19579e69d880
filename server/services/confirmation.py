"""How a person is asked through the assistant: the question, their answer, and what the client can show.

Neutral words for a confirmation, whatever protocol carries it: the MCP front end turns a ``Prompt`` into
form or URL elicitation (it owns the form), and the client's reply into an ``Answer``. What an answer may
decide is the approval flow's to say, never the form's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

#: How long an in-chat "remember" may last: the one choice besides not remembering.
IN_CHAT_REMEMBER = "1h"


@dataclass(frozen=True)
class Prompt:
    """A question for the person, sent through the assistant."""

    approval_id: str
    nonce: str
    message: str
    kind: Literal["form", "url"]
    url: str
    remember_scope: str | None = None
    """What "remember" would approve, in plain words, for a form that offers it."""


@dataclass(frozen=True)
class Answer:
    """The reply to a prompt as the client returned it, read from the form: it may be the assistant's own."""

    approval_id: str
    nonce: str
    kind: Literal["form", "url"]
    action: Literal["accept", "decline", "cancel"]
    decision: Literal["approve", "deny"] | None = None
    remember: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Channel:
    """How this client can be asked, from what it declared when it called."""

    form: bool = False
    url: bool = False
    ask_inline: Callable[[Prompt], Awaitable[Answer]] | None = None
    answer: Answer | None = None

    @property
    def deferred(self) -> bool:
        """True where a prompt is returned to the client and answered on its retry (2026-07-28)."""
        return self.ask_inline is None


NO_CHANNEL = Channel()
