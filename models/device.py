"""Pick the compute device: CUDA when present (features included), CPU otherwise."""
from __future__ import annotations

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """'cuda', 'cpu' or None (auto). Asking for CUDA on a machine without it is an error, not a silent CPU run."""
    from models.errors import ComoliveError

    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ComoliveError(f"unknown compute device {requested!r}: use cpu, cuda (or cuda:N), or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ComoliveError("CUDA was requested but no usable NVIDIA GPU/driver is available")
    return dev
