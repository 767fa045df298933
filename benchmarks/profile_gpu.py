"""Where the time of a ``paper_bair``-sized simulator step and training step goes, on CUDA.

1. The generator alone (``predict_next`` on N frames, no simulator around it) under each
   combination of precision (fp32 / bf16 autocast), memory format (channels_last on / off) and
   ``torch.backends.cudnn.benchmark`` (off / on): ms per call and frames/s.
2. One ``Simulator.step`` (carried tracking) in the default settings, for comparison with 1.
3. ``torch.profiler`` tables (top operators by CUDA time) of a simulator step and of a stage I
   training step of the ``official_bair`` preset, written to ``--tables``.

Prints one JSON object; measures, never passes or fails.

    python -m benchmarks.profile_gpu [--num-envs 64] [--resolution 256] [--tables FILE]

The flags are the fields of :class:`ProfileGpuConfig` (``--print-config`` prints the resolved
config and exits).
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.config_checks import check_device, parse_benchmark, resolved_device
from benchmarks.env_step import random_frames
from benchmarks.timing import synchronize
from benchmarks.train_step import synthetic_batch
from lcvg_env.configs import check_ints
from lcvg_env.control import trusted_values
from lcvg_env.models import LayeredGenerator, ModelConfig
from lcvg_env.simulator import Simulator
from training.config import preset
from training.loop import Trainer
from training.step import train_step


@dataclass(frozen=True)
class ProfileGpuConfig:
    """What ``python -m benchmarks.profile_gpu`` measures and profiles."""

    num_envs: int = 64
    """Frames per generator call and environments of the simulator step (N)."""
    resolution: int = 256
    """Side of the square frames (the paper_bair model and the official_bair preset resized)."""
    repeats: int = 5
    """Timed calls per measurement (after two warm-up calls)."""
    rows: int = 30
    """Rows of each profiler table."""
    tables: str = "profile_tables.txt"
    """Where the profiler tables are written."""
    device: str = "cuda"
    """Torch device: cuda (auto: CUDA when available; cpu only to try the script)."""

    def __post_init__(self) -> None:
        """Validate the counts and device, naming the offending value."""
        check_ints(self, {"num_envs": 1, "resolution": 1, "repeats": 1, "rows": 1})
        check_device(self)


def timed(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` (synchronised with ``device``), after two warm-up calls."""
    for _ in range(2):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def table(fn: Callable[[], Any], title: str, rows: int, device: torch.device) -> str:
    """A profiler table of one call of ``fn`` (after a warm-up), by CUDA time (CPU time when
    ``device`` is the CPU)."""
    fn()
    synchronize(device)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    text = prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total",
                                     row_limit=rows)
    return f"==== {title}\n{text}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurements and print their JSON."""
    config, parser = parse_benchmark(ProfileGpuConfig, "python -m benchmarks.profile_gpu", __doc__,
                                     argv)
    if config is None:  # --print-config
        return 0
    print(json.dumps(run(config, resolved_device(config, parser)), indent=1))
    return 0


@trusted_values()  # no value scans: each would add a device sync to what is profiled
def run(config: ProfileGpuConfig, device: torch.device | None = None) -> dict[str, Any]:
    """Time and profile what ``config`` asks for, write the tables; returns the JSON report.

    ``device``: where it all runs (default: ``config.device`` resolved).
    """
    device = resolved_device(config) if device is None else device
    amp_device = device.type
    size = (config.resolution, config.resolution)
    torch.manual_seed(0)
    model = LayeredGenerator(ModelConfig.paper_bair().replace(resolution=size)).to(device).eval()
    n = config.num_envs
    frames = torch.rand(n, 3, *size, device=device) * 2 - 1
    masks = (torch.rand(n, 1, *size, device=device) > 0.8).float()

    generator_rows = []
    for bf16, channels_last, bench in itertools.product((False, True), repeat=3):
        torch.backends.cudnn.benchmark = bench
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model.to(memory_format=fmt)
        x, m = frames.contiguous(memory_format=fmt), masks.contiguous(memory_format=fmt)

        def call(x: torch.Tensor = x, m: torch.Tensor = m, bf16: bool = bf16) -> None:
            with torch.inference_mode(), torch.autocast(amp_device, torch.bfloat16,
                                                        enabled=bf16):
                model.predict_next(x, m)

        seconds = timed(call, config.repeats, device)
        generator_rows.append({"precision": "bf16" if bf16 else "fp32",
                               "channels_last": channels_last, "cudnn_benchmark": bench,
                               "ms": round(1000 * seconds, 2),
                               "frames_per_second": round(n / seconds, 1)})
        print(json.dumps(generator_rows[-1]), file=sys.stderr, flush=True)

    torch.backends.cudnn.benchmark = False
    tables = []
    sim_rows = []
    start_frames = random_frames(size, n)
    for bf16 in (False, True):
        sim = Simulator(model, n, tracking="carry", autocast=bf16)
        sim.reset(range(n), start_frames)
        controls = torch.zeros(n, 1, 2, device=device)
        seconds = timed(lambda sim=sim, c=controls: sim.step(c), config.repeats, device)
        sim_rows.append({"precision": "bf16" if bf16 else "fp32", "tracking": "carry",
                         "ms": round(1000 * seconds, 2),
                         "frames_per_second": round(n / seconds, 1)})
        print(json.dumps(sim_rows[-1]), file=sys.stderr, flush=True)
        if bf16:
            tables.append(table(lambda sim=sim, c=controls: sim.step(c),
                                f"Simulator.step, N={n}, bf16, carry", config.rows, device))

    official = preset("official_bair")
    train = replace(official, data="(synthetic)", device=str(device), progress=False,
                    eval_clips=0, model=official.model.replace(resolution=size))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(train, tmp)
        ctx = trainer.step_context("stage1")
        batch = synthetic_batch(train.batch_size, size, device)
        counter = itertools.count(1)
        tables.append(table(lambda: train_step(ctx, batch, next(counter)),
                            f"train_step stage I, official_bair, batch {train.batch_size}, "
                            "bf16 autocast", config.rows, device))
    Path(config.tables).write_text("".join(tables))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"benchmark": "profile_gpu", "device_name": name,
            "torch": torch.__version__, "num_envs": n, "resolution": list(size),
            "generator": generator_rows, "simulator": sim_rows, "tables": config.tables}


if __name__ == "__main__":
    raise SystemExit(main())
