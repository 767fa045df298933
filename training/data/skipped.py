"""Reporting data that was skipped: the :class:`DataWarning` category and its one-line message.

Every reader of the data (the layout scan, the datasets, the converters) counts what it skips
and emits one warning for all of it, so that a large dataset with a few bad files does not
print thousands of lines. This module imports nothing of ``training.data``, so that any of
them can use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

__all__ = ["DataWarning", "skipped_message", "warn_skipped"]


class DataWarning(UserWarning):
    """Some data was skipped (unreadable frames, short clips); the message counts it."""


def skipped_message(counts: dict[str, int], examples: Sequence[str] = ()) -> str | None:
    """One sentence counting skipped data, or None when nothing was skipped."""
    parts = [f"{n} {what}" for what, n in counts.items() if n]
    if not parts:
        return None
    msg = "skipped " + ", ".join(parts)
    if examples:
        msg += " (e.g. " + ", ".join(str(e) for e in examples[:3]) + ")"
    return msg


def warn_skipped(
    counts: dict[str, int], examples: Sequence[str] = (), stacklevel: int = 3
) -> None:
    """Emit ONE :class:`DataWarning` counting everything skipped (no-op when nothing was)."""
    msg = skipped_message(counts, examples)
    if msg is not None:
        warnings.warn(msg, DataWarning, stacklevel=stacklevel)
