"""Data sets in shards, and statistics over them on Dask (``workbench.cluster``).

A :class:`Shards` object is a list of pieces, each a zero-argument callable that returns one
shard's data (a tensor, or an iterable of batches): workers load their own pieces, so only the
loading recipe travels. Statistics that are sums (pattern moments, covariances) are computed
per shard and added up (:func:`reduce_shards`): the result equals the one-process pass to
float64 round-off. Per-input results (metrics, tables) are mapped over shards and concatenated
in shard order (:func:`map_shards`).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from workbench import cluster, progress as progress_bars


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Shards:
    """A data set as ``pieces``: zero-argument callables, each returning one shard's data."""

    pieces: tuple[Callable[[], Any], ...]

    def __post_init__(self):
        if not self.pieces:
            raise ValueError("Shards needs at least one piece")
        if not all(callable(piece) for piece in self.pieces):
            raise TypeError("every piece of Shards must be a zero-argument callable")

    def __len__(self) -> int:
        return len(self.pieces)

    @classmethod
    def split(cls, data: torch.Tensor, count: int) -> Shards:
        """A tensor cut into ``count`` consecutive shards (each travels with its own task)."""
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"Shards.split needs a tensor, got {type(data).__name__}")
        if not 1 <= count <= len(data):
            raise ValueError(f"count must be between 1 and the {len(data)} samples, got {count}")
        # a clone each: a view would carry (and pickle) the whole storage
        return cls(tuple(functools.partial(_identity, part.clone())
                         for part in data.tensor_split(count)))

    @classmethod
    def from_function(cls, load: Callable[[int], Any], count: int) -> Shards:
        """Shard ``i`` is ``load(i)``; ``load`` must be importable by the workers (a
        module-level function), e.g. one that reads the i-th file of a data set."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        return cls(tuple(functools.partial(load, i) for i in range(count)))

    @classmethod
    def from_files(cls, paths: Sequence[str | Path],
                   load: Callable[[str], Any] = torch.load) -> Shards:
        """One shard per file, read by ``load(path)`` on the worker (default ``torch.load``)."""
        return cls(tuple(functools.partial(load, str(path)) for path in paths))


def _apply(function: Callable[[Any], Any], piece: Callable[[], Any]) -> tuple[Any, int | None]:
    """``function(shard)`` and the shard's number of samples (``None`` if it has no length)."""
    data = piece()
    return function(data), (len(data) if hasattr(data, "__len__") else None)


def _run(function: Callable[[Any], Any], shards: Shards, scheduler: Any, workers: int,
         description: str, progress: bool) -> list[tuple[Any, int | None]]:
    """``(function(shard), len(shard))`` for every shard on Dask, in shard order."""
    from distributed import as_completed

    if not isinstance(shards, Shards):
        raise TypeError(f"data must be a workbench.shards.Shards, got {type(shards).__name__}")
    with cluster.connect(scheduler, workers) as client:
        # a fresh key per call (hash=False): with content-hashed keys, a second call with the same
        # function races the scheduler forgetting the first call's copy ("lost dependencies")
        [remote_function] = client.scatter([function], broadcast=True, hash=False)
        futures = [client.submit(_apply, remote_function, piece, pure=False)
                   for piece in shards.pieces]
        with progress_bars.bar(total=len(futures), desc=description, unit="shard",
                               disable=not progress) as bar:
            for _ in as_completed(futures):
                bar.update()
        return client.gather(futures)


def map_shards(function: Callable[[Any], Any], shards: Shards, *, scheduler: Any = "local",
               workers: int = 2, progress: bool = True, description: str = "shards") -> Any:
    """``function`` applied to every shard on Dask, the results joined in shard order:
    tensors concatenated along dimension 0; pandas tables stacked with a ``shard`` column, and
    a ``sample`` column (a tidy table's per-shard sample index, as in ``wb.sanity_check``)
    offset by the samples of the shards before, so it indexes the whole data set; lists
    chained; anything else comes back as the list of per-shard results."""
    outputs = _run(function, shards, scheduler, workers, description, progress)
    results = [result for result, _ in outputs]
    first = results[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(results)
    if type(first).__name__ == "DataFrame":
        import pandas as pd

        tables, offset = [], 0
        for index, (table, length) in enumerate(outputs):
            table = table.assign(shard=index)
            if "sample" in table:
                if length is None:
                    raise ValueError("a table with a 'sample' column needs shards with a length")
                table["sample"] = table["sample"] + offset
            offset += length or 0
            tables.append(table)
        return pd.concat(tables, ignore_index=True)
    if isinstance(first, list):
        return [item for result in results for item in result]
    return results


def add_by_key(first: Mapping[str, Any], second: Mapping[str, Any],
               what: str = "layers") -> dict[str, Any]:
    """``{key: first[key] + second[key]}``: two shards' per-layer statistics together (a
    ``combine`` for :func:`reduce_shards`); both must name the same ``what``."""
    if first.keys() != second.keys():
        raise ValueError(f"shards ran different {what}: {sorted(first)} vs {sorted(second)}")
    return {key: first[key] + second[key] for key in first}


def sum_statistics(statistics: Callable[..., Any], data, *, combine: Callable[[Any, Any], Any],
                   scheduler: Any = "local", workers: int = 2, progress: bool = True,
                   description: str = "shards") -> Any:
    """``statistics(data, progress=progress)`` for data in this process; for :class:`Shards`,
    the same on every shard on Dask (no per-shard progress bar), added up with ``combine``.

    What statistics over a data set (sums over samples) call, so that their math never asks
    where the data is."""
    if isinstance(data, Shards):
        return reduce_shards(functools.partial(statistics, progress=False), data,
                             combine=combine, scheduler=scheduler, workers=workers,
                             progress=progress, description=description)
    return statistics(data, progress=progress)


def reduce_shards(function: Callable[[Any], Any], shards: Shards, *,
                  combine: Callable[[Any, Any], Any] | None = None, scheduler: Any = "local",
                  workers: int = 2, progress: bool = True, description: str = "shards") -> Any:
    """``function`` on every shard on Dask, the results added up in shard order (``combine``,
    default ``+``): for statistics that are sums over samples."""
    results = [result for result, _ in _run(function, shards, scheduler, workers, description,
                                             progress)]
    combine = combine or (lambda a, b: a + b)
    return functools.reduce(combine, results)
