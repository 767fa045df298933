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
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.timing import synchronize
from lcvg_env.models import LayeredGenerator, ModelConfig, resolve_device
from lcvg_env.registration import SPRITES_CHECKPOINT, SPRITES_FAST_CHECKPOINT, SPRITES_STARTS
from lcvg_env.simulator import COMPILE_MODES
from lcvg_env.tracking import TRACKING_MODES
from lcvg_env.vector import LCVGVectorEnv

ASSETS = Path(__file__).resolve().parents[1] / "lcvg_env" / "assets"


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    parser = _parser()
    args = parser.parse_args(argv)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if "bf16" in args.precision and device.type != "cuda":
        parser.error(f"--precision bf16 needs a CUDA device, got {device}")
    results, skipped = _measure_models(_models(args, device), args, device)
    report = {
        "benchmark": "env_step",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cudnn_benchmark": args.cudnn_benchmark,
        "compile": args.compile,
        "torch": torch.__version__,
        "results": results,
        "skipped": skipped,
    }
    print(json.dumps(report, indent=1))
    return 0


def _parser() -> argparse.ArgumentParser:
    """The command line of :func:`main`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--budget", type=float, default=30.0, help="seconds per (model, N)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--checkpoint", default=None, help="sprites checkpoint to measure")
    parser.add_argument("--start-frames", default=None,
                        help="first frames for --checkpoint (a folder, .npz or .npy; default: "
                             "random frames)")
    parser.add_argument("--skip-paper", action="store_true", help="only the sprites models")
    parser.add_argument("--skip-sprites", action="store_true", help="only the paper_bair model")
    parser.add_argument("--tracking", nargs="+", choices=TRACKING_MODES,
                        default=["segment", "carry"],
                        help="simulator tracking modes to measure (carry skips M per step; "
                             "anchored costs what segment does)")
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32"],
                        help="network precision: fp32, bf16 (autocast; CUDA only)")
    parser.add_argument("--compile", choices=("off", *COMPILE_MODES),
                        default="off", help="torch.compile the networks (simulator compile=)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True (autotuned convolutions)")
    return parser


def _models(args: argparse.Namespace, device: torch.device
            ) -> list[tuple[str, LayeredGenerator, Any]]:
    """(label, model, first frames or None) of every model the flags ask for, in order."""
    models = [] if args.skip_sprites else _sprites_models(args, device)
    if not args.skip_paper:
        torch.manual_seed(0)
        paper = LayeredGenerator(ModelConfig.paper_bair())
        models.append(("paper_bair (random weights)", paper, random_frames((256, 256))))
    return models


def _sprites_models(args: argparse.Namespace, device: torch.device
                    ) -> list[tuple[str, LayeredGenerator, Any]]:
    """The ``--checkpoint`` model, else the bundled sprites models (see :func:`sprites_model`).

    When neither bundled checkpoint is present, their random stand-in is listed once.
    """
    if args.checkpoint:
        name, model, frames = sprites_model(device, args.checkpoint)
        return [(name, model, args.start_frames or frames)]
    models: list[tuple[str, LayeredGenerator, Any]] = []
    for bundled in (SPRITES_CHECKPOINT, SPRITES_FAST_CHECKPOINT):
        entry = sprites_model(device, bundled=bundled)
        if entry[0] not in [name for name, *_ in models]:  # a random stand-in only once
            models.append(entry)
    return models


def _measure_models(models: list[tuple[str, LayeredGenerator, Any]], args: argparse.Namespace,
                    device: torch.device) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measure every (model, precision, tracking, N); returns the result rows and the skipped.

    Each result row is also printed to stderr as it comes. Within one (model, precision,
    tracking) the sizes stop at the first N over the budget.
    """
    compile: bool | str = False if args.compile == "off" else args.compile
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for label, net, starts in models:
        net = net.to(device).eval()
        if starts is None:
            starts = random_frames(tuple(net.config.resolution))
        params = sum(p.numel() for p in net.parameters())
        for precision in args.precision:
            for tracking in args.tracking:
                for n in args.sizes:
                    row = measure(net, starts, n, device, args.budget, tracking,
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
