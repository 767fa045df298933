"""Training throughput: samples/s and peak memory of one optimiser step of stage I and stage II.

Builds the trainer of a preset (``official_bair`` by default, the released code's model and
losses) and times :func:`training.step.train_step` on synthetic batches kept on the device, so
the number is the step itself (data loading is measured by ``benchmarks/data_pairs.py``). The
batch is a noisy background with a square that moves between f_t and f_{t+1}, so that the
stage II pseudo control has something to fit. Each precision variant builds a fresh trainer;
the steps count from the preset's ``disc_start``, so the GAN (when the preset has one) is on in
every step, as in the released code. Prints one JSON object; measures, never passes or fails.

For scale (issue 4): the released code's reported stage I step time and peak memory (batch 8,
256x256, fp32, H100) are quoted beside our measurements in docs/performance.md.

    python -m benchmarks.train_step [--preset official_bair] [--resolution 256 256]
        [--batch-size 8] [--device auto] [--amp none bf16] [--steps 20] [--warmup 3]
        [--phases stage1 stage2] [--compile]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from benchmarks.timing import synchronize
from lcvg_env.control import trusted_values
from training.config import PRESETS, preset
from training.loop import Trainer
from training.step import train_step


def synthetic_batch(batch: int, resolution: tuple[int, int], device: torch.device,
                    seed: int = 0) -> dict[str, torch.Tensor]:
    """``frame``/``next_frame`` (B, 3, H, W) in [-1, 1] with a square moved by a few pixels.
    No ``index``: the stage II fit cache stays off, so every step fits its controls."""
    h, w = resolution
    g = torch.Generator().manual_seed(seed)
    background = torch.rand(batch, 3, h, w, generator=g) * 0.4 - 0.6
    frames, nexts = background.clone(), background.clone()
    side = max(h, w) // 6
    for i in range(batch):
        y = int(torch.randint(0, h - side - 8, (1,), generator=g))
        x = int(torch.randint(0, w - side - 8, (1,), generator=g))
        dy, dx = (int(v) for v in torch.randint(0, 8, (2,), generator=g))
        colour = torch.rand(3, 1, 1, generator=g) * 1.6 - 0.8
        frames[i, :, y : y + side, x : x + side] = colour
        nexts[i, :, y + dy : y + dy + side, x + dx : x + dx + side] = colour
    return {"frame": frames.to(device), "next_frame": nexts.to(device)}


def measure(trainer: Trainer, phase: str, steps: int, warmup: int) -> dict[str, Any]:
    """Time ``steps`` steps of ``phase`` after ``warmup`` untimed ones."""
    cfg, device = trainer.config, trainer.device
    ctx = trainer.step_context(phase)
    resolution = tuple(cfg.model.resolution)
    first = max(cfg.disc_start, 0)  # global step of the first one: the GAN is on from there
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup):
        train_step(ctx, synthetic_batch(cfg.batch_size, resolution, device, i), first + i)
    batches = [synthetic_batch(cfg.batch_size, resolution, device, warmup + i)
               for i in range(min(steps, 4))]
    synchronize(device)
    start = time.perf_counter()
    for i in range(steps):
        train_step(ctx, batches[i % len(batches)], first + warmup + i)
    synchronize(device)
    elapsed = time.perf_counter() - start
    row: dict[str, Any] = {
        "phase": phase,
        "step_s": round(elapsed / steps, 5),
        "samples_per_s": round(steps * cfg.batch_size / elapsed, 2),
        "steps": steps,
    }
    if device.type == "cuda":
        row["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated(device) / 1e9, 2)
        row["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved(device) / 1e9, 2)
    return row


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="official_bair", choices=PRESETS)
    parser.add_argument("--resolution", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="override the preset's model resolution")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="cpu, cuda, auto")
    parser.add_argument("--amp", nargs="+", choices=("none", "bf16"), default=["none", "bf16"],
                        help="precision variants to measure (bf16 autocast)")
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the modules")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per phase")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per phase")
    parser.add_argument("--phases", nargs="+", choices=("stage1", "stage2"),
                        default=["stage1", "stage2"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True (autotuned convolutions)")
    args = parser.parse_args(argv)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error(f"need --steps >= 1, --warmup >= 0, --batch-size >= 1; got {args.steps}, "
                     f"{args.warmup}, {args.batch_size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    base = preset(args.preset)
    model = base.model
    if args.resolution:
        model = replace(model, resolution=tuple(args.resolution))
    results = []
    for amp in args.amp:
        config = replace(base, data="(synthetic batches)", device=args.device, amp=amp,
                         batch_size=args.batch_size, channels_last=args.channels_last,
                         compile=args.compile, progress=False, eval_clips=0,
                         deterministic=False, model=model)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(config, tmp)
            params = sum(p.numel() for p in trainer.generator.parameters())
            for phase in args.phases:
                with trusted_values(trainer.device.type != "cpu"):  # as Trainer.fit
                    measured = measure(trainer, phase, args.steps, args.warmup)
                row = {"amp": amp, "parameters": params, **measured}
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            device = trainer.device
            del trainer
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    report = {
        "benchmark": "train_step",
        "preset": args.preset,
        "resolution": list(model.resolution),
        "batch_size": args.batch_size,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "channels_last": args.channels_last,
        "compile": args.compile,
        "torch_threads": torch.get_num_threads(),
        "cudnn_benchmark": args.cudnn_benchmark,
        "torch": torch.__version__,
        "results": results,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
