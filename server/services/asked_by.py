"""Who asked for a call, in the words every channel shows: the assistant, and the person it acts for.

"Claude on behalf of alice@acme.test", or "Claude on behalf of you" to that person. The assistant's name is a key's
name or what an OAuth client calls itself, which anyone may register: it is escaped as arguments are, so it can
neither break a line nor hide a character. An approval asked before names were kept, or through a key without a
name, has none; each channel then shows the person as it did before.
"""

from __future__ import annotations

from tools.summary import escape


def on_behalf_of(assistant: str, person: str) -> str:
    """``assistant`` acting for ``person`` (a name, an e-mail address, or "you"); the person alone without one."""
    return f"{escape(assistant)} on behalf of {person}" if assistant else person
