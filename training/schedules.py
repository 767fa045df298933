"""Pure schedule functions of the step (no hidden state: the step is the schedule's state)."""

from __future__ import annotations

import math


def bg_fg_ratio(step: int, start: float, end: float, halve_every: int) -> float:
    """Return lambda_bg : lambda_fg at ``step``: ``start`` halved every ``halve_every``, floor end.

    ``halve_every == 0`` keeps ``start``. The paper's BAIR schedule is (80, 5, 1000): 80, 40, 20,
    10, 5, 5, ...; Tennis is (10, 5, 5000); the released code's is (5, 5, 2000), a constant.
    ``start = end = inf`` switches the size prior off (lambda_fg = lambda_bg / inf = 0).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if start <= 0 or end <= 0:
        raise ValueError(f"ratios must be > 0, got start={start}, end={end}")
    if halve_every < 0:
        raise ValueError(f"halve_every must be >= 0, got {halve_every}")
    if halve_every == 0 or math.isinf(start):
        return float(start)
    return float(max(end, start * 0.5 ** (step // halve_every)))


def fg_weight(step: int, bg_weight: float, start: float, end: float, halve_every: int) -> float:
    """lambda_fg = lambda_bg / ratio(step) (the released code's parametrisation)."""
    return float(bg_weight / bg_fg_ratio(step, start, end, halve_every))


def ramp(step: int, ramp_steps: int) -> float:
    """Linear ramp factor min(1, step / ramp_steps); 1 when ``ramp_steps`` is 0."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if ramp_steps <= 0:
        return 1.0
    return float(min(1.0, step / ramp_steps))


def gan_factor(step: int, disc_start: int) -> float:
    """1.0 once ``step >= disc_start`` (the VQGAN warm-up), else 0.0."""
    return 1.0 if step >= disc_start else 0.0


def lr_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up factor in (0, 1]: (step + 1) / warmup_steps until warm, then 1."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if warmup_steps <= 0:
        return 1.0
    return float(min(1.0, (step + 1) / warmup_steps))
