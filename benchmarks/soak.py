"""Soak test of an environment: step it for a long time and report memory growth and bad values.

Steps a Gymnasium id (default the bundled ``LCVG-Sprites-v0``) as N environments with random
actions (episodes end and autoreset as the id says) and prints ONE JSON object:

- ``rss_slope_mib_per_10k_steps``: least-squares slope of the process's resident memory over
  the samples taken every ``--sample-every`` environment steps after the warm-up (a leak shows
  as a slope that stays above zero however long the run); ``rss_mib`` start/end/max;
- ``nan`` / ``inf``: counts of NaN and infinite values in observations and rewards;
- ``steps_per_s``: environment steps (N per vector step) per second over the measured steps;
- ``config``: what was run.

It measures and reports; it never asserts a time or a limit.

    python -m benchmarks.soak [--env-id LCVG-Sprites-v0] [--num-envs 1] [--steps 100000]
        [--sample-every 1000] [--warmup 50] [--device cpu] [--seed 0]
        [--checkpoint CKPT] [--start-frames FRAMES] [--threads N]

The flags are the fields of :class:`SoakConfig` (``--print-config`` prints the resolved config
and exits).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from benchmarks.config_checks import check_device, parse_benchmark
from lcvg_env.configs import check_ints
from lcvg_env.registration import register_envs

_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 0.0


@dataclass(frozen=True)
class SoakConfig:
    """What ``python -m benchmarks.soak`` steps, and for how long."""

    env_id: str = "LCVG-Sprites-v0"
    """A registered Gymnasium id."""
    num_envs: int = 1
    """N environments stepped together."""
    steps: int = 100_000
    """Environment steps in all (N per vector step)."""
    sample_every: int = 1000
    """Environment steps between memory samples."""
    warmup: int = 50
    """Vector steps before measuring (first allocations)."""
    seed: int = 0
    """Seed of the first reset and of the random actions."""
    device: str | None = None
    """Device of a learned id (cpu, cuda, auto; None: the id's)."""
    checkpoint: str | None = None
    """Checkpoint of a learned id (None: the id's)."""
    start_frames: str | None = None
    """First frames of a learned id (None: the id's)."""
    threads: int | None = None
    """Torch CPU threads (None or 0: torch's default)."""

    def __post_init__(self) -> None:
        """Validate the counts and device, naming the offending value."""
        check_ints(self, {"num_envs": 1, "steps": 1, "sample_every": 1, "warmup": 0,
                          "seed": 0, "threads": 0})
        check_device(self)

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``gym.make_vec`` for the learned id: the fields given."""
        return {key: value for key, value in (("device", self.device),
                                              ("checkpoint", self.checkpoint),
                                              ("start_frames", self.start_frames))
                if value is not None}


def rss_mib() -> tuple[float, str]:
    """Resident memory of this process in MiB, and where it was read.

    ``/proc/self/statm`` (Linux: the current resident set); elsewhere the peak resident set of
    ``resource.getrusage``, which can only grow (a slope then still shows growth).
    """
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE_MIB, "statm"
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = 2**20 if platform.system() == "Darwin" else 2**10  # bytes on macOS, else KiB
        return peak / scale, "ru_maxrss"


def slope_per_10k(steps: Sequence[int], values: Sequence[float]) -> float | None:
    """Least-squares slope of ``values`` over ``steps``, times 10 000; None under two samples."""
    if len(steps) < 2:
        return None
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    x = x - x.mean()
    denominator = float((x * x).sum())
    if denominator == 0.0:
        return None
    return float((x * (y - y.mean())).sum() / denominator * 10_000)


def bad_values(values: Any) -> tuple[int, int]:
    """(NaN count, inf count) of the floating arrays in ``values`` (an array or a dict)."""
    arrays = values.values() if isinstance(values, dict) else (values,)
    nan = inf = 0
    for array in arrays:
        array = np.asarray(array)
        if np.issubdtype(array.dtype, np.floating):
            nan += int(np.isnan(array).sum())
            inf += int(np.isinf(array).sum())
    return nan, inf


def make_env(env_id: str, num_envs: int, kwargs: dict[str, Any]) -> gym.vector.VectorEnv:
    """N environments of ``env_id``: natively batched where the id has a vector entry point."""
    register_envs()
    spec = gym.spec(env_id)
    mode = "vector_entry_point" if spec.vector_entry_point is not None else "sync"
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)


def soak(env: gym.vector.VectorEnv, config: SoakConfig) -> dict[str, Any]:
    """Step ``env`` for ``config.steps`` environment steps after ``config.warmup`` vector
    steps; measure."""
    n = env.num_envs
    env.action_space.seed(config.seed)
    observations, _ = env.reset(seed=config.seed)
    counts = {"nan": {"observations": 0, "rewards": 0}, "inf": {"observations": 0, "rewards": 0}}

    def record(obs: Any, rewards: Any) -> None:
        for key, values in (("observations", obs), ("rewards", rewards)):
            nan, inf = bad_values(values)
            counts["nan"][key] += nan
            counts["inf"][key] += inf

    record(observations, np.zeros(n))
    for _ in range(config.warmup):  # first allocations, caches: not part of the slope
        env.step(env.action_space.sample())
    vector_steps = math.ceil(config.steps / n)
    samples: list[tuple[int, float]] = []
    start_mib, source = rss_mib()
    samples.append((0, start_mib))
    episodes, done_steps = 0, 0
    next_sample = config.sample_every
    start = time.perf_counter()
    for _ in range(vector_steps):
        observations, rewards, terminated, truncated, _ = env.step(env.action_space.sample())
        record(observations, rewards)
        episodes += int(np.count_nonzero(np.logical_or(terminated, truncated)))
        done_steps += n
        if done_steps >= next_sample:
            samples.append((done_steps, rss_mib()[0]))
            next_sample += config.sample_every
    seconds = time.perf_counter() - start
    if samples[-1][0] != done_steps:
        samples.append((done_steps, rss_mib()[0]))
    values = [value for _, value in samples]
    slope = slope_per_10k([s for s, _ in samples], values)
    return {
        "env_steps": done_steps,
        "vector_steps": vector_steps,
        "episodes_ended": episodes,
        "seconds": round(seconds, 3),
        "steps_per_s": round(done_steps / seconds, 2) if seconds > 0 else None,
        "rss_slope_mib_per_10k_steps": None if slope is None else round(slope, 4),
        "rss_mib": {"start": round(start_mib, 2), "end": round(values[-1], 2),
                    "max": round(max(values), 2), "samples": len(samples), "source": source},
        **counts,
    }


def run(config: SoakConfig) -> dict[str, Any]:
    """Make the environments of ``config``, soak them; returns the JSON report."""
    if config.threads:
        torch.set_num_threads(config.threads)
    kwargs = config.env_kwargs()
    env = make_env(config.env_id, config.num_envs, kwargs)
    try:
        result = soak(env, config)
    finally:
        env.close()
    return {
        "benchmark": "soak",
        "config": {"env_id": config.env_id, "num_envs": config.num_envs, "steps": config.steps,
                   "sample_every": config.sample_every, "warmup": config.warmup,
                   "seed": config.seed, "env_kwargs": kwargs},
        **result,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak test and print its JSON."""
    config, _ = parse_benchmark(SoakConfig, "python -m benchmarks.soak", __doc__, argv)
    if config is None:  # --print-config
        return 0
    print(json.dumps(run(config)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
