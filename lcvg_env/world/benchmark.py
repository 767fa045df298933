"""Frames per second of the sprites world on one CPU core: ``python -m lcvg_env.world.benchmark``.

Prints the rate of ``lcvg_env.world.render`` (64x64, 1-3 objects, sensor noise; classic and
varied style, the varied one with lighting and shadows) and of ``SpritesRealEnv.step`` (two
controlled objects, reach task, random actions, episodes of 100 steps; resets not timed). The
process is pinned to one core where the platform allows it. Nothing is asserted: the numbers
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np

from lcvg_env.configs import parse_config
from lcvg_env.world.scene import STYLES, SceneConfig, Style, render, sample_scene
from lcvg_env.world.twin import SpritesRealEnv


@dataclass(frozen=True)
class WorldBenchmarkConfig:
    """What ``python -m lcvg_env.world.benchmark`` measures."""

    size: int = 64
    """Frame height and width in pixels."""

    def __post_init__(self) -> None:
        """Validate the size (at least the scenes' minimum, 8)."""
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 8:
            raise ValueError(f"WorldBenchmarkConfig.size must be an int >= 8, got {self.size!r}")


def render_rate(style: Style, frames: int = 3000, size: int = 64) -> float:
    """Measure the frames per second of :func:`render` on 50 ``style`` scenes (best of 3)."""
    rng = np.random.default_rng(0)
    scenes = [sample_scene(SceneConfig(style=style, size=size), rng) for _ in range(50)]
    best = 0.0
    for _ in range(3):
        start = time.perf_counter()
        for i in range(frames):
            scene, poses = scenes[i % len(scenes)]
            render(scene, poses, rng=rng)
        best = max(best, frames / (time.perf_counter() - start))
    return best


def step_rate(style: Style, control: str, episodes: int = 20, size: int = 64) -> float:
    """Measure the steps per second of the twin (2 objects, reach), resets excluded."""
    env = SpritesRealEnv(
        control=control, num_objects=2, task="reach", style=style, size=size,
        observation_keys=("frame", "centroids", "target"),
    )
    rng = np.random.default_rng(0)
    total, steps = 0.0, 0
    for episode in range(episodes):
        env.reset(seed=episode)
        width = env.action_space.shape[0] if env.action_space.shape else 0
        actions = rng.uniform(-1, 1, size=(100, width)).astype(np.float32)
        start = time.perf_counter()
        for action in actions:
            env.step(action)
        total += time.perf_counter() - start
        steps += len(actions)
    return steps / total


def main(argv: list[str] | None = None) -> None:
    """Print the rates."""
    parser = argparse.ArgumentParser(prog="python -m lcvg_env.world.benchmark",
                                     description=__doc__.splitlines()[0])
    config, _ = parse_config(parser, WorldBenchmarkConfig, argv, print_config=False)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    for style in STYLES:
        print(f"render {style:8s} {render_rate(style, size=config.size):7.0f} frames/s")
    for style in STYLES:
        for control in ("position", "affine"):
            rate = step_rate(style, control, size=config.size)
            print(f"step   {style:8s} {control:9s} {rate:7.0f} steps/s")


if __name__ == "__main__":
    main()
