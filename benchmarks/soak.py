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
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from lcvg_env.registration import register_envs

_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20 if hasattr(os, "sysconf") else 0.0


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


def soak(env: gym.vector.VectorEnv, steps: int, sample_every: int, warmup: int,
         seed: int) -> dict[str, Any]:
    """Step ``env`` for ``steps`` environment steps after ``warmup`` vector steps; measure."""
    n = env.num_envs
    env.action_space.seed(seed)
    observations, _ = env.reset(seed=seed)
    counts = {"nan": {"observations": 0, "rewards": 0}, "inf": {"observations": 0, "rewards": 0}}

    def record(obs: Any, rewards: Any) -> None:
        for key, values in (("observations", obs), ("rewards", rewards)):
            nan, inf = bad_values(values)
            counts["nan"][key] += nan
            counts["inf"][key] += inf

    record(observations, np.zeros(n))
    for _ in range(warmup):  # first allocations, caches: not part of the slope
        env.step(env.action_space.sample())
    vector_steps = math.ceil(steps / n)
    samples: list[tuple[int, float]] = []
    start_mib, source = rss_mib()
    samples.append((0, start_mib))
    episodes, done_steps = 0, 0
    next_sample = sample_every
    start = time.perf_counter()
    for _ in range(vector_steps):
        observations, rewards, terminated, truncated, _ = env.step(env.action_space.sample())
        record(observations, rewards)
        episodes += int(np.count_nonzero(np.logical_or(terminated, truncated)))
        done_steps += n
        if done_steps >= next_sample:
            samples.append((done_steps, rss_mib()[0]))
            next_sample += sample_every
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak test and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env-id", default="LCVG-Sprites-v0", help="a registered Gymnasium id")
    parser.add_argument("--num-envs", type=int, default=1, help="N environments stepped together")
    parser.add_argument("--steps", type=int, default=100_000,
                        help="environment steps in all (N per vector step)")
    parser.add_argument("--sample-every", type=int, default=1000,
                        help="environment steps between memory samples")
    parser.add_argument("--warmup", type=int, default=50,
                        help="vector steps before measuring (first allocations)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None,
                        help="device of a learned id (cpu, cuda, auto; default: the id's)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint of a learned id")
    parser.add_argument("--start-frames", default=None, help="first frames of a learned id")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    for name in ("num_envs", "steps", "sample_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.threads:
        torch.set_num_threads(args.threads)
    kwargs = {key: value for key, value in (("device", args.device),
                                            ("checkpoint", args.checkpoint),
                                            ("start_frames", args.start_frames))
              if value is not None}
    env = make_env(args.env_id, args.num_envs, kwargs)
    try:
        result = soak(env, args.steps, args.sample_every, args.warmup, args.seed)
    finally:
        env.close()
    report = {
        "benchmark": "soak",
        "config": {"env_id": args.env_id, "num_envs": args.num_envs, "steps": args.steps,
                   "sample_every": args.sample_every, "warmup": args.warmup,
                   "seed": args.seed, "env_kwargs": kwargs},
        **result,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
