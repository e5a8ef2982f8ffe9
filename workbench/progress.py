"""Progress bars for long command-line runs: tqdm's bar in a terminal or a notebook, and one
final line in a log.

tqdm redraws its line with a carriage return; written to a file or a pipe, each redraw stays,
and a log collects the same line several times. ``bar(...)`` gives tqdm (``tqdm.auto``) when
the output is a terminal or a Jupyter kernel's, and otherwise a counter that writes tqdm's
final line once, when it is closed.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm as terminal_tqdm
from tqdm.auto import tqdm as auto_tqdm
from tqdm.autonotebook import tqdm as notebook_or_terminal_tqdm


class FinalLine:
    """Counts like ``tqdm`` (``update``, ``set_postfix``, iteration, ``with``) and writes
    tqdm's summary line once, on ``close``."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None,
                 desc: str = "", unit: str = "it", file: TextIO | None = None) -> None:
        if total is None and iterable is not None:
            total = len(iterable) if hasattr(iterable, "__len__") else None
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.file = file
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self.start = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self) -> FinalLine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = values

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        postfix = ", ".join(f"{k}={v}" for k, v in self.postfix.items()) or None
        line = terminal_tqdm.format_meter(self.n, self.total, time.monotonic() - self.start,
                                          prefix=self.desc, unit=self.unit, postfix=postfix,
                                          ascii=True)
        file = self.file or sys.stderr
        file.write(line + "\n")
        file.flush()


def _interactive(file: TextIO) -> bool:
    """A terminal, or a Jupyter kernel (where ``tqdm.auto`` draws a widget)."""
    if notebook_or_terminal_tqdm is not terminal_tqdm:
        return True
    try:
        return file.isatty()
    except (AttributeError, ValueError):
        return False


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
        unit: str = "it", disable: bool = False, file: TextIO | None = None):
    """A progress bar over ``iterable`` (or counting to ``total``): tqdm when the output is
    interactive, else a ``FinalLine``; nothing at all when ``disable``."""
    stream = file or sys.stderr
    if disable or _interactive(stream):
        return auto_tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable,
                         file=file)
    return FinalLine(iterable, total=total, desc=desc, unit=unit, file=file)
