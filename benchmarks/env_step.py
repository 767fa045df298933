"""Throughput of the natively batched environment: generated frames per second of ``step``.

Prints one JSON object: for the sprites models (the bundled ``sprites_small`` and
``sprites_fast`` checkpoints when present, else the trainer's ``small`` architecture with random
weights) and a ``paper_bair``-sized model with random weights, frames/s of
``LCVGVectorEnv.step`` (random position actions, the whole step: mask warp, generator, mask
network, connected components, numpy observations) for
N in {1, 16, 64, 256}, with the simulator's ``tracking="segment"`` (the paper's loop) and
``"carry"`` (no mask network or components after reset). An N whose first step shows it would
not fit in the time budget is skipped and listed under ``skipped``. Measures; never passes or fails.

    python -m benchmarks.env_step [--device cpu] [--budget 30] [--sizes 1 16 64 256]
        [--checkpoint CKPT [--start-frames FRAMES]] [--precision fp32 bf16]

The flags are the fields of :class:`EnvStepConfig` (``--print-config`` prints the resolved
config and exits).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from benchmarks.config_checks import check_device, check_int_tuple, parse_benchmark, resolved_device
from benchmarks.timing import synchronize
from lcvg_env.configs import check_choices, check_ints
from lcvg_env.models import LayeredGenerator, ModelConfig
from lcvg_env.registration import SPRITES_CHECKPOINT, SPRITES_FAST_CHECKPOINT, SPRITES_STARTS
from lcvg_env.simulator import CompileMode
from lcvg_env.tracking import Tracking
from lcvg_env.vector import LCVGVectorEnv

ASSETS = Path(__file__).resolve().parents[1] / "lcvg_env" / "assets"

Precision = Literal["fp32", "bf16"]
"""Network precision of a measurement: fp32, or bf16 autocast (CUDA only)."""
Compile = Literal["off", CompileMode]
"""``--compile``: off, or one of the simulator's ``COMPILE_MODES`` (``torch.compile`` modes)."""


@dataclass(frozen=True)
class EnvStepConfig:
    """What ``python -m benchmarks.env_step`` measures."""

    device: str = "cpu"
    """Torch device: cpu, cuda, auto (CUDA when available)..."""
    budget: float = 30.0
    """Seconds per (model, N): an N whose first step shows it would not fit is skipped."""
    sizes: tuple[int, ...] = (1, 16, 64, 256)
    """Numbers of environments N stepped together, in order."""
    threads: int | None = None
    """Torch CPU threads (None or 0: torch's default)."""
    checkpoint: str | None = None
    """Sprites checkpoint to measure instead of the bundled ones."""
    start_frames: str | None = None
    """First frames for ``--checkpoint`` (a folder, .npz or .npy; default: random frames)."""
    skip_paper: bool = False
    """Only the sprites models."""
    skip_sprites: bool = False
    """Only the paper_bair model."""
    tracking: tuple[Tracking, ...] = ("segment", "carry")
    """Simulator tracking modes to measure (segment, carry, anchored; carry skips M per step,
    anchored costs what segment does)."""
    precision: tuple[Precision, ...] = ("fp32",)
    """Network precisions: fp32, bf16 (autocast; CUDA only)."""
    compile: Compile = "off"
    """torch.compile the networks (the simulator's ``compile``): off or a mode."""
    cudnn_benchmark: bool = False
    """Set ``torch.backends.cudnn.benchmark = True`` (autotuned convolutions)."""

    def __post_init__(self) -> None:
        """Validate the choices, counts and device, naming the offending value."""
        check_choices(self)
        check_ints(self, {"threads": 0})
        check_int_tuple(self, "sizes", 1)
        check_device(self)
        if not self.budget > 0:
            raise ValueError(f"EnvStepConfig.budget must be > 0, got {self.budget!r}")


def sprites_model(
    device: torch.device, checkpoint: str | None = None, bundled: str = SPRITES_CHECKPOINT
) -> tuple[str, LayeredGenerator, Any]:
    """The sprites model and its first frames: ``checkpoint``, else the ``bundled`` one, else
    the trainer's ``small`` preset architecture with random weights (same cost per step)."""
    path = Path(checkpoint) if checkpoint else ASSETS / bundled
    starts = ASSETS / SPRITES_STARTS
    if path.is_file():
        model = LayeredGenerator.from_checkpoint(path, device=device)
        frames: Any = str(starts) if starts.is_file() and not checkpoint else None
        return f"sprites ({path.name})", model, frames
    torch.manual_seed(0)
    try:
        from training.config import small_model

        config, name = small_model(), "training small preset"
    except ImportError:
        config, name = ModelConfig.medium(), "ModelConfig.medium()"
    return f"{name} (random weights: no sprites checkpoint)", LayeredGenerator(config), None


def random_frames(resolution: tuple[int, int], count: int = 16) -> np.ndarray:
    """Grey frames with a coloured square (uint8 (count, H, W, 3))."""
    h, w = resolution
    rng = np.random.default_rng(0)
    frames = np.full((count, h, w, 3), 100, np.uint8)
    for i in range(count):
        y, x = rng.integers(0, h * 3 // 4), rng.integers(0, w * 3 // 4)
        frames[i, y : y + h // 6, x : x + w // 6] = (220, 60, 60)
    return frames


def measure(
    model: LayeredGenerator, frames: Any, n: int, device: torch.device, budget: float,
    tracking: str = "segment", autocast: bool = False, compile: bool | str = False,
) -> dict[str, Any] | None:
    """frames/s of ``step`` for N = n; None when one step shows it would not fit ``budget``."""
    env = LCVGVectorEnv(
        n, model=model, start_frames=frames, device=device, autoreset_mode="Disabled",
        tracking=tracking, autocast=autocast, compile=compile,
    )
    env.reset(seed=0)
    env.action_space.seed(0)
    # warm-up (allocations, kernel selection; with compile, a first step that compiles and a
    # second one that shows the compiled cost)
    warmup = []
    for _ in range(2 if compile else 1):
        start = time.perf_counter()
        env.step(env.action_space.sample())
        warmup.append(time.perf_counter() - start)
    if warmup[-1] * 3 > budget:
        return None
    steps, elapsed = 0, 0.0
    while steps < 3 or (elapsed < budget / 2 and steps < 50):
        actions = env.action_space.sample()
        synchronize(device)
        start = time.perf_counter()
        env.step(actions)
        synchronize(device)
        elapsed += time.perf_counter() - start
        steps += 1
    return {
        "num_envs": n,
        "frames_per_second": round(n * steps / elapsed, 2),
        "step_ms": round(1000 * elapsed / steps, 2),
        "steps": steps,
        **({"first_step_s": round(warmup[0], 2)} if compile else {}),
    }


def benchmark_device(config: EnvStepConfig, parser: argparse.ArgumentParser | None = None
                     ) -> torch.device:
    """``config.device`` resolved; bf16 needs CUDA.

    Raises:
        ValueError: the device is not there, or bf16 is asked for on another; with
            ``parser``, exits through ``parser.error`` instead.
    """
    device = resolved_device(config, parser)
    if "bf16" in config.precision and device.type != "cuda":
        message = f"--precision bf16 needs a CUDA device, got {device}"
        if parser is None:
            raise ValueError(message)
        parser.error(message)
    return device


def run(config: EnvStepConfig, device: torch.device | None = None) -> dict[str, Any]:
    """Measure every model, precision, tracking and N of ``config``; returns the JSON report.

    ``device``: where the models run (default: :func:`benchmark_device`).
    """
    torch.backends.cudnn.benchmark = config.cudnn_benchmark
    if config.threads:
        torch.set_num_threads(config.threads)
    device = benchmark_device(config) if device is None else device
    results, skipped = _measure_models(_models(config, device), config, device)
    return {
        "benchmark": "env_step",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cudnn_benchmark": config.cudnn_benchmark,
        "compile": config.compile,
        "torch": torch.__version__,
        "results": results,
        "skipped": skipped,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    config, parser = parse_benchmark(EnvStepConfig, "python -m benchmarks.env_step", __doc__, argv)
    if config is None:  # --print-config
        return 0
    print(json.dumps(run(config, benchmark_device(config, parser)), indent=1))
    return 0


def _models(config: EnvStepConfig, device: torch.device
            ) -> list[tuple[str, LayeredGenerator, Any]]:
    """(label, model, first frames or None) of every model the config asks for, in order."""
    models = [] if config.skip_sprites else _sprites_models(config, device)
    if not config.skip_paper:
        torch.manual_seed(0)
        paper = LayeredGenerator(ModelConfig.paper_bair())
        models.append(("paper_bair (random weights)", paper, random_frames((256, 256))))
    return models


def _sprites_models(config: EnvStepConfig, device: torch.device
                    ) -> list[tuple[str, LayeredGenerator, Any]]:
    """The ``--checkpoint`` model, else the bundled sprites models (see :func:`sprites_model`).

    When neither bundled checkpoint is present, their random stand-in is listed once.
    """
    if config.checkpoint:
        name, model, frames = sprites_model(device, config.checkpoint)
        return [(name, model, config.start_frames or frames)]
    models: list[tuple[str, LayeredGenerator, Any]] = []
    for bundled in (SPRITES_CHECKPOINT, SPRITES_FAST_CHECKPOINT):
        entry = sprites_model(device, bundled=bundled)
        if entry[0] not in [name for name, *_ in models]:  # a random stand-in only once
            models.append(entry)
    return models


def _measure_models(models: list[tuple[str, LayeredGenerator, Any]], config: EnvStepConfig,
                    device: torch.device) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measure every (model, precision, tracking, N); returns the result rows and the skipped.

    Each result row is also printed to stderr as it comes. Within one (model, precision,
    tracking) the sizes stop at the first N over the budget.
    """
    compile: bool | str = False if config.compile == "off" else config.compile
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for label, net, starts in models:
        net = net.to(device).eval()
        if starts is None:
            starts = random_frames(tuple(net.config.resolution))
        params = sum(p.numel() for p in net.parameters())
        for precision in config.precision:
            for tracking in config.tracking:
                for n in config.sizes:
                    row = measure(net, starts, n, device, config.budget, tracking,
                                  autocast=precision == "bf16", compile=compile)
                    if row is None:
                        skipped.append({"model": label, "precision": precision,
                                        "tracking": tracking, "num_envs": n,
                                        "reason": "over the time budget"})
                        break  # larger N would not fit either
                    results.append(
                        {
                            "model": label,
                            "parameters": params,
                            "resolution": list(net.config.resolution),
                            "precision": precision,
                            "tracking": tracking,
                            **row,
                        }
                    )
                    print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results, skipped


if __name__ == "__main__":
    raise SystemExit(main())
