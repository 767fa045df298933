"""Bool mask operations shared by the locator (``locate``) and the palettes (``palette``)."""

from __future__ import annotations

import numpy as np

__all__ = ["dilate"]


def dilate(masks: np.ndarray, steps: int) -> np.ndarray:
    """Dilate bool masks (..., H, W) by ``steps`` 8-neighbourhood steps (a (2s+1)-square)."""
    out = np.asarray(masks, dtype=bool)
    for _ in range(int(steps)):
        grown = out.copy()
        grown[..., 1:, :] |= out[..., :-1, :]
        grown[..., :-1, :] |= out[..., 1:, :]
        rows = grown.copy()
        rows[..., :, 1:] |= grown[..., :, :-1]
        rows[..., :, :-1] |= grown[..., :, 1:]
        out = rows
    return out
