"""python -m training.graft: a checkpoint with another checkpoint's mask network."""

from __future__ import annotations

import json

import pytest
import torch

from lcvg_env.checkpoint import load_checkpoint
from lcvg_env.models import LayeredGenerator, ModelConfig
from training import graft


def _saved(path, config: ModelConfig, seed: int) -> LayeredGenerator:
    torch.manual_seed(seed)
    model = LayeredGenerator(config)
    model.save(path, extra_config={"training": {"seed": seed}})
    return model


def test_graft_takes_the_mask_network_and_keeps_everything_else(tmp_path, capsys):
    kept = _saved(tmp_path / "kept.safetensors",
                  ModelConfig.tiny().replace(prediction="composite"), 0)
    # a frame-prediction run (stage I) with the same mask network layout
    source = _saved(tmp_path / "source.safetensors", ModelConfig.tiny(), 1)
    out = tmp_path / "out" / "grafted.safetensors"
    assert graft.main(["--init", str(tmp_path / "kept.safetensors"),
                       "--mask-from", str(tmp_path / "source.safetensors"),
                       "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    grafted = LayeredGenerator.from_checkpoint(out, device="cpu")
    assert grafted.config == kept.config
    kept_state, source_state = kept.state_dict(), source.state_dict()
    differing = 0
    for name, value in grafted.state_dict().items():
        if name.startswith("mask_net."):
            assert torch.equal(value, source_state[name]), name
            differing += int(not torch.equal(kept_state[name], source_state[name]))
        else:
            assert torch.equal(value, kept_state[name]), name
    assert report["tensors_changed"] == differing > 0
    stored = load_checkpoint(out).config
    assert stored["training"] == {"seed": 0}  # the kept model's record stays
    assert stored["mask_net_from"] == {"checkpoint": str(tmp_path / "source.safetensors"),
                                       "training": {"seed": 1}}
    frames = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.equal(grafted.mask(frames), source.eval().mask(frames))


def test_bad_inputs_are_named(tmp_path, capsys):
    _saved(tmp_path / "kept.safetensors", ModelConfig.tiny(), 0)
    _saved(tmp_path / "wide.safetensors", ModelConfig.tiny().replace(mask_ngf=16), 1)
    with pytest.raises(SystemExit):
        graft.main(["--init", str(tmp_path / "kept.safetensors"),
                    "--mask-from", str(tmp_path / "wide.safetensors"),
                    "--out", str(tmp_path / "x.safetensors")])
    assert "mask_ngf" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        graft.main(["--init", str(tmp_path / "kept.safetensors"),
                    "--mask-from", str(tmp_path / "missing.safetensors"),
                    "--out", str(tmp_path / "y.safetensors")])
    assert "missing.safetensors" in capsys.readouterr().err
    with pytest.raises(ValueError, match="mask_from"):
        graft.GraftConfig(mask_from="")
    assert not (tmp_path / "x.safetensors").exists()
