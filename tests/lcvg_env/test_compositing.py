"""The composite prediction path: moved pixels, the background canvas, the simulator step."""

from __future__ import annotations

import torch

from lcvg_env import compositing
from lcvg_env import control as ctl
from lcvg_env import tracking as track
from lcvg_env.models import LayeredGenerator
from lcvg_env.simulator import Simulator
from tests.lcvg_env.conftest import TINY, shift_theta, tiny_frames


def _textured_object(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat background with a textured (every pixel different), hard-edged cross, its mask.

    The cross's darkest texture value lies inside it, so no rim pixel is further towards the
    background than its inside (``compositing.matte`` gives every pixel coverage 1).
    """
    torch.manual_seed(0)
    frame = torch.full((1, 3, size, size), -0.4)
    mask = torch.zeros(1, 1, size, size)
    mask[..., 10:20, 13:16] = 1
    mask[..., 13:16, 8:22] = 1
    texture = torch.rand(1, 3, size, size) * 0.5 + 0.4
    texture[..., 14, 14] = 0.4  # the darkest colour, inside
    return torch.where(mask > 0, texture, frame), mask


def test_whole_pixel_translation_keeps_the_objects_pixels_exactly():
    frame, mask = _textured_object()
    theta = shift_theta(3, -2, 32)
    moved = ctl.warp_nearest(mask, theta[:, 0])
    comp = compositing.compose(compositing.matte(frame, mask), theta, moved,
                               compositing.fill_canvas(frame, 1 - mask), 1 - mask, 2, mask)
    shifted = torch.roll(frame * mask, shifts=(-2, 3), dims=(2, 3))
    inside = moved[0, 0] > 0
    assert int(inside.sum()) == int(mask.sum())
    assert torch.allclose(comp.image[0][:, inside], shifted[0][:, inside], atol=1e-5)
    # the place the object left is a hole (nothing known there), filled from the background
    # around it and inside the band
    left = (mask[0, 0] > 0) & ~inside
    assert torch.allclose(comp.image[0][:, left], torch.tensor(-0.4), atol=1e-5)
    assert bool((comp.band[0, 0][left] == 1).all())
    # G corrects around the object, never the pixels it brought
    assert bool((comp.band[0, 0][inside] == 0).all())
    ring = (compositing.dilate(moved, 2)[0, 0] > 0) & ~inside
    assert bool((comp.band[0, 0][ring] == 1).all())
    bright = lambda image, edited: torch.ones_like(image)  # noqa: E731 - a G that adds 1
    step, _ = compositing.predict(bright, compositing.matte(frame, mask), theta, moved, mask,
                                  compositing.fill_canvas(frame, 1 - mask), 1 - mask, 2, mask)
    assert torch.equal(step[0][:, inside], comp.image[0][:, inside])


def _antialiased_disc(size: int = 32, cx: float = 8.3, cy: float = 15.6
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A red disc centred at (cx, cy) drawn with exact pixel coverage over a background dark on
    the left half and light on the right; returns the frame, the disc's mask (coverage > 0.5)
    and its coverage."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    fine = 8  # coverage by supersampling
    offs = (torch.arange(fine) + 0.5) / fine - 0.5
    sub_y = ys[..., None, None] + offs[:, None]
    sub_x = xs[..., None, None] + offs[None, :]
    coverage = (((sub_x - cx) ** 2 + (sub_y - cy) ** 2) < 4.4**2).float().mean((-2, -1))
    background = torch.where(xs < size / 2, -0.8, 0.6).expand(3, size, size)
    red = torch.tensor([0.9, -0.7, -0.7]).view(3, 1, 1)
    frame = coverage * red + (1 - coverage) * background
    return frame[None], (coverage > 0.5).float()[None, None], coverage


def test_an_antialiased_rim_blends_with_the_background_it_lands_on():
    frame, mask, coverage = _antialiased_disc()
    theta = shift_theta(14, 0, 32)  # from the dark half onto the light half
    moved = ctl.warp_nearest(mask, theta[:, 0])
    comp = compositing.compose(compositing.matte(frame, mask), theta, moved,
                               compositing.fill_canvas(frame, 1 - mask), 1 - mask, 2, mask)
    truth = torch.roll(coverage, shifts=14, dims=1)
    light, red = torch.tensor([0.6, 0.6, 0.6]), torch.tensor([0.9, -0.7, -0.7])
    want = truth * red.view(3, 1, 1) + (1 - truth) * light.view(3, 1, 1)
    rim = (truth > 0.05) & (truth < 0.95)
    error = (comp.image[0] - want).abs().mean(0)
    # the rim was drawn over dark background and now lies on light: matted, it carries only
    # the disc's share of each pixel (hard compositing left mean errors of about 0.3 here)
    assert float(error[rim].mean()) < 0.1
    inside = truth == 1  # the disc's own pixels, moved whole pixels: exact
    assert float(error[inside].max()) < 1e-5


def _outlined_disc(size: int = 32, outlined: bool = True, shade: float = 0.7
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A yellow disc with a dark 2-px border (or none) on a striped background, a shadow to its
    right (the background's intensity times ``shade``); returns the frame, the whole disc's
    mask and the border's."""
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(),
                            indexing="ij")
    radius = ((xs - 15) ** 2 + (ys - 15) ** 2).sqrt()
    disc, fill = (radius <= 7).float(), (radius <= 5).float()
    stripes = 0.1 + 0.15 * torch.sign(torch.sin(xs + ys))  # +-19 grey levels
    frame = stripes.expand(3, size, size).clone()
    shadow = (((xs - 18) ** 2 + (ys - 15) ** 2).sqrt() <= 7) & (disc == 0)
    frame[:, shadow] = (frame[:, shadow] + 1.0) * shade - 1.0  # darkened in intensity
    if outlined:
        frame = torch.where(disc > 0, torch.tensor([-0.85, -0.85, -0.8]).view(3, 1, 1), frame)
    else:
        fill = disc
    frame = torch.where(fill > 0, torch.tensor([0.9, 0.7, -0.6]).view(3, 1, 1), frame)
    return frame[None], disc[None, None], (disc - fill)[None, None]


def test_an_object_takes_the_border_its_mask_left_out_and_carries_it_whole():
    frame, disc, border = _outlined_disc()
    mask = disc - border  # M's mask left the whole border out
    objects = compositing.take_borders(frame, mask, mask)
    assert bool((objects <= disc).all())  # not the stripes or the shadow beside it
    # all of it, beside the shadow too (there dark on darkened is as well a blend, but the
    # border rings the disc)
    assert torch.equal(objects * border, border)
    layers = compositing.matte(frame, objects)
    assert bool((layers.alpha[0, 0, 0][(border * objects)[0, 0] > 0] == 1).all())  # all object
    # what the matte's own-colour test adds: without it the dark border read as background
    plain = compositing.MATTE_OWN_COLOUR
    try:
        compositing.MATTE_OWN_COLOUR = float("inf")
        alpha = compositing.matte(frame, objects).alpha[0, 0, 0]
    finally:
        compositing.MATTE_OWN_COLOUR = plain
    assert float(alpha[border[0, 0] > 0].mean()) < 0.5


def test_a_shadow_on_one_side_is_not_taken_for_a_border(monkeypatch):
    # within reach of the disc's edge, the shadow is no blend of the disc with the background
    # as it is (a dark border's rim beside a shadow is not either), but it lies on one side
    frame, disc, _ = _outlined_disc(outlined=False)
    assert torch.equal(compositing.take_borders(frame, disc, disc), disc)
    # what the ring test decides here: taken for a border, the shadow would be grown over
    monkeypatch.setattr(compositing.ctl, "rings", lambda objects, marked, looked: torch.ones(
        objects.shape[:2], dtype=torch.bool))
    assert bool((compositing.take_borders(frame, disc, disc) > disc).any())


def test_objects_take_no_border_off_a_plain_antialiased_edge_and_share_none():
    frame, mask, _ = _antialiased_disc()
    assert torch.equal(compositing.take_borders(frame, mask, mask), mask)
    # two objects side by side, both short of the dark pixels between them: neither takes them
    frame, disc, border = _outlined_disc()
    left = disc.clone()
    left[..., 16:] = 0
    right = disc - left
    objects = torch.cat([left, right], dim=1) * (1 - border)
    grown = compositing.take_borders(frame, objects.amax(1, keepdim=True), objects)
    assert bool((grown >= objects).all())
    assert float((grown.sum(1) > 1).sum()) == 0


def test_a_sub_pixel_move_keeps_the_rim_sharp(monkeypatch):
    frame, mask, _ = _antialiased_disc()
    light, red = torch.tensor([0.6, 0.6, 0.6]).view(3, 1, 1), torch.tensor([0.9, -0.7, -0.7])
    errors = {}
    for dx, dy in ((13.5, 0.5), (12.5, -1.5), (14.25, 0.75)):  # onto the light half
        _, _, truth = _antialiased_disc(cx=8.3 + dx, cy=15.6 + dy)
        want = truth * red.view(3, 1, 1) + (1 - truth) * light
        rim = (truth > 0.05) & (truth < 0.95)
        theta = shift_theta(dx, dy, 32)
        moved = ctl.warp_nearest(mask, theta[:, 0])
        for resharpen in (0.0, compositing.EDGE_RESHARPEN):
            monkeypatch.setattr(compositing, "EDGE_RESHARPEN", resharpen)
            comp = compositing.compose(compositing.matte(frame, mask), theta, moved,
                                       compositing.fill_canvas(frame, 1 - mask), 1 - mask, 2, mask)
            error = float((comp.image[0] - want).abs().mean(0)[rim].mean())
            errors.setdefault(resharpen, []).append(error)
    plain, steepened = (sum(v) / len(v) for v in errors.values())
    assert steepened < 0.85 * plain, errors  # interpolation alone smears the edge


def test_canvas_keeps_the_first_frame_where_no_object_has_been():
    torch.manual_seed(0)
    model = LayeredGenerator(TINY.replace(prediction="composite", band_px=3)).eval()
    with torch.no_grad():  # a generator with a correction everywhere
        model.decoder.conv_out.bias.fill_(0.3)
    sim = Simulator(model, num_envs=2, control="position", tracking="carry")
    first = tiny_frames(2, 48)
    sim.reset([0, 1], first)
    start = sim.frames.clone()
    known, canvas = sim.known.clone(), sim.canvas.clone()
    kept = known.expand_as(start) > 0  # the first frame where known, a fill elsewhere
    assert torch.equal(canvas[kept], start[kept]) and not bool(kept.all())
    visited = sim.objects.amax(dim=1, keepdim=True).clone()
    for _ in range(4):
        sim.step(torch.full((2, 1, 2), 2 / 48))  # 1 px right, 1 px down
        visited = torch.maximum(visited, sim.objects.amax(dim=1, keepdim=True))
        # the canvas is the real first frame for the whole episode, even inside the band:
        # G's correction is made afresh from it each step, never piled on its own output
        assert torch.equal(sim.canvas, canvas) and torch.equal(sim.known, known)
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


def _background_with_hole(pattern: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 3, 40, 40) background tinted by the (40, 40) ``pattern`` and a 12x12 hole."""
    tint = torch.tensor([0.5, 0.2, -0.3]).view(1, 3, 1, 1)
    image = tint * pattern + torch.tensor([0.1, -0.2, 0.3]).view(1, 3, 1, 1)
    known = torch.ones(1, 1, 40, 40)
    known[..., 14:26, 15:27] = 0
    return image, known


def test_a_repeating_background_is_continued_by_its_period():
    y, x = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    stripes = torch.tanh(3 * torch.sin(2 * torch.pi * (x + y) / 8))  # diagonal, period 8 on x+y
    tiles = torch.tanh(3 * torch.sin(2 * torch.pi * x / 10)) * torch.tanh(
        3 * torch.sin(2 * torch.pi * y / 10))
    for pattern in (stripes, tiles):
        image, known = _background_with_hole(pattern)
        hole = known.expand_as(image) == 0
        filled = compositing.fill_canvas(image * known, known)  # nothing of the hole is seen
        assert torch.equal(filled[~hole], image[~hole])
        assert float((filled - image)[hole].abs().max()) < 1e-4  # its own period, exactly
        pushed = compositing.fill_holes(image * known, known)
        assert float((pushed - image)[hole].abs().mean()) > 0.1  # a blur of the pattern
    # nothing unknown: the canvas as it is
    assert torch.equal(compositing.fill_canvas(image, torch.ones_like(known)), image)
    # sensor noise (5 grey levels) does not hide a faint period (stripes 12 levels high)
    torch.manual_seed(0)
    image, known = _background_with_hole(0.25 * stripes)
    noisy = image + 0.04 * torch.randn_like(image)
    hole = known.expand_as(image) == 0
    filled = compositing.fill_canvas(noisy, known)
    pushed = compositing.fill_holes(noisy, known)
    assert float((filled - image)[hole].abs().mean()) < 0.5 * float(
        (pushed - image)[hole].abs().mean())


def test_a_background_with_no_period_is_filled_by_push_pull():
    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 40), torch.linspace(-1, 1, 40), indexing="ij")
    # a round glow (no shift matches it: a linear gradient would, along its isolines), and
    # the same with grain
    glow = 0.7 * torch.exp(-((x - 0.2) ** 2 + (y + 0.1) ** 2) / 0.6)
    for pattern in (glow, glow + 0.2 * torch.randn(40, 40)):
        image, known = _background_with_hole(pattern)
        assert torch.equal(compositing.fill_canvas(image, known),
                           compositing.fill_holes(image, known))
    # in a batch, each canvas is filled as it would be alone
    stripes, _ = _background_with_hole(torch.tanh(3 * torch.sin(torch.pi * (x + y) * 5)))
    batch = torch.cat([stripes, image]), torch.cat([known, known])
    alone = torch.cat([compositing.fill_canvas(stripes, known),
                       compositing.fill_canvas(image, known)])
    assert torch.allclose(compositing.fill_canvas(*batch), alone, atol=1e-6)
    assert not torch.allclose(alone[0], compositing.fill_holes(stripes, known)[0])


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
