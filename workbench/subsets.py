"""Uniform random subsets of a fixed size, many at once, at a cost that grows with the size
drawn rather than with the number of items.

Floyd's algorithm (Bentley and Floyd 1987, "Programming pearls: a sample of brilliance",
Communications of the ACM 30(9)) draws ``m`` of ``G`` items, each ``m``-subset with
probability ``1 / C(G, m)``, from ``m`` random integers: for ``j = 0..m-1``, ``t_j`` uniform in
``0..G-m+j``; item ``t_j`` is taken unless it was taken before, then item ``G-m+j`` is. The
loop over ``j`` is sequential; here it is resolved for all steps and rows at once (see
``_taken_before``). For ``size > G / 2`` the complement (``G - size`` items) is drawn instead.
"""
from __future__ import annotations

import torch


def draw_count(size: int, total: int) -> int:
    """How many items ``random_subsets`` draws per row: ``min(size, total - size)``."""
    return min(size, total - size)


def random_subsets(rows: int, size: int, total: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, bool]:
    """``rows`` independent uniform subsets of ``size`` items out of ``0..total-1``.

    Returns ``(items, complement)``: ``items`` of shape ``(rows, m)``, ``m = min(size, total -
    size)``, distinct within a row, on the CPU; ``complement`` tells whether they are the
    subset (``False``, ``size <= total / 2``) or the items left out of it (``True``).

    Draw order: ``u = torch.rand(rows, m, dtype=torch.float64, generator=generator)``, row by
    row; ``t[r, j] = floor(u[r, j] * (total - m + 1 + j))``, then Floyd's algorithm along each
    row. The numbers of ``rows`` rows are those of consecutive draws of fewer rows, so rows can
    be drawn in chunks of any size with the same result.
    """
    complement = 2 * size > total
    m = draw_count(size, total)
    base = total - m
    steps = torch.arange(m)
    uniform = torch.rand(rows, m, dtype=torch.float64, generator=generator)
    candidates = uniform.mul_(steps + (base + 1)).long()
    # step j falls back to item base + j where its candidate was taken at an earlier step
    fallback = _taken_before(candidates, base, total)
    return torch.where(fallback, steps + base, candidates), complement


def _taken_before(candidates: torch.Tensor, base: int, total: int) -> torch.Tensor:
    """Whether candidate ``t_j`` of Floyd's algorithm was already taken at step ``j``.

    The items taken before step ``j`` are ``t_i`` (i < j, each taken at step i or, when it
    was taken already, before) and the fallbacks ``base + i`` of the earlier steps that fell
    back. So ``t_j`` was taken iff it repeats an earlier candidate, or it is a fallback
    ``base + i`` with ``i < j`` and step ``i`` fell back. The second case chains back through
    earlier steps, to a step that repeats a candidate (taken) or is not a fallback (not
    taken); the chains are followed by pointer doubling (each round halves them).
    """
    rows, m = candidates.shape
    steps = torch.arange(m).expand(rows, m)
    # the first step with each candidate (small integers: a narrow type is faster)
    narrow = torch.int16 if m <= torch.iinfo(torch.int16).max else torch.int64
    first = torch.full((rows, total), m, dtype=narrow)
    narrow_steps = steps.to(narrow)
    first.scatter_reduce_(1, candidates, narrow_steps, "amin")
    repeated = first.gather(1, candidates) < narrow_steps
    # each step points to the step whose answer it shares: t_j - base for a fallback item
    # (t_j <= base + j, and t_j = base + j points to itself: not taken before); itself where
    # t_j is below the fallbacks or repeats a candidate
    offset = candidates - base
    pointer = torch.where((offset < 0) | repeated, steps, offset)
    while True:
        further = pointer.gather(1, pointer)
        if torch.equal(further, pointer):
            return repeated.gather(1, pointer)
        pointer = further
