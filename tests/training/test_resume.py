import re
from dataclasses import replace

import pytest
import torch

from lcvg_env.checkpoint import CheckpointError, load_checkpoint, read_checkpoint_header
from training.loop import config_from_run, train
from training.run_dir import ResumeWarning, load_resumable, resumable_checkpoints

from .conftest import tiny_config


def _weights(run):
    ckpt = load_checkpoint(run / "model.safetensors")
    return ckpt.weights


def _no_tensors(*args, **kwargs):
    raise AssertionError("tensors were read")


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


def test_keeps_the_newest_checkpoints_and_resumes_from_the_last_readable(tiny_data, tmp_path,
                                                                       monkeypatch):
    cfg = tiny_config(tiny_data, stage1_steps=3, stage2_steps=2, checkpoint_every=1,
                      keep_checkpoints=2)
    full = train(cfg, tmp_path / "full")
    run = tmp_path / "part"
    train(cfg, run, hooks=[_stopper(4)])  # saved at steps 1, 2, 3 (end of stage I) and 4
    folder = run / "checkpoints"
    assert sorted(p.name for p in folder.glob("last*.safetensors")) == [
        "last-1.safetensors", "last.safetensors"]
    assert [load_checkpoint(p).training_state["step"] for p in resumable_checkpoints(run)] == [
        4, 3]
    assert not list(folder.glob(".*"))  # no staging or temporary file left behind

    newest = folder / "last.safetensors"
    whole = newest.read_bytes()
    newest.write_bytes(whole[:-10])  # cut short in its tensors: the header alone tells
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        read_checkpoint_header(newest)
    newest.write_bytes(whole)
    with monkeypatch.context() as patch:  # the config comes from the header: no tensor is read
        patch.setattr("lcvg_env.checkpoint.load_file", _no_tensors)
        assert config_from_run(run) == cfg
    newest.write_bytes(whole[:100])  # a checkpoint cut short
    expected = rf"{re.escape(str(newest))}.*CheckpointError.*last-1\.safetensors \(step 3\)"
    with pytest.warns(ResumeWarning, match=expected):
        assert config_from_run(run) == cfg
    first = []
    with pytest.warns(ResumeWarning, match=expected):
        resumed = train(cfg, run, resume=True, hooks=[lambda t, step, logs: first.append(step)])
    assert first[0] == 4 and resumed.finished and resumed.step == 5  # went on from step 3
    a, b = _weights(tmp_path / "full"), _weights(run)
    assert full.finished and all(torch.equal(a[key], b[key]) for key in a)
    # saved again at steps 4 and 5: the damaged file has gone
    assert [load_checkpoint(p).training_state["step"] for p in resumable_checkpoints(run)] == [
        5, 4]


def test_resume_falls_back_from_a_missing_newest_and_refuses_when_none_is_readable(
        tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, stage1_steps=3, stage2_steps=0, checkpoint_every=1,
                      keep_checkpoints=3)
    run = tmp_path / "run"
    train(cfg, run, hooks=[_stopper(3)])  # saved at steps 1, 2 and 3 (on stop)
    assert [p.name for p in resumable_checkpoints(run)] == [
        "last.safetensors", "last-1.safetensors", "last-2.safetensors"]
    (run / "checkpoints" / "last.safetensors").unlink()  # as a crash between two renames
    with pytest.warns(ResumeWarning, match=r"last\.safetensors \(FileNotFoundError"):
        ckpt, path = load_resumable(run)
    assert path.name == "last-1.safetensors" and ckpt.training_state["step"] == 2
    for path in resumable_checkpoints(run)[1:]:
        path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"last-1\.safetensors.*last-2\.safetensors"):
        train(cfg, run, resume=True)
    # fewer kept: the next save deletes those past keep_checkpoints
    train(replace(cfg, keep_checkpoints=1), run, hooks=[_stopper(1)])
    assert [p.name for p in resumable_checkpoints(run)] == ["last.safetensors"]
