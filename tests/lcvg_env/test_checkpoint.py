import os
import random
import stat

import numpy as np
import pytest
import torch
from torch import nn

from lcvg_env.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    load_weights_strict,
    save_checkpoint,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1))


def test_round_trip_weights_config_and_training_state(tmp_path):
    model = _model()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.9))
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    optimiser.step()
    state = {
        "step": 7,
        "optimiser": optimiser.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.default_rng(3).bit_generator.state,
        "legacy_numpy_rng": np.random.RandomState(5).get_state(),
        "python_rng": random.Random(4).getstate(),
        "ratio": 2.5,
    }
    path = save_checkpoint(
        tmp_path / "sub" / "ckpt.safetensors",
        model.state_dict(),
        {"model": {"resolution": [8, 8]}},
        training_state=state,
        metadata={"command": "test"},
    )
    loaded = load_checkpoint(path)
    assert loaded.config == {"model": {"resolution": [8, 8]}}
    assert loaded.metadata == {"command": "test"}
    restored = _model()
    for p in restored.parameters():
        nn.init.zeros_(p)
    load_weights_strict(restored, loaded.weights)
    for a, b in zip(model.state_dict().values(), restored.state_dict().values()):
        assert torch.equal(a, b)

    ts = loaded.training_state
    assert ts["step"] == 7 and ts["ratio"] == 2.5
    assert torch.equal(ts["torch_rng"], state["torch_rng"])
    assert ts["numpy_rng"] == state["numpy_rng"]
    legacy = ts["legacy_numpy_rng"]
    assert legacy[0] == "MT19937" and np.array_equal(legacy[1], state["legacy_numpy_rng"][1])
    rng = random.Random()
    rng.setstate(ts["python_rng"])
    assert rng.random() == random.Random(4).random()
    # The optimiser state comes back usable and equal: int parameter ids, tuple betas.
    fresh = torch.optim.Adam(restored.parameters(), lr=1e-3)
    fresh.load_state_dict(ts["optimiser"])
    assert fresh.param_groups[0]["betas"] == (0.5, 0.9)
    restored_state = fresh.state_dict()["state"][0]
    for key, value in optimiser.state_dict()["state"][0].items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(restored_state[key]))


def test_strict_loading_names_every_mismatch(tmp_path):
    weights = _model().state_dict()
    weights["extra.weight"] = torch.zeros(1)
    del weights["0.bias"]
    weights["2.weight"] = torch.zeros(5, 4, 1, 1)
    with pytest.raises(CheckpointError) as info:
        load_weights_strict(_model(), weights)
    message = str(info.value)
    assert "0.bias" in message and "extra.weight" in message
    assert "2.weight" in message and "(5, 4, 1, 1)" in message


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    path = save_checkpoint(tmp_path / "a.safetensors", _model().state_dict(), {})
    data = path.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(truncated)

    garbage = tmp_path / "model.ckpt"
    garbage.write_bytes(b"PK\x03\x04 this is a pickle zip, not safetensors")
    with pytest.raises(CheckpointError, match="model.ckpt"):
        load_checkpoint(garbage)

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not an lcvg checkpoint"):
        load_checkpoint(foreign)

    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_checkpoint(tmp_path / "nowhere.safetensors")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "c.safetensors", _model().state_dict(), {"v": 1})
    with pytest.raises(TypeError):
        save_checkpoint(path, _model().state_dict(), {"v": 2}, training_state={"bad": object()})
    assert load_checkpoint(path).config == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]


def test_a_checkpoint_gets_the_permissions_of_any_new_file(tmp_path):
    previous = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "c.safetensors", _model().state_dict(), {"v": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by others, as open() makes it


def test_find_checkpoint_search_order(tmp_path, monkeypatch):
    env_dir, cache = tmp_path / "env", tmp_path / "cache"
    monkeypatch.setenv("LCVG_CHECKPOINT_DIR", str(env_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    with pytest.raises(FileNotFoundError) as info:
        find_checkpoint("bair.safetensors")
    assert str(env_dir) in str(info.value) and str(cache / "lcvg") in str(info.value)
    save_checkpoint(cache / "lcvg" / "bair.safetensors", {}, {})
    assert find_checkpoint("bair.safetensors") == cache / "lcvg" / "bair.safetensors"
    save_checkpoint(env_dir / "bair.safetensors", {}, {})
    assert find_checkpoint("bair.safetensors") == env_dir / "bair.safetensors"


def test_a_name_without_suffix_finds_its_safetensors_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LCVG_CHECKPOINT_DIR", str(tmp_path))
    assert find_checkpoint("sprites_small").name == "sprites_small.safetensors"  # bundled
    save_checkpoint(tmp_path / "mine.safetensors", {}, {})
    assert find_checkpoint("mine") == tmp_path / "mine.safetensors"
    (tmp_path / "mine").write_bytes(b"")  # the name as given comes first
    assert find_checkpoint("mine") == tmp_path / "mine"
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        find_checkpoint("nothing")
    with pytest.raises(FileNotFoundError) as info:
        find_checkpoint("nothing.pt")  # a suffix given is kept
    assert "nothing.pt.safetensors" not in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_naming_tensor_and_file(tmp_path, bad):
    weights = _model().state_dict()
    weights["2.weight"] = weights["2.weight"].clone()
    weights["2.weight"].view(-1)[3] = bad
    path = save_checkpoint(tmp_path / "diverged.safetensors", weights, {})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "2.weight" in message and "0.weight" not in message
    kind = "1 NaN, 0 inf" if bad != bad else "0 NaN, 1 inf"
    assert f"({kind} of 8 values)" in message
    loaded = load_checkpoint(path, check_finite=False)  # to inspect a diverged run
    assert not bool(torch.isfinite(loaded.weights["2.weight"]).all())


def test_environment_refuses_a_checkpoint_with_nan_weights(tmp_path):
    from lcvg_env.env import LCVGEnv
    from lcvg_env.models import LayeredGenerator, ModelConfig

    model = LayeredGenerator(ModelConfig.tiny())
    with torch.no_grad():
        model.decoder.conv_out.weight.fill_(float("nan"))
    path = model.save(tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match=r"nan\.safetensors.*decoder\.conv_out\.weight "
                                              r"\(\d+ NaN, 0 inf of \d+ values\)"):
        LCVGEnv(checkpoint=str(path), device="cpu")


@pytest.mark.parametrize("header", ["[1, 2]", '{"format_version": 1, "config": [1]}',
                                    '{"format_version": 1, "training_state": {"__tensor__": "x"}}'])
def test_malformed_headers_are_checkpoint_errors(tmp_path, header):
    from safetensors.torch import save_file

    path = tmp_path / "odd.safetensors"
    save_file({"model/w": torch.zeros(2)}, str(path), metadata={"lcvg": header})
    with pytest.raises(CheckpointError, match="odd.safetensors"):
        load_checkpoint(path)
