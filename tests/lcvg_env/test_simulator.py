from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from lcvg_env import control as ctl
from lcvg_env.models import LayeredGenerator
from lcvg_env.simulator import Simulator, to_uint8
from lcvg_env.tracking import agrees
from tests.lcvg_env.conftest import TINY, tiny_frames


@pytest.fixture(scope="module")
def model() -> LayeredGenerator:
    torch.manual_seed(0)
    return LayeredGenerator(TINY).eval()


def square(n: int, boxes: list[tuple[int, int, int, int]], size: int = 48) -> torch.Tensor:
    """(n, len(boxes), size, size) masks with box k = (x0, y0, x1, y1) in object k."""
    masks = torch.zeros(n, len(boxes), size, size)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        masks[:, k, y0:y1, x0:x1] = 1.0
    return masks


def set_objects(sim: Simulator, objects: torch.Tensor,
                uncontrolled: torch.Tensor | None = None) -> None:
    """Replace the simulator's tracked objects and the foreground beside them (for tests of the
    control step alone)."""
    with torch.inference_mode():
        sim.objects = objects.clone()
        sim.templates = objects.clone()
        n, k = objects.shape[:2]
        sim.poses = ctl.identity_matrix(n * k).view(n, k, 2, 3)
        sim.uncontrolled = (torch.zeros_like(objects[:, :1]) if uncontrolled is None
                            else uncontrolled.clone())
        sim.masks = torch.maximum(objects.amax(dim=1, keepdim=True), sim.uncontrolled)
        sim.centroids = ctl.mask_centroids(objects)
        sim.present = ctl.mask_areas(objects) > 0
        sim.seen = sim.present.clone()


def test_reset_and_step_shapes(model: LayeredGenerator) -> None:
    sim = Simulator(model, 3, num_objects=2)
    sim.reset([0, 1, 2], tiny_frames(3))
    assert sim.frames.shape == (3, 3, 48, 48)
    assert sim.objects.shape == (3, 2, 48, 48)
    out = sim.step(torch.zeros(3, 2, 2))
    assert out.shape == (3, 3, 48, 48)
    assert float(out.min()) >= -1 and float(out.max()) <= 1
    assert sim.frames_uint8().shape == (3, 48, 48, 3)
    assert sim.frames_uint8().dtype == torch.uint8
    assert set(torch.unique(sim.masks_uint8()).tolist()) <= {0, 255}
    # objects are subsets of the whole mask
    assert bool((sim.objects <= sim.masks).all())


def test_reset_keeps_other_environments(model: LayeredGenerator) -> None:
    sim = Simulator(model, 2)
    sim.reset([0, 1], tiny_frames(2))
    sim.step(torch.zeros(2, 1, 2))
    before = sim.frames[1].clone()
    sim.reset([0], tiny_frames(1, seed=5))
    assert torch.equal(sim.frames[1], before)
    assert torch.equal(sim.frames_uint8()[0], torch.from_numpy(tiny_frames(1, seed=5)[0]))


def test_position_control_moves_each_object_by_its_own_row(model: LayeredGenerator) -> None:
    sim = Simulator(model, 1, num_objects=2)
    sim.reset([0], tiny_frames(1))
    set_objects(sim, square(1, [(4, 4, 14, 14), (30, 30, 40, 40)]))
    before = sim.centroids.clone()
    step = 2 * 3 / 48  # 3 pixels in normalised units
    controls = torch.tensor([[[step, 0.0], [0.0, -step]]])
    sim.step(controls)
    moved = ctl.mask_centroids(ctl.object_masks(sim.control_masks, 2))[0]  # (2, 2)
    expected = (before + controls)[0]  # each object moved by its own (dx, dy)
    distance = torch.cdist(expected, moved)  # components come sorted by area, not by slot
    assert float(distance.min(dim=1).values.max()) < 1e-4


def constant_mask_model(logit: float) -> LayeredGenerator:
    """A tiny model whose M sees the whole frame as foreground (logit > 0) or none of it."""
    torch.manual_seed(0)
    model = LayeredGenerator(TINY).eval()
    with torch.no_grad():
        last = list(model.mask_net.modules())[-2]
        assert isinstance(last, torch.nn.Conv2d) and last.bias is not None
        last.weight.zero_()
        last.bias.fill_(logit)
    return model


def count_mask_calls(model: LayeredGenerator) -> list[int]:
    """A list whose length grows by one at every call of the model's mask network."""
    calls: list[int] = []
    model.mask_net.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_sub_pixel_position_control_is_owed_not_lost() -> None:
    # M's mask is 1 everywhere, so the tracked object is never lost (its residual is kept)
    sim = Simulator(constant_mask_model(10.0), 1, num_objects=1, track_gate=None)
    sim.reset([0], tiny_frames(1))
    set_objects(sim, square(1, [(10, 10, 20, 20)]))
    controls = torch.tensor([[[2 * 0.4 / 48, 0.0]]])  # 0.4 pixel to the right
    sim.step(controls)
    # a plain warp-and-binarise would not move the mask at all: 0.4 px is owed instead
    assert torch.equal(sim.control_masks, square(1, [(10, 10, 20, 20)]).amax(1, keepdim=True))
    owed = float(sim.residual[0, 0, 0]) * 48 / 2
    assert sim.present[0, 0] and owed == pytest.approx(0.4, abs=1e-4)
    set_objects(sim, square(1, [(10, 10, 20, 20)]))  # keep the test about the control step
    sim.step(controls)  # 0.8 px owed in total: the mask moves one pixel and owes -0.2 px
    assert torch.equal(sim.control_masks, square(1, [(11, 10, 21, 20)]).amax(1, keepdim=True))
    assert float(sim.residual[0, 0, 0]) * 48 / 2 == pytest.approx(-0.2, abs=1e-4)
    sim.reset([0], tiny_frames(1))
    assert not bool(sim.residual.any())


@pytest.mark.parametrize("tracking", ["carry", "anchored"])
def test_carried_masks_move_by_the_sum_of_the_controls(tracking: str) -> None:
    model = constant_mask_model(10.0)  # M agrees with any mask: "anchored" keeps carrying
    calls = count_mask_calls(model)
    sim = Simulator(model, 2, num_objects=2, tracking=tracking, track_gate=None)
    sim.reset([0, 1], tiny_frames(2))
    objects = square(2, [(4, 4, 12, 14), (30, 26, 36, 40)])
    set_objects(sim, objects)
    reset_calls = len(calls)
    step = torch.tensor([[0.3, 0.0], [-0.2, 0.35]]) * 2 / 48  # pixels -> normalised
    for _ in range(10):
        sim.step(step.expand(2, 2, 2))
    # 3 px right; 2 px left and 3.5 -> 4 px down (the tie rounds forward): exact, whole shapes
    expected = torch.stack([objects[:, 0].roll(3, -1), objects[:, 1].roll((4, -2), (-2, -1))], 1)
    assert torch.equal(sim.objects, expected)
    assert torch.equal(sim.control_masks, expected.amax(1, keepdim=True))
    assert len(calls) == reset_calls + (10 if tracking == "anchored" else 0)


@pytest.mark.parametrize("tracking", ["carry", "anchored"])
def test_carried_masks_keep_their_shape_through_a_full_turn(tracking: str) -> None:
    sim = Simulator(constant_mask_model(10.0), 1, control="affine", tracking=tracking,
                    track_gate=None)
    sim.reset([0], tiny_frames(1))
    shape = square(1, [(10, 12, 18, 30)]) + square(1, [(18, 12, 34, 16)])  # an L
    set_objects(sim, shape)
    turn = torch.tensor([[[0.0, 0.0, 2 * math.pi / 36, 0.0, 0.0, 0.0]]])
    for _ in range(36):
        sim.step(turn)
    assert torch.equal(sim.objects, shape)


def test_anchored_tracking_falls_back_to_the_segmentation() -> None:
    # an M that sees nothing confirms no carried mask: the object is found again (nowhere)
    sim = Simulator(constant_mask_model(-10.0), 1, num_objects=1, tracking="anchored")
    sim.reset([0], tiny_frames(1))
    set_objects(sim, square(1, [(10, 10, 20, 20)]))
    sim.step(torch.zeros(1, 1, 2))
    assert not sim.present.any() and not sim.objects.any() and not sim.templates.any()
    # a segmentation that covers half of a carried mask confirms it, less than half does not
    moved = square(1, [(0, 0, 10, 10)])
    half, less = square(1, [(0, 0, 5, 10)]), square(1, [(0, 0, 4, 10)])
    assert agrees(moved, half).tolist() == [[True]] and agrees(moved, less).tolist() == [[False]]


def test_carry_tracking_of_mask_control_keeps_the_given_mask() -> None:
    model = constant_mask_model(-10.0)  # M sees nothing: only the given mask can be the state
    given = square(1, [(5, 5, 20, 20)])[:, 0]
    for tracking, kept in (("segment", False), ("carry", True)):
        sim = Simulator(model, 1, control="mask", tracking=tracking)
        sim.reset([0], tiny_frames(1))
        sim.step(given)
        assert torch.equal(sim.masks[:, 0], given) == kept
        assert bool(sim.present[0, 0]) == kept


def test_affine_control_rotates_about_the_centroid(model: LayeredGenerator) -> None:
    sim = Simulator(model, 1, control="affine", num_objects=1)
    sim.reset([0], tiny_frames(1))
    set_objects(sim, square(1, [(10, 20, 30, 26)]))  # a 20 x 6 bar
    center = sim.centroids.clone()
    params = torch.tensor([[[0.0, 0.0, math.pi / 2, 0.0, 0.0, 0.0]]])
    sim.step(params)
    edited = sim.control_masks
    assert torch.allclose(ctl.mask_centroids(edited)[0, 0], center[0, 0], atol=0.05)
    box = ctl.mask_boxes(edited)[0, 0]  # the bar now stands upright
    assert float(box[3] - box[1]) > 2 * float(box[2] - box[0])


def test_uncontrolled_foreground_stays(model: LayeredGenerator) -> None:
    sim = Simulator(model, 1, num_objects=1)
    sim.reset([0], tiny_frames(1))
    extra = square(1, [(30, 30, 34, 34)])  # a second, smaller component: not controlled
    set_objects(sim, square(1, [(4, 4, 14, 14)]), uncontrolled=extra)
    sim.step(torch.tensor([[[0.25, 0.0]]]))
    assert bool((sim.control_masks[0, 0, 30:34, 30:34] == 1).all())
    assert float(sim.control_masks[0, 0, 4:14, 4:7].sum()) == 0  # the object's old place


def test_mask_control_uses_the_given_mask(model: LayeredGenerator) -> None:
    sim = Simulator(model, 2, control="mask")
    sim.reset([0, 1], tiny_frames(2))
    given = square(2, [(5, 5, 20, 20)])[:, 0]  # (N, H, W)
    sim.step(given)
    assert torch.equal(sim.control_masks[:, 0], given)


def test_bad_inputs_raise_value_error(model: LayeredGenerator) -> None:
    with pytest.raises(ValueError, match="'teleport'"):
        Simulator(model, 2, tracking="teleport")
    sim = Simulator(model, 2)
    with pytest.raises(ValueError, match=r"\(n, 48, 48, 3\).*\(2, 32, 32, 3\)"):
        sim.reset([0, 1], np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="float32"):
        sim.reset([0, 1], np.zeros((2, 48, 48, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 2\).*\[5\]"):
        sim.reset([5], tiny_frames(1))
    sim.reset([0, 1], tiny_frames(2))
    with pytest.raises(ValueError, match=r"\(2, 1, 2\).*\(2, 2\)"):
        sim.step(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        sim.step(torch.full((2, 1, 2), float("nan")))
    with ctl.trusted_values():  # the one switch skips the value scan (shapes still checked)
        trusting = Simulator(model, 2)
        trusting.reset([0, 1], tiny_frames(2))
        trusting.step(torch.full((2, 1, 2), float("nan")))  # the caller vouched for the values
        with pytest.raises(ValueError, match=r"\(2, 1, 2\).*\(2, 2\)"):
            sim.step(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="control"):
        Simulator(model, 1, control="teleport")
    with pytest.raises(ValueError, match="compile.*3"):
        Simulator(model, 1, compile=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'fastest'"):
        Simulator(model, 1, compile="fastest")


def test_memory_layout_defaults_to_channels_last_on_cpus_only(model: LayeredGenerator) -> None:
    # CUDA: contiguous (GroupNorm copies channels-last tensors there); CPU: channels-last
    assert Simulator(model, 1).channels_last
    sim = Simulator(model, 2, channels_last=False)
    assert not sim.channels_last
    sim.reset([0, 1], tiny_frames(2))
    assert sim.step(torch.zeros(2, 1, 2)).is_contiguous()


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_networks_step_like_the_eager_ones(model: LayeredGenerator) -> None:
    sims = [Simulator(model, 2, compile=c) for c in (False, True)]  # segment: G and M
    controls = torch.tensor([[[0.1, 0.0]], [[0.0, -0.1]]])
    for sim in sims:
        sim.reset([0, 1], tiny_frames(2))
        sim.step(controls)
    eager, compiled = sims
    assert torch.allclose(eager.frames, compiled.frames, atol=1e-3)
    # M ran compiled on the generated frames: the same objects, up to pixels on the threshold
    assert float((eager.masks != compiled.masks).float().mean()) < 0.01


def test_to_uint8_round_trip() -> None:
    frames = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8)
    x = frames.permute(0, 3, 1, 2).float() / 127.5 - 1
    assert torch.equal(to_uint8(x), frames)


def test_params_per_object_come_from_the_action_table(model: LayeredGenerator) -> None:
    from lcvg_env.spaces import CONTROLS, PARAMS_PER_OBJECT

    for control in CONTROLS:
        sim = Simulator(model, 1, control=control)
        assert sim.params_per_object == PARAMS_PER_OBJECT.get(control, 0)
