"""The composite prediction path: moved pixels, the background canvas, the simulator step."""

from __future__ import annotations

import torch

from lcvg_env import compositing
from lcvg_env import control as ctl
from lcvg_env import tracking as track
from lcvg_env.models import LayeredGenerator
from lcvg_env.simulator import Simulator
from tests.lcvg_env.conftest import TINY, tiny_frames


def _shift(dx_px: float, dy_px: float, size: int, batch: int = 1) -> torch.Tensor:
    """(batch, 1, 2, 3) input_from_output matrices of a forward translation in pixels."""
    params = torch.tensor([[2 * dx_px / size, 2 * dy_px / size]]).repeat(batch, 1)
    return ctl.params_to_matrix(params, size=(size, size)).view(batch, 1, 2, 3)


def _textured_object(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A frame with a textured (every pixel different) cross-shaped object, and its mask."""
    torch.manual_seed(0)
    frame = torch.rand(1, 3, size, size) * 0.2 - 0.5  # dim background
    mask = torch.zeros(1, 1, size, size)
    mask[..., 10:20, 13:16] = 1
    mask[..., 13:16, 8:22] = 1
    texture = torch.rand(1, 3, size, size) * 0.5 + 0.4
    return torch.where(mask > 0, texture, frame), mask


def test_whole_pixel_translation_keeps_the_objects_pixels_exactly():
    frame, mask = _textured_object()
    theta = _shift(3, -2, 32)
    moved = ctl.warp_nearest(mask, theta[:, 0])
    comp = compositing.compose(frame, mask, theta, moved, frame, 1 - mask, band_px=2)
    shifted = torch.roll(frame * mask, shifts=(-2, 3), dims=(2, 3))
    inside = moved[0, 0] > 0
    assert int(inside.sum()) == int(mask.sum())
    assert torch.allclose(comp.image[0][:, inside], shifted[0][:, inside], atol=1e-5)
    # the place the object left is a hole (nothing known there), filled from the background
    # around it (values in the background's range [-0.5, -0.3]) and inside the band
    left = (mask[0, 0] > 0) & ~inside
    filled = comp.image[0][:, left]
    assert bool((filled >= -0.5 - 1e-6).all()) and bool((filled <= -0.3 + 1e-6).all())
    assert bool((comp.band[0, 0][left] == 1).all())


def test_canvas_keeps_the_first_frame_where_no_object_has_been():
    torch.manual_seed(0)
    model = LayeredGenerator(TINY.replace(prediction="composite", band_px=3)).eval()
    with torch.no_grad():  # a generator with a correction everywhere
        model.decoder.conv_out.bias.fill_(0.3)
    sim = Simulator(model, num_envs=2, control="position", tracking="carry")
    first = tiny_frames(2, 48)
    sim.reset([0, 1], first)
    start = sim.frames.clone()
    known = sim.known.clone()
    visited = sim.objects.amax(dim=1, keepdim=True).clone()
    for _ in range(4):
        sim.step(torch.full((2, 1, 2), 2 / 48))  # 1 px right, 1 px down
        visited = torch.maximum(visited, sim.objects.amax(dim=1, keepdim=True))
        # the canvas is the real first frame for the whole episode, even inside the band:
        # G's correction is made afresh from it each step, never piled on its own output
        assert torch.equal(sim.canvas, start) and torch.equal(sim.known, known)
    # the band (3 px) reaches around the objects and around the start's unknown margin
    near = compositing.dilate(visited, 3 + track.START_MARGIN_PX)[:, 0] > 0
    far = ~near
    assert bool(far.any()) and bool(near.any())
    # far from every place an object has been, the frame is the first frame exactly
    assert torch.equal(sim.frames.permute(0, 2, 3, 1)[far], start.permute(0, 2, 3, 1)[far])
    assert torch.equal(sim.canvas.permute(0, 2, 3, 1)[far], start.permute(0, 2, 3, 1)[far])
    # near them, G's correction shows (the bias adds 0.3 where the band passed)
    assert not torch.equal(sim.frames.permute(0, 2, 3, 1)[near],
                           start.permute(0, 2, 3, 1)[near])


def test_zero_correction_is_copy_paste():
    torch.manual_seed(0)
    model = LayeredGenerator(TINY.replace(prediction="composite")).eval()
    with torch.no_grad():
        model.decoder.conv_out.weight.zero_()
        model.decoder.conv_out.bias.zero_()
    sim = Simulator(model, num_envs=1, control="position", tracking="carry")
    frame = tiny_frames(1, 48)
    sim.reset([0], frame)
    obj = sim.objects[0, 0] > 0
    assert int(obj.sum()) > 0
    pixels = sim.frames[0][:, obj].clone()
    towards_centre = -torch.sign(sim.centroids[0, 0]) * 4 / 48  # 2 px per axis and step
    for _ in range(3):
        sim.step(towards_centre.view(1, 1, 2))
    moved = sim.objects[0, 0] > 0
    assert int(moved.sum()) == int(obj.sum())
    assert torch.allclose(sim.frames[0][:, moved], pixels, atol=1e-5)


def test_mask_control_refuses_a_composite_model():
    model = LayeredGenerator(TINY.replace(prediction="composite"))
    try:
        Simulator(model, num_envs=1, control="mask")
    except ValueError as error:
        assert "prediction" in str(error)
    else:
        raise AssertionError("mask control of a composite model was accepted")
