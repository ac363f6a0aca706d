"""Where `duet eval` prints its progress lines and table: a Rich console that does not
narrow them to 80 columns when stdout is not a terminal."""

from __future__ import annotations

import os

from rich.console import Console

# Wider than any line the eval prints. Rich pads no line to the console's width (the table
# takes the width of its cells), so this only stops the wrapping.
UNWRAPPED = 10_000


def eval_console() -> Console:
    """The console for `duet eval`'s stdout. Without a terminal Rich takes 80 columns,
    wraps longer lines and squeezes the table's cells (`tok cached` as `tok…`); piped
    output goes to a file, a log or a program, which have no width to fit, so there every
    line keeps its full width. In a terminal, or with `COLUMNS` set, Rich's width as usual."""
    console = Console(highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = UNWRAPPED
    return console
