from dataclasses import replace

import pytest
import torch

from lcvg_env.checkpoint import load_checkpoint
from training.loop import train

from .conftest import tiny_config


def _weights(run):
    ckpt = load_checkpoint(run / "model.safetensors")
    return ckpt.weights


def _stopper(at):
    def hook(trainer, step, logs):
        if step == at:
            trainer.request_stop()
    return hook


@pytest.mark.parametrize("stop_at", [2, 4])  # inside stage I, inside stage II (fit cache)
def test_resume_is_bitwise_identical(tiny_data, tmp_path, stop_at):
    cfg = tiny_config(tiny_data, stage1_steps=3, stage2_steps=2, disc_start=1)
    full = train(cfg, tmp_path / "full")
    assert full.finished

    part = train(cfg, tmp_path / "part", hooks=[_stopper(stop_at)])
    assert not part.finished and part.step == stop_at
    assert not (tmp_path / "part" / "model.safetensors").exists()
    state = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.safetensors")
    assert state.training_state["step"] == stop_at
    assert "opt_d" in state.training_state and "rng" in state.training_state

    resumed = train(cfg, tmp_path / "part", resume=True)
    assert resumed.finished and resumed.step == 5
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_refuses_a_different_plan(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, stage1_steps=2, stage2_steps=1)
    train(cfg, tmp_path / "run", hooks=[_stopper(1)])
    with pytest.raises(ValueError, match="phases"):
        train(replace(cfg, stage1_steps=5), tmp_path / "run", resume=True)
    with pytest.raises(FileNotFoundError):
        train(cfg, tmp_path / "nothing", resume=True)
