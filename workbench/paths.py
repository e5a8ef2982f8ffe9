"""Where the workbench keeps its files (no PyTorch here: light pages use it too)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$WORKBENCH_CACHE`` if set, else ``data/cache`` at the repository root."""
    folder = os.environ.get("WORKBENCH_CACHE")
    if folder:
        return Path(folder).expanduser()
    return Path(__file__).resolve().parents[1] / "data" / "cache"
