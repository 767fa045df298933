"""Cutting touching objects apart by colour (lcvg_env.control.separate_objects)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from lcvg_env import control as ctl
from lcvg_env.control import ColourSplit, separate_objects
from lcvg_env.registration import register_envs
from lcvg_env.world import paired_reset
from tests.lcvg_env.conftest import BUNDLED

GREY, RED, BLUE = (0.0, 0.0, 0.0), (0.9, -0.8, -0.8), (-0.8, -0.6, 0.9)


def _scene(*boxes: tuple[int, int, int, int, tuple[float, float, float]]
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """A 32x32 grey frame (1, 3, H, W) with coloured boxes (y0, y1, x0, x1, rgb) and its mask."""
    frame = torch.full((1, 3, 32, 32), 0.0)
    mask = torch.zeros(1, 1, 32, 32)
    for y0, y1, x0, x1, rgb in boxes:
        frame[0, :, y0:y1, x0:x1] = torch.tensor(rgb)[:, None, None]
        mask[0, 0, y0:y1, x0:x1] = 1.0
    return frame, mask


def test_objects_apart_give_exactly_object_masks():
    frame, mask = _scene((2, 10, 2, 10, RED), (20, 30, 15, 28, BLUE), (3, 6, 25, 28, RED))
    for k in (1, 2, 3, 5):
        assert torch.equal(separate_objects(frame, mask, k), ctl.object_masks(mask, k))


def test_touching_objects_of_different_colours_are_cut_apart():
    frame, mask = _scene((4, 16, 4, 14, RED), (6, 20, 14, 26, BLUE))  # they share an edge
    assert ctl.object_masks(mask, 2)[0, 1].sum() == 0  # one component for both
    objects = separate_objects(frame, mask, 2)
    assert objects[0, 0].sum() == 14 * 12 and objects[0, 1].sum() == 12 * 10
    red = frame[0, 0] > 0.5
    assert torch.equal(objects[0, 1].bool(), red & mask[0, 0].bool())


def test_a_lone_pixel_of_one_colour_on_the_other_objects_rim_goes_to_that_object():
    frame, mask = _scene((4, 16, 4, 14, RED), (6, 20, 14, 26, BLUE))
    frame[0, :, 19, 25] = torch.tensor(RED)  # far from the red box, on the blue one's corner
    objects = separate_objects(frame, mask, 2)
    assert objects[0, 0].sum() == 14 * 12 and objects[0, 0, 19, 25] == 1  # blue, with it
    assert objects[0, 1].sum() == 12 * 10


def test_a_textured_object_stays_whole():
    frame, mask = _scene((4, 24, 4, 24, RED))
    stripes = torch.zeros(32, 32, dtype=torch.bool)
    stripes[4:24:2, 4:24] = True  # one-pixel stripes of a second colour
    frame[0, :, stripes] = torch.tensor(BLUE)[:, None]
    objects = separate_objects(frame, mask, 2)
    assert torch.equal(objects[0, 0], mask[0, 0]) and objects[0, 1].sum() == 0


def test_similar_colours_or_a_small_piece_stay_whole():
    frame, mask = _scene((4, 16, 4, 14, RED), (6, 20, 14, 26, (0.8, -0.7, -0.8)))
    assert separate_objects(frame, mask, 2)[0, 1].sum() == 0
    frame, mask = _scene((4, 20, 4, 20, RED), (8, 10, 20, 22, BLUE))  # 4 px of blue
    assert separate_objects(frame, mask, 2)[0, 1].sum() == 0
    frame, mask = _scene((4, 16, 4, 14, RED), (6, 20, 14, 26, BLUE))
    assert separate_objects(frame, mask, 2, ColourSplit(depth=0))[0, 1].sum() == 0


def test_an_object_split_in_two_by_one_in_front_comes_apart():
    # a blue bar behind a red one: the blue shows in two pieces of half its pixels each
    frame, mask = _scene((12, 20, 2, 30, BLUE), (4, 28, 12, 20, RED))
    objects = separate_objects(frame, mask, 2)
    red = (frame[0, 0] > 0.5) & mask[0, 0].bool()
    assert torch.equal(objects[0, 0].bool(), red)
    assert torch.equal(objects[0, 1].bool(), mask[0, 0].bool() & ~red)
    # the same far colours in pieces smaller than the least coherence stay whole
    strict = ColourSplit(coherence=((0.25, 0.6),))
    assert separate_objects(frame, mask, 2, strict)[0, 1].sum() == 0


def test_close_colours_are_cut_only_in_one_piece_each():
    rose = (0.9, -0.8, -0.33)  # 0.235 from RED in [0, 1] RGB
    frame, mask = _scene((4, 16, 4, 14, RED), (6, 20, 14, 26, rose))
    objects = separate_objects(frame, mask, 2)
    assert objects[0, 0].sum() == 14 * 12 and objects[0, 1].sum() == 12 * 10
    frame, mask = _scene((4, 24, 4, 24, RED))
    frame[0, :, 4:24:4, 4:24] = torch.tensor(rose)[:, None, None]  # stripes of the close colour
    frame[0, :, 5:24:4, 4:24] = torch.tensor(rose)[:, None, None]
    objects = separate_objects(frame, mask, 2)
    assert torch.equal(objects[0, 0], mask[0, 0]) and objects[0, 1].sum() == 0


def test_close_colours_are_cut_where_the_rim_around_them_is_speckled():
    # M's mask takes a rim of pixels blended with the background around the objects; some
    # come out nearer the other object's colour, and as specks in the wrong colour cluster
    # they would break the coherence that close colours need
    rose = (0.9, -0.8, -0.33)  # 0.235 from RED in [0, 1] RGB
    frame, body = _scene((6, 16, 6, 14, RED), (8, 20, 14, 24, rose))
    inside = body[0, 0].bool()
    mask = torch.nn.functional.max_pool2d(body, 3, stride=1, padding=1)
    rim = mask[0, 0].bool() & ~inside
    red = torch.zeros(32, 32, dtype=torch.bool)
    red[6:16, 6:14] = True
    near_red = torch.nn.functional.max_pool2d(red.float()[None, None], 3, 1, 1)[0, 0].bool()
    speck = torch.arange(32 * 32).view(32, 32) % 3 == 0
    for pixels, rgb in ((rim & near_red & ~speck, RED), (rim & near_red & speck, rose),
                        (rim & ~near_red & ~speck, rose), (rim & ~near_red & speck, RED)):
        frame[0, :, pixels] = torch.tensor(rgb)[:, None]
    objects = separate_objects(frame, mask, 2)
    assert objects[0, 1].sum() > 0, "the two objects stayed one"
    found_red = objects[0, 1].bool()  # the smaller
    assert torch.equal(found_red & inside, red)  # exactly the red box inside
    assert torch.equal(objects[0, 0].bool() | found_red, mask[0, 0].bool())  # rim shared out


@pytest.mark.parametrize("border", [1, 2, 3])
def test_an_outlined_object_stays_whole_while_a_small_object_on_a_large_one_comes_apart(border):
    frame, mask = _scene((6, 24, 6, 24, BLUE))
    frame[0, :, 6 + border:24 - border, 6 + border:24 - border] = torch.tensor(RED)[:, None, None]
    objects = separate_objects(frame, mask, 2)  # a red fill in a blue border: one object
    assert torch.equal(objects[0, 0], mask[0, 0]) and objects[0, 1].sum() == 0
    cut = separate_objects(frame, mask, 2, ColourSplit(shell_px=0))
    assert cut[0, 1].sum() > 0  # what the border test prevents
    frame, mask = _scene((4, 28, 4, 28, BLUE), (11, 21, 10, 20, RED))  # enclosed, not a border
    objects = separate_objects(frame, mask, 2)
    assert objects[0, 1].sum() == 10 * 10 and bool(objects[0, 1, 11:21, 10:20].all())


def test_an_outlined_object_whose_mask_misses_part_of_its_border_stays_whole():
    # M's mask takes about two thirds of a dark border (the rest blends into the background):
    # the fill then reaches the mask's edge where the border is missing
    frame, mask = _scene((6, 24, 6, 24, BLUE))
    frame[0, :, 8:22, 8:22] = torch.tensor(RED)[:, None, None]
    mask[0, 0, 6:8, 10:20] = 0  # a gap in the top border
    objects = separate_objects(frame, mask, 2)
    assert torch.equal(objects[0, 0], mask[0, 0]) and objects[0, 1].sum() == 0
    # a thin bar beside a square wraps a side of it, not most of it: two objects
    frame, mask = _scene((6, 24, 6, 20, RED), (6, 24, 20, 23, BLUE))
    objects = separate_objects(frame, mask, 2)
    assert objects[0, 1].sum() == 18 * 3


def test_an_outlined_object_whose_mask_keeps_half_its_border_stays_whole():
    # M's mask left out the top and left sides of a 2 px border: the rest wraps half the fill,
    # and the border's colour goes on round it off the mask
    frame, mask = _scene((6, 24, 6, 24, BLUE))
    frame[0, :, 8:22, 8:22] = torch.tensor(RED)[:, None, None]
    mask[0, 0, 6:8, :] = 0
    mask[0, 0, :, 6:8] = 0
    objects = separate_objects(frame, mask, 2)
    assert torch.equal(objects[0, 0], mask[0, 0]) and objects[0, 1].sum() == 0
    # the same band with background where the rest of the border was: a sliver of an object
    # behind the square, cut off
    frame[0, :, 6:8, :] = 0.0
    frame[0, :, :, 6:8] = 0.0
    objects = separate_objects(frame, mask, 2)
    assert objects[0, 1].sum() == 16 * 16 - 14 * 14


def test_a_patch_of_background_in_the_mask_does_not_crowd_out_a_smaller_object():
    frame, mask = _scene((3, 9, 3, 9, RED))  # a 6x6 red object on the grey background
    mask[0, 0, 16:28, 14:26] = 1.0  # M took a 12x12 patch of the grey background too
    one = separate_objects(frame, mask, 1)
    assert torch.equal(one[0, 0].bool(), mask[0, 0, :, :].bool() & (torch.arange(32) < 16)[:, None])
    both = separate_objects(frame, mask, 2)  # nothing is dropped: the patch comes second
    assert int(both[0, 0].sum()) == 36 and int(both[0, 1].sum()) == 144
    assert torch.equal(ctl.object_masks(mask, 2)[0, 0].bool(), both[0, 1].bool())  # by area


def test_bad_inputs_are_named():
    frame, mask = _scene((4, 16, 4, 14, RED))
    with pytest.raises(ValueError, match="frames must be"):
        separate_objects(frame[:, :2], mask, 1)
    with pytest.raises(ValueError, match="k must be"):
        separate_objects(frame, mask, 0)
    with pytest.raises(ValueError, match="min_pixels"):
        ColourSplit(min_pixels=0)
    with pytest.raises(ValueError, match="shell_px must be an int >= 0, got -1"):
        ColourSplit(shell_px=-1)
    with pytest.raises(ValueError, match=r"coherence must be .* got \(\(0.3, 1.5\),\)"):
        ColourSplit(coherence=((0.3, 1.5),))


@pytest.mark.skipif(not BUNDLED, reason="bundled sprites checkpoint missing")
def test_sprites_env_starts_from_the_true_object_where_objects_touch():
    """Twin scene 0 (varied) has its controlled object touching another; M joins them."""
    register_envs()
    offsets = {}
    for separate in (False, True):
        learned = gym.make("LCVG-Sprites-v0", device="cpu", separate=separate)
        twin = gym.make("LCVG-Sprites-Real-v0")
        (_, info), (_, twin_info) = paired_reset(learned, twin, seed=0)
        offsets[separate] = float(np.linalg.norm(
            (info["centroids"][0] - twin_info["centroids"][0]) * 32))  # pixels at 64x64
    assert offsets[False] > 2.0 and offsets[True] < 1.0, offsets
