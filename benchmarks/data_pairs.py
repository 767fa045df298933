"""Frame-pair loading throughput: pairs/s through a DataLoader, at 64x64 and 256x256.

Generates its own temporary sprites data, then times full passes of a shuffled DataLoader:
the first pass decodes every PNG ("cold"), later passes hit the per-worker frame cache
("warm"). Besides wall-clock rates it reports the CPU time spent per pair (workers + main
process, from /proc) and the rate that CPU cost allows on idle cores, which stays meaningful on
a busy machine. Prints one JSON object.

    .venv/bin/python benchmarks/data_pairs.py [--workers 2] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.data.pairs import FramePairDataset  # noqa: E402
from training.data.sprites import SpritesConfig, generate_sprites  # noqa: E402


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


def measure(root: Path, size: int, workers: int, batch_size: int, passes: int) -> dict:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=64, help="batch size")
    parser.add_argument("--clips-64", type=int, default=250, help="sprite clips at 64x64")
    parser.add_argument("--clips-256", type=int, default=25, help="sprite clips at 256x256")
    parser.add_argument("--passes", type=int, default=3, help="passes over the data (>= 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result: dict = {
        "workers": args.workers,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="lcvg_bench_") as tmp:
        for size, clips in ((64, args.clips_64), (256, args.clips_256)):
            root = Path(tmp) / f"sprites{size}"
            start = time.perf_counter()
            generate_sprites(
                root, clips=clips, seed=0, config=SpritesConfig(size=size), val_fraction=0.0,
                test_fraction=0.0, workers=args.workers,
            )
            gen_s = time.perf_counter() - start
            entry = measure(root, size, args.workers, args.batch_size, max(2, args.passes))
            entry["generate_clips_per_s"] = round(clips / gen_s, 1)
            result[f"{size}x{size}"] = entry
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
