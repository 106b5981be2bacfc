"""Small helpers the analyses' `render` methods share (the text the CLI prints for people)."""

from __future__ import annotations

from typing import Any

MAX_ROWS = 25


def num(x: Any, digits: int = 4) -> str:
    """A number as people read it: thousands separated, floats to `digits`, None as a dash."""
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def plural(n: int, word: str, many: str = "") -> str:
    """`n` and its noun, singular or plural ("1 centre", "3 centres"), never "centre(s)"."""
    return f"1 {word}" if n == 1 else f"{num(n)} {many or word + 's'}"
