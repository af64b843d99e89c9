"""What people see: progress of long steps and tables. On a terminal, rich draws them (a live
line for the step under way, aligned tables); otherwise plain lines, one per event, that a
log or another program reads as they come.

The library reports through `Reporter` only; tasks.py picks the rendering (`for_terminal`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Protocol, TextIO


class Reporter(Protocol):
    def note(self, msg: str) -> None:
        """A line worth keeping: a node provisioned, an event of a drill."""

    def stage(self, msg: str) -> None:
        """What is under way now (the live line on a terminal; a line otherwise)."""

    def close(self) -> None:
        """The step is over: stop any live display."""


class Quiet:
    def note(self, msg: str) -> None:
        pass

    def stage(self, msg: str) -> None:
        pass

    def close(self) -> None:
        pass


class Plain:
    """One line per note and per stage, flushed at once."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def note(self, msg: str) -> None:
        print(msg, file=self.out, flush=True)

    stage = note

    def close(self) -> None:
        pass


class Live:
    """rich: notes scroll above a spinner that names the stage under way."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console()
        self.status = self.console.status("")
        self.started = False

    def note(self, msg: str) -> None:
        self.console.print(msg, markup=False, highlight=False)

    def stage(self, msg: str) -> None:
        self.note(msg)
        self.status.update(f"[bold]{_escape(msg)}")
        if not self.started:
            self.status.start()
            self.started = True

    def close(self) -> None:
        if self.started:
            self.status.stop()
            self.started = False


def for_terminal(out: TextIO | None = None) -> Reporter:
    out = out or sys.stdout
    return Live() if out.isatty() else Plain(out)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str = "",
          out: TextIO | None = None) -> None:
    """Rows under a header: a rich table on a terminal, aligned plain columns otherwise."""
    out = out or sys.stdout
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        t = Table(*header, title=title or None, title_justify="left", box=None, header_style="bold")
        for r in rows:
            t.add_row(*(_escape(c) for c in r))
        Console(file=out).print(t)
        return
    if title:
        print(title, file=out)
    print(plain_table(header, rows), file=out, flush=True)


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is left ragged."""
    every = [tuple(header), *(tuple(r) for r in rows)]
    widths = [max(len(r[i]) for r in every) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
                     for r in every)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
