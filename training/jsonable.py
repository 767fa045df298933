"""JSON-ready copies of results: what ``json.dumps`` writes the same way on every machine."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["json_safe"]


def json_safe(x: Any) -> Any:
    """Return a copy of ``x`` that ``json.dumps`` writes without error or NaN.

    Dict keys become str, tuples lists, NumPy scalars Python numbers, and non-finite floats
    None (JSON has no NaN or infinity; an unscored metric reads null).
    """
    if isinstance(x, dict):
        return {str(key): json_safe(value) for key, value in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(value) for value in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
