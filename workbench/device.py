"""Device selection: CUDA when present, else the CPU."""
from __future__ import annotations

import torch


def default_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given (e.g. ``"cpu"``, ``"cuda:1"``), else CUDA when available, else CPU."""
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device '{prefer}' was asked for but CUDA is not available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
