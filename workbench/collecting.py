"""A list that code deep inside a call fills for the caller, through a context variable: set
while a ``with`` block runs, reset when it ends (also on an error)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any


@contextmanager
def collecting(variable: ContextVar[list[Any] | None]) -> Iterator[list[Any]]:
    """A fresh list as ``variable``'s value while the block runs."""
    sink: list[Any] = []
    token = variable.set(sink)
    try:
        yield sink
    finally:
        variable.reset(token)
