"""Tests of lcvg_env.control: the convention, conversions, warping, components and fitting."""

from __future__ import annotations

import math
import threading
from collections import deque

import pytest
import torch
import torch.nn.functional as F

from lcvg_env.control import (
    PARAM_NAMES,
    ControlFit,
    binarize,
    carry_masks,
    compose_affine,
    connected_components,
    fit_control,
    identity_matrix,
    invert_affine,
    mask_areas,
    mask_boxes,
    mask_centroids,
    matrix_to_params,
    nonparametric_edit,
    normalized_to_pixel,
    object_masks,
    params_to_matrix,
    pixel_to_normalized,
    rings,
    subpixel_spread,
    trusted_values,
    union_masks,
    values_checked,
    warp_binary,
    warp_masks,
    warp_objects,
)

# --------------------------------------------------------------------------------------------
# helpers: exact rendering of asymmetric blobs (no warping involved)
# --------------------------------------------------------------------------------------------


def _pixel_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised (x, y) of the pixel centres, each (H, W), float64."""
    ys = (2 * torch.arange(h, dtype=torch.float64) + 1) / h - 1
    xs = (2 * torch.arange(w, dtype=torch.float64) + 1) / w - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return gx, gy


def _blob(u: torch.Tensor, v: torch.Tensor, radius: float, phase: float) -> torch.Tensor:
    """Asymmetric blob indicator; (u, v) in pixels from its centre."""
    ang = torch.atan2(v, u)
    r = radius * (1 + 0.25 * torch.cos(2 * ang + phase) + 0.15 * torch.cos(3 * ang + 2 * phase))
    return (u.square() + v.square()).sqrt() <= r


def render_pair(
    params: torch.Tensor, size: tuple[int, int], radius: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source blobs and exact targets after the forward motions ``params`` (B, 6) about each
    blob's centre. Returns source, target (B, 1, H, W) float32 and true theta (B, 2, 3)."""
    gen = torch.Generator().manual_seed(seed)
    b = params.shape[0]
    h, w = size
    centre = (torch.rand(b, 2, generator=gen, dtype=torch.float64) - 0.5) * 0.3
    phase = torch.rand(b, generator=gen, dtype=torch.float64) * 2 * math.pi
    theta = params_to_matrix(params.double(), centre, size=size)  # (B, 2, 3)
    gx, gy = _pixel_grid(h, w)
    src, tgt = [], []
    for i in range(b):
        u = (gx - centre[i, 0]) * w / 2
        v = (gy - centre[i, 1]) * h / 2
        src.append(_blob(u, v, radius, float(phase[i])))
        qx = theta[i, 0, 0] * gx + theta[i, 0, 1] * gy + theta[i, 0, 2]
        qy = theta[i, 1, 0] * gx + theta[i, 1, 1] * gy + theta[i, 1, 2]
        tgt.append(_blob((qx - centre[i, 0]) * w / 2, (qy - centre[i, 1]) * h / 2, radius,
                         float(phase[i])))
    source = torch.stack(src)[:, None].float()
    target = torch.stack(tgt)[:, None].float()
    return source, target, theta.float()


def _params(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _angle_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi


# --------------------------------------------------------------------------------------------
# the convention
# --------------------------------------------------------------------------------------------


def test_param_names() -> None:
    assert PARAM_NAMES == ("dx", "dy", "rotation", "log_scale_x", "log_scale_y", "shear")


def test_positive_dx_moves_the_centroid_right_by_dx() -> None:
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:34, 10:30] = 1
    for dx, dy in [(0.25, 0.0), (0.0, -0.375), (0.5, 0.125)]:
        theta = params_to_matrix(torch.tensor([[dx, dy]]))
        moved = warp_masks(mask, theta)
        shift = mask_centroids(moved) - mask_centroids(mask)
        torch.testing.assert_close(shift[0, 0], torch.tensor([dx, dy]), atol=1e-5, rtol=0)


def test_theta_is_the_affine_grid_convention() -> None:
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(3, 2, 17, 23, generator=gen)
    theta = torch.eye(2, 3).repeat(3, 1, 1) + 0.2 * torch.randn(3, 2, 3, generator=gen)
    grid = F.affine_grid(theta, [3, 2, 17, 23], align_corners=False)
    expected = F.grid_sample(masks, grid, align_corners=False)
    torch.testing.assert_close(warp_masks(masks, theta), expected, atol=1e-5, rtol=0)


def test_identity_warp_is_exact() -> None:
    masks = (torch.rand(2, 1, 16, 24) > 0.5).float()
    torch.testing.assert_close(warp_masks(masks, identity_matrix(2)), masks)


def test_a_warp_from_a_canvas_around_the_frame_sees_what_lies_beyond_it() -> None:
    masks = (torch.rand(2, 1, 16, 24) > 0.5).float()
    canvas = F.pad(masks, (4, 4, 4, 4))
    canvas[:, :, :, -4:] = 1.0  # something beyond the frame's right edge
    theta = params_to_matrix(torch.tensor([[0.3, 0.1, 0.2, 0.1, 0.0, 0.05], [0.0] * 6]))
    for mode in ("bilinear", "nearest"):  # the frame's own content lands as it does without
        within = warp_masks(masks, theta, mode=mode)
        torch.testing.assert_close(warp_masks(F.pad(masks, (4, 4, 4, 4)), theta, mode=mode,
                                              size=(16, 24)), within)
    # moved 4 px left (input_from_output: each output pixel samples 4 px to its right), what
    # lay beyond the right edge comes into view
    left = identity_matrix(1).repeat(2, 1, 1)
    left[:, 0, 2] = 2 * 4 / 24
    moved, _ = carry_masks(canvas, identity_matrix(1).repeat(2, 1, 1), left, size=(16, 24))
    assert bool((moved[..., -4:] == 1).all())
    torch.testing.assert_close(moved[..., :-4], masks[..., 4:])
    for size in ((26, 24), (17, 24), (16,), (0, 24)):  # the canvas is 24 x 32
        with pytest.raises(ValueError, match="size|margin"):
            warp_masks(canvas, theta, size=size)


def test_rotation_looks_like_a_rotation_on_a_non_square_frame() -> None:
    h, w = 96, 256
    mask = torch.zeros(1, 1, h, w)
    mask[..., 43:53, 108:148] = 1  # 40 px wide, 10 px tall
    centre = mask_centroids(mask)[:, 0]
    theta = params_to_matrix(torch.tensor([[0, 0, math.pi / 2, 0, 0, 0.0]]), centre, size=(h, w))
    box = normalized_to_pixel(mask_boxes(binarize(warp_masks(mask, theta)))[0, 0].view(2, 2),
                              (h, w))
    width, height = (box[1] - box[0]).tolist()
    assert abs(width - 10) <= 1.0 and abs(height - 40) <= 1.0, (width, height)
    torch.testing.assert_close(mask_centroids(binarize(warp_masks(mask, theta)))[:, 0], centre,
                               atol=2e-2, rtol=0)


def test_pixel_normalised_conversions() -> None:
    size = (6, 10)
    pts = torch.tensor([[0.0, 0.0], [9.0, 5.0], [4.5, 2.5]])
    norm = pixel_to_normalized(pts, size)
    torch.testing.assert_close(norm[0], torch.tensor([-0.9, -5 / 6]))  # centre of pixel (0, 0)
    torch.testing.assert_close(norm[2], torch.tensor([0.0, 0.0]))  # frame centre
    torch.testing.assert_close(normalized_to_pixel(norm, size), pts)


# --------------------------------------------------------------------------------------------
# parameters <-> matrices
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [None, (64, 64), (96, 256)])
def test_params_matrix_round_trip(size: tuple[int, int] | None) -> None:
    gen = torch.Generator().manual_seed(1)
    params = torch.randn(32, 6, generator=gen, dtype=torch.float64) * 0.5
    params[:, 2] = (torch.rand(32, generator=gen, dtype=torch.float64) * 2 - 1) * 3.1
    center = torch.randn(32, 2, generator=gen, dtype=torch.float64) * 0.3
    theta = params_to_matrix(params, center, size=size)
    assert theta.shape == (32, 2, 3) and theta.dtype == torch.float64
    torch.testing.assert_close(matrix_to_params(theta, center, size=size), params,
                               atol=1e-10, rtol=0)
    torch.testing.assert_close(
        params_to_matrix(matrix_to_params(theta, size=size), size=size), theta, atol=1e-10, rtol=0
    )


def test_translation_params_and_center() -> None:
    theta = params_to_matrix(torch.tensor([[0.1, -0.2]]))
    torch.testing.assert_close(theta, torch.tensor([[[1.0, 0, -0.1], [0, 1.0, 0.2]]]))
    # a rotation about a pivot leaves the pivot in place
    center = torch.tensor([0.3, -0.4])
    theta = params_to_matrix(torch.tensor([[0, 0, 0.7, 0.2, -0.1, 0.3]]), center, size=(32, 80))
    pivot = theta[0, :, :2] @ center + theta[0, :, 2]
    torch.testing.assert_close(pivot, center)


def test_invert_affine_round_trip() -> None:
    theta = params_to_matrix(torch.tensor([[0.1, 0.2, 0.3, 0.1, -0.2, 0.4]], dtype=torch.float64))
    torch.testing.assert_close(invert_affine(invert_affine(theta)), theta)
    with pytest.raises(ValueError, match="singular"):
        invert_affine(torch.zeros(1, 2, 3))


def test_matrix_to_params_rejects_mirrors() -> None:
    mirror = torch.tensor([[[-1.0, 0, 0], [0, 1.0, 0]]])
    with pytest.raises(ValueError, match="determinant"):
        matrix_to_params(mirror)


# --------------------------------------------------------------------------------------------
# warping
# --------------------------------------------------------------------------------------------


def test_warp_gradcheck() -> None:
    gen = torch.Generator().manual_seed(2)
    masks = torch.rand(2, 1, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    theta = (torch.eye(2, 3, dtype=torch.float64).repeat(2, 1, 1)
             + 0.1 * torch.randn(2, 2, 3, generator=gen, dtype=torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(warp_masks, (masks, theta), eps=1e-6, atol=1e-5)


def test_subpixel_spread_is_zero_on_pixel_centres_and_one_halfway() -> None:
    size = 16
    def shift(dx: float, dy: float) -> torch.Tensor:
        params = torch.tensor([[2 * dx / size, 2 * dy / size]])
        return params_to_matrix(params, size=(size, size))

    assert torch.allclose(subpixel_spread(shift(3.0, -2.0), size, size), torch.zeros(1, 1, 16, 16),
                          atol=1e-5)
    assert torch.allclose(subpixel_spread(shift(0.5, 0.0), size, size), torch.ones(1, 1, 16, 16),
                          atol=1e-5)
    quarter = subpixel_spread(shift(0.25, 1.0), size, size)  # 4 * 0.25 * 0.75 in x
    assert quarter.shape == (1, 1, 16, 16) and torch.allclose(quarter, torch.tensor(0.75),
                                                              atol=1e-5)
    with pytest.raises(ValueError, match="h must be an int >= 1, got 0"):
        subpixel_spread(shift(0.5, 0.0), 0, size)
    with pytest.raises(ValueError, match="theta must have shape"):
        subpixel_spread(torch.zeros(1, 3, 3), size, size)


def test_warp_objects_moves_each_object() -> None:
    objects = torch.zeros(1, 2, 32, 32)
    objects[0, 0, 4:10, 4:10] = 1
    objects[0, 1, 20:28, 20:28] = 1
    shifts = torch.tensor([[0.25, 0.0], [0.0, -0.25]])  # 4 px right; 4 px up
    theta = params_to_matrix(shifts).view(1, 2, 2, 3)
    union = warp_objects(objects, theta)
    expected = torch.zeros(1, 1, 32, 32)
    expected[0, 0, 4:10, 8:14] = 1
    expected[0, 0, 16:24, 20:28] = 1
    torch.testing.assert_close(union, expected)
    torch.testing.assert_close(union_masks(objects), objects.amax(1, keepdim=True))


def test_warp_binary_carries_sub_pixel_motion() -> None:
    square = torch.zeros(3, 1, 64, 64)
    square[..., 20:30, 20:30] = 1
    step = torch.tensor([[1.3, 0.4], [0.3, -0.45], [0.0, 0.0]]) * 2 / 64  # px, normalised
    rotation = torch.tensor([[0.0], [0.0], [0.1]])
    params = torch.cat([step, rotation, torch.zeros(3, 3)], 1)
    start = normalized_to_pixel(mask_centroids(square)[:, 0], (64, 64))
    carried, plain, residual = square, square, None
    for _ in range(16):
        center = mask_centroids(carried)[:, 0]
        carried, residual = warp_binary(carried, params_to_matrix(params, center), residual)
        assert float(residual.abs().max()) * 32 <= 0.51  # at most half a pixel is ever owed
        center = mask_centroids(plain)[:, 0]
        plain = binarize(warp_masks(plain, params_to_matrix(params, center)))
    moved = normalized_to_pixel(mask_centroids(carried)[:, 0], (64, 64)) - start
    assert torch.allclose(moved, 16 * step * 32, atol=0.51), moved  # (20.8, 6.4), (4.8, -7.2)
    assert carried.sum((1, 2, 3)).tolist() == [100.0, 100.0, 100.0]  # no erosion
    assert float(plain[1].sum()) < 50  # bilinear warps of sub-pixel moves eat the mask
    # empty masks owe nothing; a residual of the wrong shape is named
    empty, owed = warp_binary(torch.zeros(1, 1, 8, 8), identity_matrix(1), torch.ones(1, 2))
    assert not empty.any() and not owed.any()
    with pytest.raises(ValueError, match=r"\(3,\)"):
        warp_binary(square, identity_matrix(3), torch.zeros(3))


def test_compose_affine_chains_the_maps() -> None:
    gen = torch.Generator().manual_seed(0)
    first, second = torch.randn(2, 5, 2, 3, generator=gen)
    points = torch.randn(5, 2, 1, generator=gen)
    inner = second[..., :2] @ points + second[..., 2:]
    expected = first[..., :2] @ inner + first[..., 2:]
    chained = compose_affine(first, second)
    assert torch.allclose(chained[..., :2] @ points + chained[..., 2:], expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(4, 2, 3\)"):
        compose_affine(first, second[:4])


def test_carry_masks_keeps_shape_and_exact_motion() -> None:
    shape = torch.zeros(1, 1, 64, 64)  # an L: asymmetric, so rotation errors show
    shape[..., 20:34, 18:26] = 1
    shape[..., 20:24, 26:40] = 1
    turn = torch.tensor([[0.0, 0.0, 2 * math.pi / 36, 0.0, 0.0, 0.0]])
    carried, pose, chained, owed = shape, identity_matrix(1), shape, None
    for _ in range(36):  # a full turn in 10 degree steps about the centroid
        carried, pose = carry_masks(
            shape, pose, params_to_matrix(turn, mask_centroids(carried)[:, 0]))
        chained, owed = warp_binary(
            chained, params_to_matrix(turn, mask_centroids(chained)[:, 0]), owed)
    assert torch.equal(carried, shape)  # resampled from the template: nothing degrades
    overlap = (chained * shape).sum() / torch.maximum(chained, shape).sum()
    assert float(overlap) < 0.8  # resampling the resampled mask 36 times does degrade it
    # slow motion adds up in the pose; a mask pushed out of the frame comes back whole
    slow = torch.tensor([[0.3, -0.2, 0.0, 0.0, 0.0, 0.0]]) * 2 / 64
    carried, pose = shape, identity_matrix(1)
    for _ in range(16):
        carried, pose = carry_masks(shape, pose, params_to_matrix(slow))
    assert torch.equal(carried, torch.roll(shape, (-3, 5), (2, 3)))  # (4.8, -3.2) px rounded
    out = torch.tensor([[40.0, 0.0, 0.0, 0.0, 0.0, 0.0]]) * 2 / 64
    carried, pose = carry_masks(shape, identity_matrix(1), params_to_matrix(out))
    assert 0 < float(carried.sum()) < float(shape.sum())  # partly out of view
    carried, pose = carry_masks(shape, pose, params_to_matrix(-out))
    assert torch.equal(carried, shape)


def test_finite_check_counts_values_not_their_sum() -> None:
    huge = torch.full((1, 1, 4, 4), 3e38)  # every value finite, their sum is not
    assert bool(binarize(huge).all())
    huge[0, 0, 1, 2] = math.inf
    with pytest.raises(ValueError, match="1 NaN/inf"):
        binarize(huge)


def test_nonparametric_edit() -> None:
    current = torch.rand(3, 1, 8, 10)
    drawn = torch.zeros(8, 10, dtype=torch.uint8)
    drawn[2:5, 3:7] = 255
    edited = nonparametric_edit(current, drawn)
    assert edited.shape == (3, 1, 8, 10) and edited.dtype == current.dtype
    assert set(edited.unique().tolist()) == {0.0, 1.0} and edited[:, :, 2:5, 3:7].all()
    soft = torch.full((3, 1, 8, 10), 0.7)
    assert nonparametric_edit(current, soft).all()
    with pytest.raises(ValueError, match=r"\(3, 1, 8, 10\)"):
        nonparametric_edit(current, torch.zeros(8, 11))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        nonparametric_edit(current, torch.full((8, 10), 2.0))


def test_binarize() -> None:
    m = torch.tensor([[0.2, 0.5, 0.51, 1.0]])
    torch.testing.assert_close(binarize(m), torch.tensor([[0.0, 0.0, 1.0, 1.0]]))
    assert binarize(torch.tensor([True, False])).dtype == torch.float32


# --------------------------------------------------------------------------------------------
# components and measurements
# --------------------------------------------------------------------------------------------


def _reference_components(mask: torch.Tensor, connectivity: int) -> list[int]:
    """Component areas by breadth-first search (slow, only for small test images)."""
    h, w = mask.shape
    seen = torch.zeros(h, w, dtype=torch.bool)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    areas = []
    for i in range(h):
        for j in range(w):
            if mask[i, j] and not seen[i, j]:
                seen[i, j] = True
                queue, area = deque([(i, j)]), 0
                while queue:
                    y, x = queue.popleft()
                    area += 1
                    for dy, dx in steps:
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
                areas.append(area)
    return sorted(areas, reverse=True)


def test_object_masks_two_blobs_sorted_by_area() -> None:
    masks = torch.zeros(2, 1, 40, 50)
    masks[0, 0, 2:6, 2:6] = 1  # 16 px, first in raster order
    masks[0, 0, 20:30, 30:40] = 1  # 100 px
    masks[1, 0, 5:8, 5:8] = 1  # 9 px, single object
    objects = object_masks(masks, k=3)
    assert objects.shape == (2, 3, 40, 50)
    torch.testing.assert_close(mask_areas(objects) * 40 * 50,
                               torch.tensor([[100.0, 16, 0], [9, 0, 0]]))
    assert objects[0, 0, 25, 35] == 1 and objects[0, 1, 3, 3] == 1
    torch.testing.assert_close(objects.sum(1, keepdim=True), masks)


def test_object_masks_connectivity_and_ties() -> None:
    mask = torch.zeros(1, 1, 8, 8)
    mask[0, 0, 1, 1] = mask[0, 0, 2, 2] = 1  # diagonal neighbours
    mask[0, 0, 6, 6] = mask[0, 0, 6, 7] = 1
    assert object_masks(mask, 4).sum((2, 3)).tolist() == [[2.0, 2.0, 0, 0]]
    four = object_masks(mask, 4, connectivity=4)
    assert four.sum((2, 3)).tolist() == [[2.0, 1.0, 1.0, 0]]
    eight = object_masks(mask, 2)
    assert eight[0, 0, 1, 1] == 1  # equal areas: the first in raster order comes first


@pytest.mark.parametrize("connectivity", [4, 8])
def test_connected_components_match_a_reference(connectivity: int) -> None:
    gen = torch.Generator().manual_seed(3)
    masks = (torch.rand(4, 1, 20, 24, generator=gen) > 0.5).float()
    objects = object_masks(masks, k=500, connectivity=connectivity)
    for i in range(4):
        areas = [int(a) for a in objects[i].sum((1, 2)).tolist() if a > 0]
        assert areas == _reference_components(masks[i, 0] > 0.5, connectivity)
    labels = connected_components(masks, connectivity)
    assert labels.dtype == torch.int64 and ((labels > 0) == (masks[:, 0] > 0.5)).all()


def test_connected_components_long_snake() -> None:
    mask = torch.zeros(1, 1, 64, 64)
    for row in range(0, 64, 4):
        mask[0, 0, row, :] = 1
        col = 63 if (row // 4) % 2 == 0 else 0
        mask[0, 0, row:row + 4, col] = 1
    objects = object_masks(mask, 2)
    assert objects[0, 0].sum() == mask.sum() and objects[0, 1].sum() == 0


def test_measurements() -> None:
    masks = torch.zeros(1, 2, 8, 16)
    masks[0, 0, 2:4, 4:8] = 1
    areas = mask_areas(masks)
    torch.testing.assert_close(areas, torch.tensor([[8 / 128, 0.0]]))
    cent = mask_centroids(masks)
    expected = pixel_to_normalized(torch.tensor([5.5, 2.5]), (8, 16))
    torch.testing.assert_close(cent[0, 0], expected)
    boxes = mask_boxes(masks)
    torch.testing.assert_close(boxes[0, 0], torch.tensor([-0.5, -0.5, 0.0, 0.0]))
    assert (cent[0, 1] == 0).all() and (boxes[0, 1] == 0).all()
    full = mask_boxes(torch.ones(1, 1, 5, 7))
    torch.testing.assert_close(full[0, 0], torch.tensor([-1.0, -1.0, 1.0, 1.0]))


def test_rings_tell_a_ring_round_an_object_from_pixels_on_one_side() -> None:
    box = torch.zeros(1, 1, 24, 24)
    box[0, 0, 8:16, 8:16] = 1
    looked = (F.max_pool2d(box, 5, stride=1, padding=2) > 0.5) & (box < 0.5)  # 2 px round it
    one_side = looked & (torch.arange(24)[None, None, None, :] >= 16)  # right of the box only
    assert rings(box, looked, looked).tolist() == [[True]]
    assert rings(box, one_side, looked).tolist() == [[False]]
    # every angle holds a pixel of a sparse ring, but a quarter of its pixels in none
    sparse = looked & ((torch.arange(24)[:, None] + torch.arange(24)[None, :]) % 7 == 0)
    assert rings(box, sparse, looked).tolist() == [[True]]
    assert rings(box, sparse, looked, fill=0.25).tolist() == [[False]]
    # an object at a corner of the frame: only the angles that hold looked pixels count
    corner = torch.zeros(1, 1, 24, 24)
    corner[0, 0, :6, :6] = 1
    near = (F.max_pool2d(corner, 5, stride=1, padding=2) > 0.5) & (corner < 0.5)
    assert rings(corner, near, near).tolist() == [[True]]


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------

CASES = {
    "translation": [[0.2, -0.1, 0, 0, 0, 0], [-0.15, 0.25, 0, 0, 0, 0]],
    "rotation": [[0, 0, 0.6, 0, 0, 0], [0.05, 0, -2.5, 0, 0, 0]],
    "scale": [[0, 0, 0, 0.25, 0.25, 0], [0, 0.05, 0, -0.2, 0.15, 0]],
    "shear": [[0, 0, 0, 0, 0, 0.4], [0.05, 0, 0.3, 0.1, -0.1, -0.3]],
}


@pytest.mark.parametrize("case", list(CASES))
def test_fit_control_recovers_known_transforms(case: str) -> None:
    size = (128, 128)
    params = _params(CASES[case])
    source, target, theta_true = render_pair(params, size, radius=30.0, seed=4)
    fit = fit_control(source, target, mode="affine")
    assert isinstance(fit, ControlFit)
    assert fit.theta.shape == (2, 2, 3) and fit.valid.all()
    assert (fit.iou >= 0.98).all(), fit.iou
    got = matrix_to_params(fit.theta, size=size)
    true = matrix_to_params(theta_true, size=size)
    err = (got - true).abs()
    err[:, 2] = _angle_diff(got[:, 2], true[:, 2]).abs()
    assert (err < 0.03).all(), err


def test_fit_translation_and_similarity_modes_on_a_wide_frame() -> None:
    size = (96, 256)
    params = _params([[0.2, -0.1, 0, 0, 0, 0], [-0.1, 0.2, 1.2, 0.2, 0.2, 0],
                      [0.05, 0.05, -0.4, -0.15, -0.15, 0]])
    source, target, theta_true = render_pair(params, size, radius=22.0, seed=5)
    fit = fit_control(source[:1], target[:1], mode="translation")
    assert fit.iou.min() >= 0.97
    torch.testing.assert_close(fit.theta[0, :, :2], torch.eye(2))
    torch.testing.assert_close(fit.theta, theta_true[:1], atol=0.01, rtol=0)
    fit = fit_control(source, target, mode="similarity")
    assert fit.iou.min() >= 0.97, fit.iou
    got = matrix_to_params(fit.theta, size=size)
    true = params.float()
    assert (_angle_diff(got[:, 2], true[:, 2]).abs() < 0.03).all()
    torch.testing.assert_close(got[:, 3], got[:, 4], atol=1e-4, rtol=0)  # uniform scale
    torch.testing.assert_close(got[:, 3], true[:, 3], atol=0.03, rtol=0)


def test_fit_empty_masks_give_identity_and_invalid() -> None:
    source = torch.zeros(4, 1, 32, 32)
    target = torch.zeros(4, 1, 32, 32)
    source[1, 0, 8:16, 8:16] = 1  # target empty
    target[2, 0, 8:16, 8:16] = 1  # source empty
    source[3, 0, 4, 4] = target[3, 0, 5, 5] = 1  # one pixel each: near-empty
    for mode in ("translation", "similarity", "affine"):
        fit = fit_control(source, target, mode=mode)
        assert not fit.valid.any()
        assert torch.isfinite(fit.theta).all() and torch.isfinite(fit.iou).all()
        torch.testing.assert_close(fit.theta, identity_matrix(4))


def test_fit_full_frame_and_symmetric_shapes_prefer_no_rotation() -> None:
    full = torch.ones(1, 1, 16, 16)
    fit = fit_control(full, full)
    torch.testing.assert_close(fit.theta, identity_matrix(1), atol=1e-5, rtol=0)
    assert fit.iou.item() == 1.0


def test_fit_mixed_batch_and_dtypes() -> None:
    params = _params([[0.1, 0.05, 0.2, 0.1, 0.0, 0.1], [0, 0, 0, 0, 0, 0]])
    source, target, _ = render_pair(params, (64, 64), radius=16.0, seed=6)
    source[1] = 0
    fit = fit_control(source.double(), target.double(), iterations=6)
    assert fit.theta.dtype == torch.float64 and fit.valid.tolist() == [True, False]
    fit_bool = fit_control(source > 0.5, target > 0.5)
    assert fit_bool.theta.dtype == torch.float32 and fit_bool.iou[0] > 0.95


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_trusted_values_skip_value_scans_but_not_shape_checks() -> None:
    nan = torch.full((2, 2, 3), float("nan"))
    negative = -torch.ones(1, 1, 2, 2)
    with trusted_values():
        warp_masks(torch.zeros(2, 1, 8, 8), nan)  # NaN passes: the caller vouches for it
        mask_centroids(negative)
        with pytest.raises(ValueError, match=r"\(2, 3, 3\)"):
            warp_masks(torch.zeros(2, 1, 8, 8), torch.zeros(2, 3, 3))
    # the scans are back after the block
    with pytest.raises(ValueError, match="NaN"):
        warp_masks(torch.zeros(2, 1, 8, 8), nan)
    with pytest.raises(ValueError, match=">= 0"):
        mask_centroids(negative)


def test_trusted_values_hold_in_their_own_context_only() -> None:
    in_thread: list[bool] = []
    assert values_checked()
    with trusted_values():
        worker = threading.Thread(target=lambda: in_thread.append(values_checked()))
        worker.start()
        worker.join()
        assert not values_checked()
        with trusted_values(False):  # False changes nothing: it never turns the scans back on
            assert not values_checked()
    assert in_thread == [True] and values_checked()
    with trusted_values(False):
        assert values_checked()
    with pytest.raises(TypeError, match="trusted must be a bool, got device"):
        with trusted_values(torch.device("cpu")):  # type: ignore[arg-type]
            pass


def test_bad_inputs_raise_quoting_what_was_received() -> None:
    masks = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"\(2, 8, 8\)"):
        fit_control(masks[:, 0], masks[:, 0])
    with pytest.raises(ValueError, match="same shape"):
        fit_control(masks, torch.zeros(2, 1, 8, 9))
    with pytest.raises(ValueError, match="'rigid'"):
        fit_control(masks, masks, mode="rigid")
    with pytest.raises(TypeError, match="list"):
        fit_control([[0.0]], masks)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="NaN"):
        fit_control(torch.full((1, 1, 4, 4), float("nan")), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="iterations"):
        fit_control(masks, masks, iterations=-1)
    with pytest.raises(TypeError, match="torch.int64"):
        params_to_matrix(torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        params_to_matrix(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="NaN"):
        params_to_matrix(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="size"):
        params_to_matrix(torch.zeros(1, 6), size=(0, 5))
    with pytest.raises(ValueError, match="center"):
        params_to_matrix(torch.zeros(2, 6), center=torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"\(2, 3, 3\)"):
        warp_masks(masks, torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="NaN"):
        warp_masks(masks, torch.full((2, 2, 3), float("nan")))
    with pytest.raises(ValueError, match="k must be"):
        object_masks(masks, 0)
    with pytest.raises(ValueError, match="connectivity"):
        object_masks(masks, 1, connectivity=6)
    with pytest.raises(ValueError, match=">= 0"):
        mask_centroids(-torch.ones(1, 1, 2, 2))
    with pytest.raises(ValueError, match="threshold"):
        binarize(masks, threshold=float("nan"))
