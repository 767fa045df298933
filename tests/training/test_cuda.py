"""Training on a CUDA device (``pytest -m gpu``; deselected by default): bf16 autocast, both
layouts, compiled, both stages, end to end through ``train``."""

from __future__ import annotations

import json
import math

import pytest
import torch

from training.loop import train

from .conftest import tiny_config

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize(("channels_last", "compile"), [("off", False), ("on", False),
                                                      ("off", True)])
def test_both_stages_train_on_cuda_in_bf16(tiny_data, tmp_path, channels_last: str,
                                           compile: bool) -> None:
    cfg = tiny_config(tiny_data, device="cuda", amp="bf16", channels_last=channels_last,
                      compile=compile, deterministic=False, eval_clips=2, eval_horizon=3)
    trainer = train(cfg, tmp_path / "run")
    assert trainer.finished and trainer.device.type == "cuda"
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    losses = [v for row in rows for k, v in row.items() if k.endswith("/total_loss")]
    assert losses and all(math.isfinite(v) for v in losses)
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert trainer.final_eval is not None and "mask_iou" in trainer.final_eval
