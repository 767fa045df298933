from __future__ import annotations

import math

import pytest
import torch

from lcvg_env import compositing
from lcvg_env import control as ctl
from lcvg_env import tracking as track


def boxes(n: int, corners: list[tuple[int, int, int, int]], size: int = 48) -> torch.Tensor:
    """(n, len(corners), size, size) masks with box k = (x0, y0, x1, y1) in object k."""
    masks = torch.zeros(n, len(corners), size, size)
    for k, (x0, y0, x1, y1) in enumerate(corners):
        masks[:, k, y0:y1, x0:x1] = 1.0
    return masks


def shift(dx_px: float, dy_px: float, size: int = 48) -> torch.Tensor:
    """(1, 2, 3) input_from_output matrix of a forward move by (dx, dy) pixels."""
    theta = ctl.identity_matrix(1)
    theta[0, :, 2] = -2 * torch.tensor([dx_px, dy_px]) / size
    return theta


def test_check_tracking_names_the_bad_mode() -> None:
    assert track.check_tracking("anchored") == "anchored"
    with pytest.raises(ValueError, match="'teleport'.*segment|segment.*'teleport'"):
        track.check_tracking("teleport")


def test_association_follows_objects_when_their_order_by_area_flips() -> None:
    tracked = boxes(1, [(2, 2, 14, 14), (30, 30, 40, 40)])  # big left, small right
    centroids, seen = track.locate(tracked)
    # next components, sorted by area, come in the other order (the right one grew)
    new = boxes(1, [(28, 28, 44, 44), (3, 2, 13, 12)])
    objects, centroids, present = track.associate(new, centroids, seen, gate=0.5)
    assert torch.equal(objects[0, 0], new[0, 1])  # slot 0 keeps following the left object
    assert torch.equal(objects[0, 1], new[0, 0])
    assert bool(present.all())


def test_lost_object_keeps_its_expected_position() -> None:
    centroids, seen = track.locate(boxes(1, [(2, 2, 12, 12)]))
    far = boxes(1, [(36, 36, 46, 46)])  # only a far-away component remains
    expected = centroids + 0.1
    objects, centroids, present = track.associate(far, expected, seen, gate=0.5)
    assert not bool(present[0, 0])
    assert float(objects.sum()) == 0
    assert torch.allclose(centroids, expected)


def test_greedy_assignment_beyond_exact_limit() -> None:
    cost = torch.rand(3, 7, 7)
    order = track.assign(cost)
    assert all(sorted(row.tolist()) == list(range(7)) for row in order)


def test_exact_assignment_finds_the_cheapest_order() -> None:
    torch.manual_seed(0)
    cost = torch.rand(5, 4, 4)
    orders = track.assignment_orders(4)
    assert orders is not None and orders.shape == (24, 4)
    assert track.assignment_orders(1) is None and track.assignment_orders(7) is None
    order = track.assign(cost, orders)
    rows = torch.arange(4)
    for b in range(5):
        best = min(float(cost[b, rows, o].sum()) for o in orders)
        assert float(cost[b, rows, order[b]].sum()) == pytest.approx(best)
    assert torch.equal(track.assign(cost), order)  # orders made on the spot: the same answer


def test_locate_falls_back_for_empty_masks() -> None:
    objects = boxes(1, [(10, 10, 20, 20), (0, 0, 0, 0)])
    fallback = torch.full((1, 2, 2), 0.25)
    centroids, present = track.locate(objects, fallback)
    assert present.tolist() == [[True, False]]
    assert torch.equal(centroids[0, 0], ctl.mask_centroids(objects)[0, 0])
    assert torch.equal(centroids[0, 1], fallback[0, 1])
    assert torch.equal(track.locate(objects)[0][0, 1], torch.zeros(2))


def test_carry_moves_each_template_by_the_sum_of_its_transforms() -> None:
    templates = boxes(2, [(4, 4, 12, 14), (30, 26, 36, 40)])
    poses, layers = track.start_carrying(templates, torch.zeros(2, 3, 48, 48))
    assert layers.premultiplied.shape == (2, 2, 3, 48, 48)
    assert torch.equal(layers.alpha[:, :, 0], templates)  # no contrast: coverage is the mask
    assert torch.equal(poses, ctl.identity_matrix(4).view(2, 2, 2, 3))
    theta = torch.cat([shift(0.3, 0.0), shift(-0.2, 0.35)]).repeat(2, 1, 1).view(2, 2, 2, 3)
    for _ in range(10):
        moved, poses = track.carry(templates, poses, theta)
    # 3 px right; 2 px left and 3.5 -> 4 px down (the tie rounds forward)
    expected = torch.stack([templates[:, 0].roll(3, -1), templates[:, 1].roll((4, -2), (-2, -1))],
                           1)
    assert torch.equal(moved, expected)


def test_templates_on_a_canvas_around_the_frame_keep_the_frames_layers() -> None:
    """Templates a margin larger than the frame: inside it, the layers are those of templates
    of the frame's size (the matte and the hidden parts' colours read the frame alone); past
    it lies only what is hidden there, in the object's colour."""
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(1, 3, 48, 48, generator=generator) * 2 - 1
    frames[:, :, 10:30, 30:48] = torch.tensor([0.8, -0.6, 0.2]).view(1, 3, 1, 1)  # at the edge
    objects = boxes(1, [(30, 10, 48, 30), (4, 4, 20, 18)])
    hidden = torch.zeros_like(objects)
    hidden[0, 1, 4:8, 4:10] = 1.0  # hidden behind something
    _, frame_layers = track.start_carrying(objects, frames, hidden)
    pad = 8
    beyond = torch.zeros(1, 2, 64, 64)
    beyond[0, 0, 18:38, 56:60] = 1.0  # the box goes on 4 px past the right edge
    canvas = torch.nn.functional.pad(objects, (pad,) * 4) + beyond
    canvas_hidden = torch.nn.functional.pad(hidden, (pad,) * 4) + beyond
    poses, layers = track.start_carrying(canvas, frames, canvas_hidden)
    inside = (..., slice(pad, -pad), slice(pad, -pad))
    assert torch.equal(layers.premultiplied[inside], frame_layers.premultiplied)
    assert torch.equal(layers.alpha[inside], frame_layers.alpha)
    past = beyond[:, :, None] > 0
    assert bool((layers.alpha[past.expand_as(layers.alpha)] == 1).all())
    colour = layers.premultiplied[:, 0, :, 18:38, 56:60]
    torch.testing.assert_close(colour, torch.tensor([0.8, -0.6, 0.2]).view(1, 3, 1, 1).expand_as(
        colour))
    # carried 4 px left, the box shows what lay past the edge
    moved, _ = track.carry(canvas, poses, shift(-4, 0).repeat(2, 1, 1).view(1, 2, 2, 3),
                           size=(48, 48))
    assert bool((moved[0, 0, 10:30, 26:48] == 1).all())


def test_move_segments_owes_the_sub_pixel_rest() -> None:
    objects = boxes(1, [(10, 10, 20, 20), (30, 30, 36, 36)])
    theta = torch.cat([shift(0.4, 0.0), shift(2.0, 0.0)]).view(1, 2, 2, 3)
    moved, residual = track.move_segments(objects, theta, torch.zeros(1, 2, 2))
    assert torch.equal(moved[0, 0], objects[0, 0])  # 0.4 px: not moved, owed
    assert torch.equal(moved[0, 1], objects[0, 1].roll(2, -1))
    assert float(residual[0, 0, 0]) * 24 == pytest.approx(0.4, abs=1e-4)
    assert float(residual[0, 1].abs().max()) < 1e-5
    moved, residual = track.move_segments(moved, theta, residual)  # 0.8 px owed: one pixel
    assert torch.equal(moved[0, 0], objects[0, 0].roll(1, -1))


def test_anchor_keeps_confirmed_objects_and_restarts_the_others() -> None:
    moved = boxes(1, [(0, 0, 10, 10), (20, 20, 30, 30)])
    found = boxes(1, [(1, 0, 11, 10), (24, 24, 34, 34)])
    masks = boxes(1, [(0, 0, 10, 10)]).amax(1, keepdim=True)  # covers object 0 only
    templates = boxes(1, [(2, 2, 12, 12), (22, 22, 32, 32)])
    poses = torch.full((1, 2, 2, 3), 0.5)
    layers = compositing.Layers(torch.zeros(1, 2, 3, 48, 48), torch.zeros(1, 2, 1, 48, 48))
    frames = torch.ones(1, 3, 48, 48)
    objects, templates2, poses2, layers2 = track.anchor(
        moved, masks, found, templates, poses, layers, frames)
    assert torch.equal(objects[0, 0], moved[0, 0]) and torch.equal(objects[0, 1], found[0, 1])
    assert torch.equal(templates2[0, 0], templates[0, 0])
    assert torch.equal(templates2[0, 1], found[0, 1])
    assert torch.equal(poses2[0, 0], poses[0, 0])
    assert torch.equal(poses2[0, 1], ctl.identity_matrix(1)[0])
    # the kept object keeps its layer; the restarted one is taken from the new frame
    assert torch.equal(layers2.alpha[0, 0], layers.alpha[0, 0])
    assert torch.equal(layers2.alpha[0, 1], compositing.matte(frames, found).alpha[0, 1])
    assert float(layers2.alpha[0, 1].sum()) > 0


def test_agrees_needs_the_cover_fraction() -> None:
    moved = boxes(1, [(0, 0, 10, 10), (0, 0, 0, 0)])
    half = boxes(1, [(0, 0, 5, 10)])
    assert track.agrees(moved, half).tolist() == [[True, False]]  # empty: never confirmed
    assert track.agrees(moved, half, cover=0.6).tolist() == [[False, False]]


def test_split_by_positions_gives_each_object_its_nearest_components() -> None:
    masks = boxes(1, [(2, 2, 8, 8), (10, 2, 14, 6), (30, 30, 40, 40), (44, 0, 46, 2)])
    masks = masks.amax(1, keepdim=True)
    positions = torch.tensor([[[5.0, 5.0], [34.5, 34.5]]])  # pixel (x, y)
    objects, rest = track.split_by_positions(masks, positions)
    # the small box at (11.5, 3.5) is nearer object 0; every component is someone's
    assert torch.equal(objects[0, 0], boxes(1, [(2, 2, 8, 8), (10, 2, 14, 6)]).amax(1)[0])
    assert torch.equal(objects[0, 1], boxes(1, [(30, 30, 40, 40), (44, 0, 46, 2)]).amax(1)[0])
    assert not rest.any()
    # an absent object (NaN) takes nothing; with no object present everything stays
    objects, rest = track.split_by_positions(masks, torch.tensor([[[math.nan, math.nan]]]))
    assert not objects.any() and torch.equal(rest, masks)


def test_control_mask_and_uncontrolled_foreground() -> None:
    objects = boxes(1, [(0, 0, 4, 4), (10, 10, 14, 14)])
    extra = boxes(1, [(30, 30, 34, 34)])
    masks = torch.maximum(objects.amax(1, keepdim=True), extra)
    assert torch.equal(track.uncontrolled(masks, objects), extra)
    assert torch.equal(track.control_mask(objects, extra), masks)
    params = torch.tensor([[[0.5, 0.0], [0.9, -0.9]]])
    centroids = torch.tensor([[[0.0, 0.0], [0.5, -0.5]]])
    assert torch.equal(track.expected_centroids(centroids, params),
                       torch.tensor([[[0.5, 0.0], [1.0, -1.0]]]))


@pytest.mark.parametrize("carried", [False, True])
def test_predict_composite_takes_pixels_by_tracking_mode(carried: bool) -> None:
    torch.manual_seed(0)
    frames = torch.rand(1, 3, 48, 48) * 2 - 1
    objects = boxes(1, [(10, 10, 20, 20)])
    theta = shift(2.0, 0.0).view(1, 1, 2, 3)
    moved = objects.roll(2, -1)
    edited = moved.amax(1, keepdim=True)
    canvas, known = track.start_canvas(frames, objects)
    # unknown: the objects and a margin around them (their rim and shadow)
    assert torch.equal(known, 1 - compositing.dilate(objects, track.START_MARGIN_PX))
    # the first frame where known, a fill (of noise: push-pull's) elsewhere
    assert torch.equal(canvas, compositing.fill_holes(frames, known))
    template_frame = torch.rand(1, 3, 48, 48) * 2 - 1  # not the current frame's pixels
    layers = compositing.matte(template_frame if carried else frames, objects)
    pixels = (theta, layers) if carried else None

    def g(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return 0.1 * x + m

    out = track.predict_composite(g, frames, objects, theta, moved, edited, canvas, known, 2,
                                  pixels)
    expected, _ = compositing.predict(g, layers, theta, moved, edited, canvas, known, 2,
                                      objects.amax(1, keepdim=True))
    assert torch.equal(out, expected.float().clamp(-1, 1))
