"""Depth order and hidden parts of touching objects (lcvg_env.control.infer_occlusion)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from lcvg_env import compositing
from lcvg_env import control as ctl
from lcvg_env.control import occlusion as occlusion_module
from lcvg_env.registration import register_envs
from tests.lcvg_env.conftest import BUNDLED


def _boxes(*boxes: tuple[int, int, int, int], size: int = 32) -> torch.Tensor:
    """(1, K, H, W) visible masks of boxes (y0, y1, x0, x1), later boxes drawn in front."""
    full = torch.zeros(len(boxes), size, size)
    for j, (y0, y1, x0, x1) in enumerate(boxes):
        full[j, y0:y1, x0:x1] = 1.0
    visible = full.clone()
    for j in range(len(boxes) - 1):
        visible[j] *= 1.0 - full[j + 1:].amax(dim=0)
    return visible[None]


def test_convex_hulls():
    masks = torch.zeros(1, 3, 16, 16)
    masks[0, 0, 2:8, 3:9] = 1.0  # a box: its own hull
    masks[0, 1, 2:12, 2:4] = 1.0  # an L: the hull fills the triangle between its arms
    masks[0, 1, 10:12, 2:12] = 1.0
    hulls = ctl.convex_hulls(masks)
    assert torch.equal(hulls[0, 0], masks[0, 0])
    assert bool((hulls[0, 1] >= masks[0, 1]).all())
    assert hulls[0, 1, 9, 9] == 1 and hulls[0, 1, 3, 9] == 0  # inside / outside the diagonal
    assert hulls[0, 2].sum() == 0  # empty mask, empty hull
    with pytest.raises(ValueError, match="directions must be an int >= 2, got 1"):
        ctl.convex_hulls(masks, directions=1)


def test_a_box_behind_another_is_put_behind_and_completed():
    # a wide box (index 0, the larger) hidden in its middle by a small one in front
    visible = _boxes((8, 16, 2, 30), (4, 20, 12, 18))
    occlusion = ctl.infer_occlusion(visible)
    assert occlusion.depth.tolist() == [[1, 0]]  # the small box in front
    assert torch.equal(occlusion.objects[0, 0], _boxes((8, 16, 2, 30))[0, 0])  # whole again
    assert torch.equal(occlusion.hidden[0, 0], visible[0, 1] * occlusion.objects[0, 0])
    assert torch.equal(occlusion.objects[0, 1], visible[0, 1]) and occlusion.hidden[0, 1].sum() == 0


def test_a_box_hidden_at_a_corner_gets_the_corner_back():
    # the hull of the visible L would stop at the diagonal; the box's own sides bound it
    visible = _boxes((20, 36, 14, 30), (26, 42, 24, 40), size=64)
    occlusion = ctl.infer_occlusion(visible)
    assert occlusion.depth.tolist() == [[1, 0]]
    assert torch.equal(occlusion.objects[0, 0], _boxes((20, 36, 14, 30), size=64)[0, 0])


def test_objects_apart_or_alone_keep_index_order_and_their_masks():
    visible = _boxes((2, 8, 2, 8), (20, 30, 20, 30))
    occlusion = ctl.infer_occlusion(visible)
    assert occlusion.depth.tolist() == [[0, 1]]
    assert torch.equal(occlusion.objects, visible) and occlusion.hidden.sum() == 0
    single = ctl.infer_occlusion(visible[:, :1])
    assert torch.equal(single.objects, visible[:, :1]) and single.depth.tolist() == [[0]]


def test_an_object_with_dents_of_its_own_is_ordered_but_not_completed():
    # a cross behind a box: its hull would add the corners between its arms
    full = torch.zeros(1, 2, 32, 32)
    full[0, 0, 4:28, 13:19] = 1.0
    full[0, 0, 13:19, 4:28] = 1.0
    full[0, 1, 17:30, 10:22] = 1.0  # covers the lower arm and a strip of the bar
    visible = full.clone()
    visible[0, 0] *= 1.0 - full[0, 1]
    occlusion = ctl.infer_occlusion(visible)
    assert occlusion.depth.tolist() == [[1, 0]]
    assert torch.equal(occlusion.objects, visible)


def test_a_box_between_the_arms_of_a_cross_in_front_is_put_behind():
    # the cross's arm covers a strip of the box, which lies in the wedge between two arms:
    # the cross's hull takes in more of the box (20 px) than the box's hull of the cross (18)
    cross = torch.zeros(32, 32)
    cross[0:17, 11:14] = 1.0
    cross[7:10, 4:21] = 1.0
    box = torch.zeros(32, 32)
    box[11:20, 10:19] = 1.0
    for order in ((0, 1), (1, 0)):
        visible = torch.stack([box * (1.0 - cross), cross])[list(order)][None]
        occlusion = ctl.infer_occlusion(visible)
        assert occlusion.depth[0].tolist() == [order.index(1), order.index(0)]  # cross first
        assert torch.equal(occlusion.hidden[0, order.index(0)].bool(), (box * cross).bool())


def test_a_completion_is_no_wider_than_the_object_seen(monkeypatch):
    # a box behind the edge of a large disc: nothing of its own outline bounds it on the
    # disc's side, so only its width keeps it from taking the whole disc
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = (((xs - 13) ** 2 + (ys - 16) ** 2) <= 11**2).float()
    box = torch.zeros(32, 32)
    box[10:23, 21:30] = 1.0
    visible = torch.stack([disc, box * (1.0 - disc)])[None]

    def iou_with_box() -> float:
        whole = ctl.infer_occlusion(visible).objects[0, 1] > 0.5
        return float((whole & (box > 0)).sum() / (whole | (box > 0)).sum())

    assert ctl.infer_occlusion(visible).depth.tolist() == [[0, 1]]
    reached = iou_with_box()
    monkeypatch.setattr(occlusion_module, "COMPLETION_REACH", math.inf)
    unbounded = iou_with_box()
    assert reached > 0.8 and unbounded < 0.4


def _disc(cx: float, cy: float, r: float, size: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    return (((xs - cx) ** 2 + (ys - cy) ** 2) <= r * r).float()


def test_an_object_cut_by_the_frames_edge_is_completed_beyond_it():
    pad = 8
    whole = _disc(3 + pad, 16 + pad, 6, 32 + 2 * pad)  # a disc whose centre is 3 px inside
    seen = whole[pad:-pad, pad:-pad]
    beyond = ctl.beyond_frame(seen[None, None], pad)[0, 0]
    assert beyond.shape == whole.shape
    assert float(beyond[pad:-pad, pad:-pad].sum()) == 0  # nothing inside the frame
    completed = torch.nn.functional.pad(seen, (pad,) * 4) + beyond

    def iou(mask: torch.Tensor) -> float:
        return float((mask * whole).sum() / ((mask + whole) > 0).sum())

    assert iou(completed) > 0.9 > iou(torch.nn.functional.pad(seen, (pad,) * 4)) + 0.05
    # an object away from the edge, and one with dents of its own, get nothing
    inside = _disc(16, 16, 6, 32)
    tee = torch.zeros(32, 32)
    tee[10:22, 0:3], tee[15:17, 0:10] = 1, 1
    assert float(ctl.beyond_frame(torch.stack([inside, tee])[None], pad).sum()) == 0
    with pytest.raises(ValueError, match="pad must be an int >= 0, got -1"):
        ctl.beyond_frame(seen[None, None], -1)


def test_sprites_env_brings_an_object_cut_by_the_edge_whole_into_view():
    """A blue disc cut by the frame's right edge, moved left: with ``occlusion`` it comes
    whole (its template holds the part beyond the edge)."""
    register_envs()
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:] = (120, 130, 110)
    disc = _disc(60, 30, 8, 64).numpy() > 0.5  # 4 px of its 8-px radius beyond the edge
    frame[disc] = (40, 60, 220)
    blue_pixels = {}
    for occlusion in (False, True):
        env = gym.make("LCVG-Sprites-v0", device="cpu", num_objects=1, occlusion=occlusion)
        env.reset(seed=0, options={"frame": frame})
        assert env.unwrapped.core.sim.templates.shape[-1] == (96 if occlusion else 64)
        for _ in range(5):
            obs, *_ = env.step(np.array([-0.1, 0.0], np.float32))  # 3.2 px left a step
        blue_pixels[occlusion] = int(((obs[..., 2] > 160) & (obs[..., 0] < 100)).sum())
        env.close()
    whole = int((_disc(30, 30, 8, 64) > 0.5).sum())
    assert blue_pixels[False] < 0.85 * whole < blue_pixels[True] < 1.15 * whole, (blue_pixels,
                                                                                   whole)


def test_fill_hidden_gives_the_hidden_part_the_objects_colour():
    visible = _boxes((8, 16, 2, 30), (4, 20, 12, 18))
    frame = torch.full((1, 3, 32, 32), -0.5)
    frame[:, :, visible[0, 0] > 0] = torch.tensor([0.8, -0.2, 0.1])[None, :, None]
    frame[:, :, visible[0, 1] > 0] = torch.tensor([-0.9, 0.7, 0.3])[None, :, None]
    occlusion = ctl.infer_occlusion(visible)
    layers = compositing.fill_hidden(compositing.matte(frame, visible), frame, visible,
                                     occlusion.hidden)
    hidden = occlusion.hidden[0, 0] > 0
    assert bool((layers.alpha[0, 0, 0][hidden] == 1).all())
    colour = layers.premultiplied[0, 0][:, hidden]
    assert torch.allclose(colour, torch.tensor([0.8, -0.2, 0.1])[:, None], atol=1e-5)


def test_compose_draws_objects_in_the_given_depth_order():
    masks = _boxes((4, 16, 4, 16), (10, 22, 10, 22))
    masks[0, 0] = _boxes((4, 16, 4, 16))[0, 0]  # both whole: they overlap in 10:16
    frame = torch.zeros(1, 2, 3, 32, 32)
    frame[0, 0, 0] = 1.0  # object 0 red, object 1 green
    frame[0, 1, 1] = 1.0
    layers = compositing.Layers(frame * masks.unsqueeze(2), masks.unsqueeze(2))
    theta = ctl.identity_matrix(2).view(1, 2, 2, 3)
    canvas, known = torch.zeros(1, 3, 32, 32), torch.ones(1, 1, 32, 32)
    before = masks.amax(1, keepdim=True)
    front = {}
    for order in ([0, 1], [1, 0]):
        comp = compositing.compose(layers, theta, masks, canvas, known, 0, before,
                                   depth=torch.tensor([order]))
        front[order[0]] = comp.image[0, :, 12, 12].argmax().item()
    assert front == {0: 0, 1: 1}


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites checkpoint missing")
def test_sprites_env_completes_a_box_hidden_behind_another():
    """A blue box whose corner a red box hides, moved out: with ``occlusion`` it comes whole."""
    register_envs()
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:] = (120, 130, 110)
    frame[20:36, 14:30] = (40, 60, 220)
    frame[26:42, 24:40] = (220, 50, 40)
    blue_pixels, areas = {}, {}
    for occlusion in (False, True):
        env = gym.make("LCVG-Sprites-v0", device="cpu", num_objects=2, occlusion=occlusion)
        env.reset(seed=0, options={"frame": frame})
        sim = env.unwrapped.core.sim
        blue = int(sim.objects[0, :, 20:26, 14:20].sum(dim=(1, 2)).argmax())
        areas[occlusion] = float(sim.objects[0, blue].sum())
        action = np.zeros((2, 2), np.float32)
        action[blue] = (-0.1, -0.1)  # 3.2 px up and left a step, out from behind
        for _ in range(4):
            obs, *_ = env.step(action.reshape(-1))
        blue_pixels[occlusion] = int(((obs[..., 2] > 160) & (obs[..., 0] < 100)).sum())
        env.close()
    assert areas[True] > areas[False] + 15, areas
    assert blue_pixels[True] > blue_pixels[False] + 15, blue_pixels
