"""python -m training.light: the light estimator's targets, training run and checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lcvg_env.models import LayeredGenerator, ModelConfig
from lcvg_env.models.light import plane_coordinates
from training import light
from training.config import TrainConfig


def _composite(folder) -> str:
    """A tiny composite checkpoint (32x32, random weights) with no light estimator."""
    torch.manual_seed(0)
    model = LayeredGenerator(ModelConfig.tiny().replace(prediction="composite"))
    return str(model.save(folder / "composite.safetensors"))


def test_light_slopes_recover_a_log_linear_field():
    coords = plane_coordinates(16, 16)[0].numpy()
    field = 1.3 * np.exp(0.15 * coords[0] - 0.05 * coords[1])
    assert np.allclose(light.light_slopes(field), [0.15, -0.05], atol=1e-5)


def test_rendered_canvases_hide_the_objects_and_give_classic_scenes_flat_light():
    canvas, known, slopes, styles = light.rendered_canvases(6, ("varied", "classic"), 3, 32)
    assert canvas.shape == (6, 3, 32, 32) and known.shape == (6, 1, 32, 32)
    assert styles.tolist() == ["varied", "classic"] * 3
    assert torch.equal(slopes[styles == "classic"], torch.zeros(3, 2))
    assert bool((slopes[styles == "varied"].abs().sum(1) > 0).all())
    assert float(known.mean()) < 1.0  # the objects are unknown


def test_training_run_writes_a_shaded_copy_of_the_checkpoint(tmp_path, capsys):
    init_path = _composite(tmp_path)
    out = tmp_path / "shaded.safetensors"
    assert light.main(["--init", init_path, "--out", str(out), "--scenes", "16",
                       "--test-scenes", "4", "--steps", "3", "--batch", "4"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "render" in captured.err and "train" in captured.err  # progress bars, on stderr
    assert set(report["held_out"]) == {"classic", "varied"}
    shaded = LayeredGenerator.from_checkpoint(out, device="cpu")
    init = LayeredGenerator.from_checkpoint(init_path, device="cpu")
    assert shaded.config == init.config.replace(shading=True)
    own = {k: v for k, v in shaded.state_dict().items() if not k.startswith("light.")}
    assert own.keys() == init.state_dict().keys()
    assert all(torch.equal(v, init.state_dict()[k]) for k, v in own.items())
    # the estimator of one checkpoint can be given to another without training
    again = tmp_path / "again.safetensors"
    assert light.main(["--init", init_path, "--out", str(again), "--estimator-from", str(out),
                       "--steps", "0", "--test-scenes", "2", "--progress", "false"]) == 0
    assert capsys.readouterr().err == ""
    reloaded = LayeredGenerator.from_checkpoint(again, device="cpu")
    assert reloaded.light is not None and shaded.light is not None
    assert all(torch.equal(a, b) for a, b in zip(reloaded.light.state_dict().values(),
                                                 shaded.light.state_dict().values()))


def test_bad_inputs_are_named(tmp_path):
    frame_model = LayeredGenerator(ModelConfig.tiny()).save(tmp_path / "frame.safetensors")
    with pytest.raises(SystemExit):
        light.main(["--init", str(frame_model), "--out", str(tmp_path / "x.safetensors")])
    composite = _composite(tmp_path)
    with pytest.raises(SystemExit):  # that checkpoint holds no estimator to take
        light.main(["--init", composite, "--out", str(tmp_path / "y.safetensors"),
                    "--estimator-from", composite, "--test-scenes", "2"])
    with pytest.raises(ValueError, match="styles"):
        light.LightConfig(styles=("sepia",))
    # the trainer keeps an estimator, it does not make one
    shaded = ModelConfig.tiny().replace(prediction="composite", shading=True)
    with pytest.raises(ValueError, match="training.light"):
        TrainConfig(model=shaded)
