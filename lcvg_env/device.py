"""Device selection: the one place where "auto" is turned into a torch device."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn a device name into a ``torch.device``.

    Args:
        device: "auto" (CUDA when available, else CPU), or anything ``torch.device`` accepts
            ("cpu", "cuda", "cuda:1", "meta", a ``torch.device``).

    Raises:
        TypeError: ``device`` is neither a string nor a ``torch.device``.
        ValueError: the name is not a device, or CUDA is asked for but not available.
    """
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        if device.strip().lower() == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            resolved = torch.device(device)
        except RuntimeError as error:
            raise ValueError(f"not a device: {device!r} ({error})") from None
    else:
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(resolved)!r} requested but CUDA is not available")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(resolved)!r} requested but only {torch.cuda.device_count()} "
                "CUDA device(s) exist"
            )
    return resolved
