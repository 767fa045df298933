"""Input validation of ``lcvg_env.control`` and the value-check switch of ``lcvg_env``.

Shapes and dtypes are always checked. Value scans (NaN/inf, out-of-range or negative values)
run unless the call is inside :func:`trusted_values`; :func:`values_checked` tells whether they
run. The switch is the only one in ``lcvg_env``: the generator's input checks
(``lcvg_env.models.LayeredGenerator``) follow it as well. Errors name what was received.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor


def _describe(x: Any) -> str:
    if isinstance(x, Tensor):
        return f"Tensor(shape={tuple(x.shape)}, dtype={x.dtype}, device={x.device})"
    text = repr(x)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(x).__name__} {text}"


def _require_tensor(name: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(x)}")
    if x.is_complex():
        raise TypeError(f"{name} must be real, got {_describe(x)}")
    return x


_CHECK_VALUES: ContextVar[bool] = ContextVar("lcvg_check_values", default=True)


def values_checked() -> bool:
    """Whether value scans run here: True, unless inside :func:`trusted_values`."""
    return _CHECK_VALUES.get()


@contextmanager
def trusted_values(trusted: bool = True) -> Iterator[None]:
    """Skip every value scan of ``lcvg_env`` (NaN/inf, ranges, negative masks) inside the block.

    Covers ``lcvg_env.control`` and the generator's input checks; shapes and dtypes are still
    checked. For tensors the caller made itself, such as the simulator's state, whose first
    inputs it has already checked: on a GPU each scan is a device synchronisation. The switch
    is a context variable, so it holds in this thread (or task) only and ends with the block;
    a model shared by several callers is left as it is.

    Args:
        trusted: False makes the block change nothing (``trusted_values(on_gpu)``); it never
            turns back on the scans that an enclosing block turned off.
    """
    if not isinstance(trusted, bool):
        raise TypeError(f"trusted must be a bool, got {_describe(trusted)}")
    if not trusted:
        yield
        return
    token = _CHECK_VALUES.set(False)
    try:
        yield
    finally:
        _CHECK_VALUES.reset(token)


def _require_finite(name: str, x: Tensor) -> None:
    # one reduction instead of four elementwise passes: a NaN or inf makes the sum non-finite;
    # finite values whose sum overflows fall through to the exact test
    if (_CHECK_VALUES.get() and x.is_floating_point() and not bool(torch.isfinite(x.sum()))
            and not bool(torch.isfinite(x).all())):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} NaN/inf values: {_describe(x)}")


def _require_float(name: str, x: Tensor) -> Tensor:
    """Finite floating copy of ``x``: bool and integer tensors become float32."""
    if not x.is_floating_point():
        x = x.to(torch.float32)
    _require_finite(name, x)
    return x


def _require_masks(name: str, x: Any, *, channels: int | None = None) -> Tensor:
    """Validate a (B, C, H, W) mask tensor and return it as a finite float tensor."""
    x = _require_tensor(name, x)
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        want = f"(B, {channels}, H, W)" if channels is not None else "(B, C, H, W)"
        raise ValueError(f"{name} must have shape {want}, got {_describe(x)}")
    if x.shape[-1] == 0 or x.shape[-2] == 0:
        raise ValueError(f"{name} must have a non-empty frame, got {_describe(x)}")
    return _require_float(name, x)


def _require_nonnegative(name: str, x: Tensor) -> None:
    if _CHECK_VALUES.get() and x.numel() and bool((x < 0).any()):
        raise ValueError(f"{name} must be >= 0 (mask weights), got min {float(x.min())}")


def _require_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if (
        not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"size must be a pair of positive ints (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def _require_theta(name: str, theta: Any, batch: int | None = None) -> Tensor:
    theta = _require_tensor(name, theta)
    if not theta.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {_describe(theta)}")
    if theta.dim() != 3 or tuple(theta.shape[1:]) != (2, 3):
        raise ValueError(f"{name} must have shape (B, 2, 3), got {_describe(theta)}")
    if batch is not None and theta.shape[0] not in (1, batch):
        raise ValueError(
            f"{name} must have batch size 1 or {batch} (the masks' batch), got {_describe(theta)}"
        )
    _require_finite(name, theta)
    return theta


def _require_points(name: str, points: Any, batch: int, like: Tensor) -> Tensor:
    """Validate one (x, y) per batch entry: (B, 2), or (2,) for all; None gives zeros.

    Returns (B, 2) in the dtype and on the device of ``like``.
    """
    if points is None:
        return like.new_zeros(batch, 2)
    points = _require_tensor(name, points)
    if not points.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {_describe(points)}")
    pairs = points.unsqueeze(0) if points.dim() == 1 else points
    if pairs.dim() != 2 or pairs.shape[1] != 2 or pairs.shape[0] not in (1, batch):
        raise ValueError(f"{name} must have shape (B, 2) or (2,) with B={batch}, got "
                         f"{_describe(points)}")
    _require_finite(name, pairs)
    return pairs.to(device=like.device, dtype=like.dtype).expand(batch, 2)
