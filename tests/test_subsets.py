"""Uniform random subsets (workbench/subsets.py): Floyd's algorithm resolved for all steps at once
against the same algorithm step by step on the same draws, and the distribution it must have:
every subset of a tiny set equally often, every item in a subset with probability n / G."""
from __future__ import annotations

import math
from collections import Counter
from itertools import combinations

import pytest
import torch

from workbench.subsets import random_subsets


def floyd(draws: list[float], total: int) -> list[int]:
    """Floyd's algorithm (Bentley and Floyd 1987) step by step on the documented draws."""
    base, taken = total - len(draws), []
    for j, u in enumerate(draws):
        candidate = int(u * (base + 1 + j))
        taken.append(base + j if candidate in taken else candidate)
    return taken


@pytest.mark.parametrize("total", [1, 2, 3, 7, 16, 40])
def test_vectorised_floyd_equals_the_step_by_step_algorithm_on_the_same_draws(total):
    for size in range(1, total + 1):
        items, complement = random_subsets(30, size, total, torch.Generator().manual_seed(size))
        m = min(size, total - size)
        rng = torch.Generator().manual_seed(size)
        draws = torch.rand(30, m, dtype=torch.float64, generator=rng)
        assert items.tolist() == [floyd(row, total) for row in draws.tolist()]
        assert complement == (2 * size > total)
        assert all(len(set(row)) == m for row in items.tolist())


def test_draws_in_chunks_give_the_same_subsets():
    whole, _ = random_subsets(12, 9, 20, torch.Generator().manual_seed(0))
    rng = torch.Generator().manual_seed(0)
    parts = [random_subsets(rows, 9, 20, rng)[0] for rows in (5, 1, 6)]
    assert torch.equal(whole, torch.cat(parts))


def subset_sets(size: int, total: int, rows: int, seed: int) -> list[frozenset]:
    items, complement = random_subsets(rows, size, total, torch.Generator().manual_seed(seed))
    everything = frozenset(range(total))
    return [everything - frozenset(row) if complement else frozenset(row)
            for row in items.tolist()]


@pytest.mark.parametrize("size", [2, 3, 4])
def test_every_subset_of_a_tiny_set_is_equally_likely(size):
    # chi-square goodness of fit against the uniform distribution on the C(6, size) subsets;
    # critical values at the 0.001 level for 14 and 19 degrees of freedom
    total, rows = 6, 30000
    counts = Counter(subset_sets(size, total, rows, seed=size))
    subsets = [frozenset(c) for c in combinations(range(total), size)]
    assert set(counts) == set(subsets)
    expected = rows / len(subsets)
    chi2 = sum((counts[c] - expected) ** 2 / expected for c in subsets)
    assert chi2 < {15: 37.7, 20: 45.3}[len(subsets)]


@pytest.mark.parametrize("size", [1, 5, 13, 19])
def test_each_item_is_in_a_subset_with_probability_n_over_g(size):
    total, rows = 20, 20000
    frequency = torch.zeros(total)
    for subset in subset_sets(size, total, rows, seed=7):
        frequency[list(subset)] += 1
    p = size / total
    # five binomial standard deviations around n / G
    assert (frequency / rows - p).abs().max() < 5 * math.sqrt(p * (1 - p) / rows)
    assert all(len(s) == size for s in subset_sets(size, total, 50, seed=1))
