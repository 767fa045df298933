"""``LayoutDataset``: item access shared by the datasets over the clip layout."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from training.data.layout import Clip, ClipReader, LayoutIndex
from training.data.skipped import DataWarning


class LayoutDataset(Dataset):
    """Shared item access of the layout datasets: index checks, and skipping damaged items.

    Subclasses set ``index`` (a ``LayoutIndex``), ``root`` and ``item_noun`` ("pair",
    "window") and implement ``_item(index) -> dict``.
    """

    item_noun = "item"
    index: LayoutIndex
    root: Any
    size: Any
    _load_failures: int = 0

    def _attach(self, clips: list[Clip], ground_truth: bool | None, cache_mb: float) -> None:
        """Keep the usable ``clips`` and open their reader (ends every subclass's __init__)."""
        self.clips = clips
        self.has_ground_truth = ground_truth is not False and all(
            c.has_ground_truth for c in clips
        )
        self.reader = ClipReader(clips, self.size, cache_mb)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return item ``index`` as a dict (see the subclass docstring)."""
        n = len(self)
        noun = self.item_noun
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} {noun}s")
        index = int(index) % n
        first_error: Exception | None = None
        for attempt in range(min(n, 64)):
            candidate = (index + attempt) % n
            try:
                return self._item(candidate)
            except (OSError, ValueError, SyntaxError, RuntimeError) as exc:
                # Damage the scan did not see (check="none"/"tail"): serve the next item.
                first_error = first_error or exc
                self._load_failures += 1
                if self._load_failures == 1:
                    warnings.warn(
                        f"unreadable data at {noun} {candidate} ({exc}); serving the next "
                        f"{noun}s instead. Scan with check='decode' to find such frames up front.",
                        DataWarning,
                        stacklevel=2,
                    )
        raise RuntimeError(
            f"{min(n, 64)} consecutive unreadable {noun}s in {self.root}: {first_error}"
        )

    def _item(self, index: int) -> dict[str, Any]:
        raise NotImplementedError
