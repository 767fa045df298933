"""Relighting moved objects: the light estimator, the shading gain, the simulator's use of it."""

from __future__ import annotations

import math

import pytest
import torch

from lcvg_env import compositing
from lcvg_env import control as ctl
from lcvg_env.models import LayeredGenerator
from lcvg_env.models.light import LightEstimator, light_field, plane_coordinates
from lcvg_env.simulator import Simulator
from lcvg_env.world.twin import SpritesRealEnv
from tests.lcvg_env.conftest import ASSETS, BUNDLED, TINY, shift_theta, tiny_frames


def test_light_field_is_log_linear_in_pixel_centre_coordinates():
    coords = plane_coordinates(4, 8)
    assert coords.shape == (1, 2, 4, 8)
    assert torch.allclose(coords[0, 0, 0], (torch.arange(8) + 0.5) / 4 - 1)  # x, right
    assert torch.allclose(coords[0, 1, :, 0], (torch.arange(4) + 0.5) / 2 - 1)  # y, down
    field = light_field(torch.tensor([[0.2, -0.1]]), 4, 8)
    assert torch.allclose(field[0, 0], torch.exp(0.2 * coords[0, 0] - 0.1 * coords[0, 1]))


def test_shading_gain_is_the_light_ratio_between_where_pixels_land_and_were_taken():
    size = 32
    light = light_field(torch.tensor([[0.3, 0.0], [0.0, 0.0]]), size, size)
    moved = torch.zeros(2, 1, size, size)
    moved[:, :, 10:16, 12:18] = 1
    theta = shift_theta(4, 0, size, batch=2)  # the pixels came from 4 px to the left
    gain = compositing.shading_gain(light, theta, moved)
    # exp(0.3 x) over x in [-1, 1]: 4 px of 32 is 0.25 in x
    assert gain[0, 0].item() == pytest.approx(math.exp(0.3 * 0.25), rel=1e-5)
    assert gain[1, 0].item() == pytest.approx(1.0, abs=1e-6)  # flat light: no change
    empty = compositing.shading_gain(light, theta, torch.zeros_like(moved))
    assert torch.equal(empty, torch.ones(2, 1))


def test_gain_scales_an_objects_intensity_and_nothing_else():
    size = 32
    frame = torch.full((1, 3, size, size), -0.4)
    mask = torch.zeros(1, 1, size, size)
    mask[..., 8:16, 8:16] = 1
    colour = torch.tensor([0.6, -0.2, 0.1]).view(1, 3, 1, 1)
    frame = torch.where(mask > 0, colour, frame)
    theta = shift_theta(6, 0, size)
    moved = ctl.warp_nearest(mask, theta[:, 0])
    layers = compositing.matte(frame, mask)
    canvas = compositing.fill_canvas(frame, 1 - mask)
    plain = compositing.compose(layers, theta, moved, canvas, 1 - mask, 2, mask)
    lit = compositing.compose(layers, theta, moved, canvas, 1 - mask, 2, mask,
                              gain=torch.tensor([[0.9]]))
    inside = moved[0, 0] > 0
    want = (colour.view(3, 1) + 1) * 0.9 - 1
    assert torch.allclose(lit.image[0][:, inside], want.expand(3, int(inside.sum())),
                          atol=1e-5)
    outside = compositing.dilate(moved, compositing.MATTE_PX)[0, 0] == 0
    assert torch.equal(lit.image[0][:, outside], plain.image[0][:, outside])


def _shaded_model(slopes: tuple[float, float]) -> LayeredGenerator:
    """A tiny composite model with no correction whose estimator always returns ``slopes``."""
    torch.manual_seed(0)
    model = LayeredGenerator(TINY.replace(prediction="composite", shading=True)).eval()
    assert isinstance(model.light, LightEstimator)
    with torch.no_grad():
        model.decoder.conv_out.weight.zero_()
        model.decoder.conv_out.bias.zero_()
        model.light.head[-1].weight.zero_()
        model.light.head[-1].bias.copy_(torch.tensor(slopes))
    return model


def test_simulator_relights_a_moved_object_by_the_estimated_light():
    model = _shaded_model((-0.3, 0.0))  # darker to the right
    sim = Simulator(model, num_envs=1, control="position", tracking="carry")
    sim.reset([0], tiny_frames(1, 48))
    assert torch.allclose(sim.light, light_field(torch.tensor([[-0.3, 0.0]]), 48, 48))
    obj = sim.objects[0, 0] > 0
    assert int(obj.sum()) > 0
    pixels = sim.frames[0][:, obj].clone()
    for _ in range(2):
        sim.step(torch.tensor([[[4 / 48, 0.0]]]))  # 2 px right a step
    moved = sim.objects[0, 0] > 0
    assert int(moved.sum()) == int(obj.sum())
    gain = math.exp(-0.3 * 4 * 2 / 48)
    assert torch.allclose(sim.frames[0][:, moved], (pixels + 1) * gain - 1, atol=1e-5)


def test_a_model_without_estimator_lights_evenly_and_checkpoints_keep_the_estimator(tmp_path):
    plain = LayeredGenerator(TINY.replace(prediction="composite"))
    assert plain.light is None
    canvas, known = torch.zeros(2, 3, 48, 48), torch.ones(2, 1, 48, 48)
    assert torch.equal(plain.illumination(canvas, known), torch.ones(2, 1, 48, 48))
    model = _shaded_model((0.1, 0.2))
    path = model.save(tmp_path / "shaded.safetensors")
    loaded = LayeredGenerator.from_checkpoint(path, device="cpu")
    assert loaded.config.shading and loaded.light is not None
    assert "light" in loaded.parameter_counts()
    slopes = loaded.light(canvas, known)
    assert torch.allclose(slopes, torch.tensor([[0.1, 0.2]]).expand(2, 2), atol=1e-6)


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites model not present")
def test_the_bundled_models_relight_what_they_move():
    for name in ("sprites_small.safetensors", "sprites_fast.safetensors"):
        model = LayeredGenerator.from_checkpoint(ASSETS / name, device="cpu")
        assert model.config.prediction == "composite" and model.config.shading
        # the twin's classic backgrounds are evenly lit: they read as (nearly) flat light
        for seed in range(4):
            twin = SpritesRealEnv(style="classic")
            twin.reset(seed=seed)
            canvas = torch.from_numpy(twin.background()).permute(2, 0, 1)[None] / 127.5 - 1.0
            flat = model.illumination(canvas, torch.ones(1, 1, 64, 64))
            assert float((flat.max() - flat.min()) / flat.mean()) < 0.1
