"""Two gloo processes on the CPU end with the same weights as one process (same global batch)."""

import os
import socket
from dataclasses import replace

import pytest
import torch
import torch.multiprocessing as mp

from lcvg_env.checkpoint import load_checkpoint

from .conftest import tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    from training.distributed import cleanup_distributed
    from training.loop import train

    try:
        trainer = train(cfg, out)
        assert trainer.finished
    finally:
        cleanup_distributed()


@pytest.mark.slow
def test_two_processes_match_one(tiny_data, tmp_path):
    # GroupNorm in M (the model default) and in D: per-sample normalisation, so splitting the
    # batch over processes changes nothing but float summation order.
    cfg = tiny_config(tiny_data, stage1_steps=3, stage2_steps=2, batch_size=4, disc_start=1,
                      disc_norm="group", code_reset_every=0)
    assert "WORLD_SIZE" not in os.environ
    from training.loop import train

    single = train(cfg, tmp_path / "one")
    assert single.finished and not single.dist.enabled
    mp.spawn(_worker, args=(2, _free_port(), cfg, str(tmp_path / "two")), nprocs=2, join=True)
    a = load_checkpoint(tmp_path / "one" / "model.safetensors").weights
    b = load_checkpoint(tmp_path / "two" / "model.safetensors").weights
    assert a.keys() == b.keys()
    # The attention key bias has a mathematically zero gradient (softmax is invariant to adding
    # q.b to a whole row), so Adam turns float round-off there into lr-sized steps: skip it.
    # Elsewhere, too, Adam divides a gradient near zero by its own size: the summation order
    # (which differs between CPUs' kernels) moves a few such weights by a fraction of a step.
    # Unsynchronised gradients would move most weights apart.
    diffs = {k: (a[k].float() - b[k].float()).abs() for k in a if not k.endswith(".k.bias")}
    total = sum(d.numel() for d in diffs.values())
    apart = {k: int((d > 1e-5).sum()) for k, d in diffs.items() if (d > 1e-5).any()}
    assert sum(apart.values()) <= 1e-3 * total, apart
    worst = max(d.max().item() for d in diffs.values())
    assert worst < 0.25 * cfg.learning_rate, (worst, apart)
    # and the runs really moved the weights (the comparison is not vacuous)
    init_cfg = replace(cfg, stage1_steps=0, stage2_steps=0)
    init = train(init_cfg, tmp_path / "zero")
    c = load_checkpoint(tmp_path / "zero" / "model.safetensors").weights
    assert max((a[k].float() - c[k].float()).abs().max().item() for k in a) > 1e-3
    assert init.finished
