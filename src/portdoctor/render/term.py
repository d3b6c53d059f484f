"""A few terminal helpers that cost nothing to import: colour (only on a terminal, never with
NO_COLOR), and left-aligned columns. Used where start-up time matters most (`probe`); the richer
outputs use rich.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Sequence

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


def colour_on(stream: IO[str] | None = None) -> bool:
    """Whether to colour: a terminal, NO_COLOR unset, TERM not dumb (FORCE_COLOR forces it)."""
    if os.environ.get("FORCE_COLOR"):
        return True
    stream = stream or sys.stdout
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return bool(getattr(stream, "isatty", lambda: False)())


def paint(text: str, *styles: str, on: bool) -> str:
    """`text` wrapped in the ANSI codes of `styles` ("bold", "red", ...) when `on`."""
    codes = ";".join(_CODES[s] for s in styles if s in _CODES)
    return f"\x1b[{codes}m{text}\x1b[0m" if on and codes else text


def columns(header: Sequence[str], rows: Sequence[Sequence[str]], widths_of: Sequence[Sequence[str]] | None = None,
            gap: int = 2) -> list[str]:
    """Rows as left-aligned columns under a header. `widths_of` gives the unstyled text of each
    cell when `rows` carry colour codes (their width must not count)."""
    plain = [list(header)] + [list(r) for r in (widths_of if widths_of is not None else rows)]
    width = [max(len(r[i]) for r in plain) for i in range(len(header))]
    out = []
    for shown, raw in zip([list(header)] + [list(r) for r in rows], plain):
        cells = [s + " " * (width[i] - len(raw[i])) for i, s in enumerate(shown)]
        out.append((" " * gap).join(cells).rstrip())
    return out
