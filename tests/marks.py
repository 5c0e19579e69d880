"""How high a stack of combining marks a text draws on one letter: what the red-team tests measure of a tower."""

from __future__ import annotations

import unicodedata


def longest_run_of_marks(text: str) -> int:
    """The most combining marks (Mn, Me) in a row on one character anywhere in ``text``."""
    longest = run = 0
    for char in text:
        run = run + 1 if unicodedata.category(char) in ("Mn", "Me") else 0
        longest = max(longest, run)
    return longest
