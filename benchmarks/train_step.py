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

The flags are the fields of :class:`TrainStepConfig` (``--print-config`` prints the resolved
config and exits).
"""

from __future__ import annotations

import gc
import json
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from benchmarks.config_checks import check_device, check_int_tuple, parse_benchmark
from benchmarks.timing import synchronize
from lcvg_env.configs import check_choices, check_ints
from lcvg_env.control import trusted_values
from training.config import Preset, preset
from training.loop import Trainer
from training.step import train_step

Amp = Literal["none", "bf16"]
"""A precision variant: fp32 (none) or bf16 autocast."""
Phase = Literal["stage1", "stage2"]
"""A training phase."""


@dataclass(frozen=True)
class TrainStepConfig:
    """What ``python -m benchmarks.train_step`` measures."""

    preset: Preset = "official_bair"
    """The trainer preset whose model, losses and GAN are measured."""
    resolution: tuple[int, int] | None = None
    """Model resolution H W instead of the preset's (None: the preset's)."""
    batch_size: int = 8
    """Samples per step."""
    device: str = "auto"
    """Torch device: cpu, cuda, auto (CUDA when available)."""
    amp: tuple[Amp, ...] = ("none", "bf16")
    """Precision variants to measure (none, bf16 autocast), each with a fresh trainer."""
    channels_last: Literal["auto", "on", "off"] = "auto"
    """The trainer's ``channels_last``."""
    compile: bool = False
    """torch.compile the modules."""
    steps: int = 20
    """Timed steps per phase."""
    warmup: int = 3
    """Untimed steps per phase."""
    phases: tuple[Phase, ...] = ("stage1", "stage2")
    """Phases to measure (stage1, stage2)."""
    threads: int | None = None
    """Torch CPU threads (None or 0: torch's default)."""
    cudnn_benchmark: bool = False
    """Set ``torch.backends.cudnn.benchmark = True`` (autotuned convolutions)."""

    def __post_init__(self) -> None:
        """Validate the choices, counts and device, naming the offending value."""
        check_choices(self)
        check_ints(self, {"batch_size": 1, "steps": 1, "warmup": 0, "threads": 0})
        check_int_tuple(self, "resolution", 1)
        check_device(self)


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


def measure(trainer: Trainer, phase: str, config: TrainStepConfig) -> dict[str, Any]:
    """Time ``config.steps`` steps of ``phase`` after ``config.warmup`` untimed ones."""
    steps, warmup = config.steps, config.warmup
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


def run(config: TrainStepConfig) -> dict[str, Any]:
    """Measure every precision variant and phase of ``config``; returns the JSON report.

    Each result row is also printed to stderr as it comes.
    """
    torch.backends.cudnn.benchmark = config.cudnn_benchmark
    if config.threads:
        torch.set_num_threads(config.threads)
    base = preset(config.preset)
    model = base.model
    if config.resolution is not None:
        model = replace(model, resolution=config.resolution)
    results = []
    for amp in config.amp:
        train = replace(base, data="(synthetic batches)", device=config.device, amp=amp,
                        batch_size=config.batch_size, channels_last=config.channels_last,
                        compile=config.compile, progress=False, eval_clips=0,
                        deterministic=False, model=model)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(train, tmp)
            params = sum(p.numel() for p in trainer.generator.parameters())
            for phase in config.phases:
                with trusted_values(trainer.device.type != "cpu"):  # as Trainer.fit
                    measured = measure(trainer, phase, config)
                row = {"amp": amp, "parameters": params, **measured}
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
            device = trainer.device
            del trainer
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {
        "benchmark": "train_step",
        "preset": config.preset,
        "resolution": list(model.resolution),
        "batch_size": config.batch_size,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "channels_last": config.channels_last,
        "compile": config.compile,
        "torch_threads": torch.get_num_threads(),
        "cudnn_benchmark": config.cudnn_benchmark,
        "torch": torch.__version__,
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    config, _ = parse_benchmark(TrainStepConfig, "python -m benchmarks.train_step", __doc__, argv)
    if config is None:  # --print-config
        return 0
    print(json.dumps(run(config), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
