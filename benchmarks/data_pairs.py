"""Frame-pair loading throughput: pairs/s through a DataLoader, at 64x64 and 256x256.

Generates its own temporary sprites data, then times full passes of a shuffled DataLoader:
the first pass decodes every PNG ("cold"), later passes hit the per-worker frame cache
("warm"). Besides wall-clock rates it reports the CPU time spent per pair (workers + main
process, from /proc) and the rate that CPU cost allows on idle cores, which stays meaningful on
a busy machine. Prints one JSON object.

    .venv/bin/python benchmarks/data_pairs.py [--workers 2] [--batch-size 64]

The flags are the fields of :class:`DataPairsConfig` (``--print-config`` prints the resolved
config and exits).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config_checks import parse_benchmark  # noqa: E402
from lcvg_env.configs import check_ints  # noqa: E402
from training.data.pairs import FramePairDataset  # noqa: E402
from training.data.sprites import SpritesConfig, generate_sprites  # noqa: E402


@dataclass(frozen=True)
class DataPairsConfig:
    """How the pair loading is measured (``benchmarks/data_pairs.py``)."""

    workers: int = 2
    """DataLoader workers (also the workers that generate the sprites)."""
    batch_size: int = 64
    """Batch size."""
    clips_64: int = 250
    """Sprite clips at 64x64."""
    clips_256: int = 25
    """Sprite clips at 256x256."""
    passes: int = 3
    """Passes over the data (>= 2: the first is cold, the best later one warm)."""

    def __post_init__(self) -> None:
        """Validate the counts, naming the offending value."""
        check_ints(self, {"workers": 1, "batch_size": 1, "clips_64": 1, "clips_256": 1,
                          "passes": 2})


def _cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of processes, from /proc (None where unavailable)."""
    total = 0.0
    try:
        tick = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError, IndexError):
        return None
    return total


def measure(root: Path, size: int, config: DataPairsConfig) -> dict:
    """Pairs/s and CPU time per pair of the ``size`` pairs under ``root``, cold and warm."""
    workers, batch_size, passes = config.workers, config.batch_size, config.passes
    start = time.perf_counter()
    ds = FramePairDataset(root, "train", gap=1, size=size, flip=True)
    build_s = time.perf_counter() - start
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=True,
    )
    rates, cpu_per_pair = [], []
    for _ in range(passes):
        it = iter(loader)
        pids = [os.getpid()] + [w.pid for w in getattr(it, "_workers", [])]
        cpu0 = _cpu_seconds(pids)
        n = 0
        start = time.perf_counter()
        for batch in it:
            n += batch["frame"].shape[0]
        rates.append(n / (time.perf_counter() - start))
        cpu1 = _cpu_seconds(pids)
        cpu_per_pair.append(None if cpu0 is None or cpu1 is None else (cpu1 - cpu0) / n)
    cores = min(os.cpu_count() or 1, workers + 1)

    def capacity(c: float | None) -> int | None:
        # pairs/s if the loader had `cores` idle cores to itself (workers + main process)
        return None if not c else round(cores / c)

    warm = 1 + max(range(passes - 1), key=lambda i: rates[1 + i]) if passes > 1 else None
    return {
        "pairs": len(ds),
        "clips": len(ds.clips),
        "index_build_s": round(build_s, 3),
        "cold_pairs_per_s": round(rates[0]),
        "warm_pairs_per_s": round(rates[warm]) if warm else None,
        "cold_cpu_us_per_pair": cpu_per_pair[0] and round(cpu_per_pair[0] * 1e6),
        "warm_cpu_us_per_pair": (
            cpu_per_pair[warm] and round(cpu_per_pair[warm] * 1e6) if warm else None
        ),
        f"cold_capacity_pairs_per_s_on_{cores}_idle_cores": capacity(cpu_per_pair[0]),
        f"warm_capacity_pairs_per_s_on_{cores}_idle_cores": (
            capacity(cpu_per_pair[warm]) if warm else None
        ),
    }


def run(config: DataPairsConfig) -> dict:
    """Generate the sprites at both sizes in a temporary folder, measure; the JSON report."""
    torch.set_num_threads(1)
    result: dict = {
        "workers": config.workers,
        "batch_size": config.batch_size,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="lcvg_bench_") as tmp:
        for size, clips in ((64, config.clips_64), (256, config.clips_256)):
            root = Path(tmp) / f"sprites{size}"
            start = time.perf_counter()
            generate_sprites(
                root, clips=clips, seed=0, config=SpritesConfig(size=size), val_fraction=0.0,
                test_fraction=0.0, workers=config.workers,
            )
            gen_s = time.perf_counter() - start
            entry = measure(root, size, config)
            entry["generate_clips_per_s"] = round(clips / gen_s, 1)
            result[f"{size}x{size}"] = entry
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its JSON."""
    config, _ = parse_benchmark(DataPairsConfig, "benchmarks/data_pairs.py", __doc__, argv)
    if config is None:  # --print-config
        return 0
    print(json.dumps(run(config), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
