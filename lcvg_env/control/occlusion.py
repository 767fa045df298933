"""Which touching objects hide which, and the hidden parts of those behind.

A first frame shows an object partly hidden behind another as its visible pieces only: moved
out from behind, it would arrive with a bite taken out (the twins' paired evaluation: the
largest colour errors of the learned sprites world were such objects, and the objects drawn in
the other depth order where two meet). :func:`infer_occlusion` reads both from the objects'
masks alone. An object B hidden behind A is cut by A: A fills a dent of B's outline, so A's
pixels lie inside B's convex hull, while B's pixels hardly reach into A's. The object with more
of the other inside its hull is behind. A hidden object that looks convex where it is seen
whole (its visible pieces fill their hull away from the objects in front) is completed where
those objects cover it, up to every line that bounds the outline it shows itself: the largest
convex object that outline allows (a box hidden at a corner gets the corner back; where all
of its outermost pixels along a direction touch the front object, nothing of its own bounds it
there), and no wider than what is seen of it (a sliver is not grown across the object in
front). Objects with dents of their own (stars, crosses, rings) are left as they are seen,
since no convex completion fits them. An object that shows no dent (a tip sticking out from
behind another, or one hidden whole) cannot be told from one that merely touches the other,
and stays as it is seen.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lcvg_env.control.checks import _require_masks
from lcvg_env.control.components import _neighbour_max

__all__ = ["COMPLETION_REACH", "CONVEX_TOLERANCE", "DEPTH_MARGIN_PX", "HULL_DIRECTIONS",
           "NONCONVEX_SHARE", "Occlusion", "beyond_frame", "convex_hulls", "infer_occlusion"]

HULL_DIRECTIONS = 16
"""Directions (over half a turn) whose extents bound :func:`convex_hulls`' polygons: a hull
with 32 sides, within 0.5 % of a circle's radius; the completion of a hidden part is bounded
along the same 32 directions."""
DEPTH_MARGIN_PX = 2
"""Pixels by which one object's share of the other's hull must exceed the reverse for it to
count as in front (rim pixels on both sides of a mere contact cancel)."""
CONVEX_TOLERANCE = 0.1
"""An object behind others is completed only if its hull, away from them (1 px margin), holds
less than this fraction of its area outside its own mask (rasterised convex shapes and M's
ragged rims stay well below it; stars and crosses are far above)."""
COMPLETION_REACH = 1.0
"""A completed pixel lies no farther from any pixel of its object than this many times the
object's visible width. On M's objects in 4,000 unseen twin scenes (``benchmarks.occlusion``,
seeds 30000 and 50000) the completed back objects' IoU with the true whole objects rises from
0.742 / 0.749 (varied) and 0.776 / 0.772 (classic) without it to 0.816 / 0.831 and 0.840 /
0.840; 1.5 gives 0.750 and 0.789, 0.9 0.812 (varied), on seed 30000."""
NONCONVEX_SHARE = 0.5
"""Weight of the share of a convex object inside the hull of one that is not (a star's hull
holds the wedges between its arms, whatever lies there): on M's objects in 4,000 unseen twin
scenes per style, pairs put in the right order 1,080 -> 1,099 of 1,342 (``benchmarks.
occlusion``; counted pair by pair, 0.5 gained 23, 0.75 19, 0.35 17)."""


class Occlusion(NamedTuple):
    """What :func:`infer_occlusion` returns (all on the masks' device)."""

    objects: Tensor
    """(B, K, H, W) {0, 1} the objects with their hidden parts added."""
    hidden: Tensor
    """(B, K, H, W) {0, 1} the added parts (``objects`` less the visible masks)."""
    depth: Tensor
    """(B, K) int64 object indices from front to back."""


def convex_hulls(masks: Tensor, directions: int = HULL_DIRECTIONS) -> Tensor:
    """Convex hull of each mask's pixel centres, as a mask.

    Args:
        masks: (B, K, H, W) {0, 1}.
        directions: the hull is the polygon bounded, along each of this many directions
            spread over half a turn, by the extent of the mask's pixel centres (at least 2).

    Returns:
        (B, K, H, W) {0, 1} in the masks' dtype: the pixels whose centres lie inside it (empty
        for an empty mask; a mask is always inside its hull).
    """
    masks = _require_masks("masks", masks)
    if isinstance(directions, bool) or not isinstance(directions, int) or directions < 2:
        raise ValueError(f"directions must be an int >= 2, got {directions!r}")
    on = masks > 0.5
    inside = on.any(dim=(-2, -1), keepdim=True).expand_as(on).clone()
    for d in range(directions):  # one direction at a time: (B, K, H, W) at most in memory
        along = _along(math.pi * d / directions, masks)
        low = torch.where(on, along, torch.inf).amin(dim=(-2, -1), keepdim=True)
        high = torch.where(on, along, -torch.inf).amax(dim=(-2, -1), keepdim=True)
        inside &= (along >= low - 1e-3) & (along <= high + 1e-3)
    return inside.to(masks.dtype)


def _along(angle: float, masks: Tensor) -> Tensor:
    """(H, W) each pixel centre's coordinate along the direction ``angle`` (radians from x)."""
    h, w = masks.shape[-2:]
    ys = torch.arange(h, device=masks.device, dtype=torch.float32)[:, None]
    xs = torch.arange(w, device=masks.device, dtype=torch.float32)[None, :]
    return math.cos(angle) * xs + math.sin(angle) * ys


def _grown(masks: Tensor) -> Tensor:
    """(B, K, H, W) masks grown by one pixel (3x3 neighbourhood), each channel on its own."""
    return _neighbour_max(masks, 8)


def infer_occlusion(objects: Tensor, margin: float = DEPTH_MARGIN_PX,
                    tolerance: float = CONVEX_TOLERANCE) -> Occlusion:
    """Depth order of touching objects and the hidden parts of convex objects behind others.

    Object k is behind object j when more pixels of j lie inside k's convex hull than of k
    inside j's, by more than ``margin`` (pixels inside the hull of an object that does not
    look convex, beside one that does, count :data:`NONCONVEX_SHARE`). Objects are ordered
    front to back by how many others they are behind (ties, and objects that touch nothing,
    keep their index order: index 0 in front). An object behind others whose hull, one pixel
    or more away from every other object, adds less than ``tolerance`` of its area (it looks
    convex where it can be seen whole) gets the pixels of the objects in front of it that lie
    inside every bound of its own outline (:func:`_outline_bounds`) and no farther from any of
    its pixels than it is wide (:func:`_within_reach`).

    Args:
        objects: (B, K, H, W) {0, 1} disjoint visible masks of K objects (empty: absent).
        margin: pixels, see above.
        tolerance: see above.

    Returns:
        An :class:`Occlusion`. With K = 1 the objects come back as they are.
    """
    objects = _require_masks("objects", objects)
    b, k = objects.shape[:2]
    order = torch.arange(k, device=objects.device).expand(b, k)
    if k == 1:
        return Occlusion(objects, torch.zeros_like(objects), order.clone())
    hulls = convex_hulls(objects)
    convex = _looks_convex(objects, hulls, tolerance)
    share = torch.einsum("bkhw,bjhw->bkj", hulls, objects)  # pixels of j inside k's hull
    share = share.masked_fill(torch.eye(k, dtype=torch.bool, device=objects.device), 0.0)
    # a star's hull takes in what lies between its arms, in front or not
    own_dents = ~convex[:, :, None] & convex[:, None, :]
    share = torch.where(own_dents, NONCONVEX_SHARE * share, share)
    behind = share > share.transpose(1, 2) + margin  # (B, K, K): k behind j
    fronts = behind.sum(dim=2)  # how many objects each is behind
    depth = (fronts * k + order).argsort(dim=1)
    in_front = torch.einsum("bkj,bjhw->bkhw", behind.to(objects.dtype), objects).clamp(max=1.0)
    extents = _full_turn(objects)
    bounded = _outline_bounds(objects, in_front, extents) * _within_reach(objects, extents)
    hidden = in_front * bounded * convex[:, :, None, None]
    return Occlusion(torch.maximum(objects, hidden), hidden, depth)


def _looks_convex(objects: Tensor, hulls: Tensor, tolerance: float) -> Tensor:
    """Whether each object looks convex: (B, K) bool.

    True where its hull (``hulls``: :func:`convex_hulls` of ``objects``), a pixel or more away
    from the other objects, adds less than ``tolerance`` of its area to it.
    """
    others = objects.sum(dim=1, keepdim=True) - objects
    dents = hulls * (1.0 - objects) * (1.0 - _grown(others))
    return dents.sum(dim=(2, 3)) < tolerance * objects.sum(dim=(2, 3))


def beyond_frame(objects: Tensor, pad: int, tolerance: float = CONVEX_TOLERANCE) -> Tensor:
    """Complete objects cut by the frame's edge beyond it, on a canvas larger than the frame.

    The frame's edge hides what lies past it as an object in front does: a convex object it
    cuts is completed past it as :func:`infer_occlusion` completes one behind another, up to
    every line that bounds the outline it shows itself and no farther from any of its pixels
    than it is wide (objects that do not look convex, and objects that do not reach the
    edge, get nothing).

    Args:
        objects: (B, K, H, W) {0, 1} masks (each object whole as far as the frame shows it).
        pad: pixels of canvas added on every side (>= 0).
        tolerance: see :func:`infer_occlusion`.

    Returns:
        (B, K, H + 2 pad, W + 2 pad) {0, 1} in the masks' dtype: the completed parts, zero
        inside the frame (which sits at ``[pad:pad + H, pad:pad + W]``).
    """
    objects = _require_masks("objects", objects)
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an int >= 0, got {pad!r}")
    padded = F.pad(objects, (pad, pad, pad, pad))
    if pad == 0:
        return torch.zeros_like(padded)
    outside = torch.ones_like(padded[:1, :1])
    outside[..., pad:-pad, pad:-pad] = 0.0
    convex = _looks_convex(objects, convex_hulls(objects), tolerance)
    extents = _full_turn(padded)
    bounded = _outline_bounds(padded, outside.expand_as(padded), extents) * _within_reach(
        padded, extents)
    return outside * bounded * convex[:, :, None, None]


def _full_turn(objects: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Coordinates along each of ``2 * HULL_DIRECTIONS`` directions over a full turn.

    Returns:
        One (along, high) pair per direction: each pixel centre's coordinate (H, W) and each
        object's largest (B, K, 1, 1; -inf for an empty mask).
    """
    on = objects > 0.5
    turn = 2 * HULL_DIRECTIONS
    extents = []
    for d in range(turn):
        along = _along(2.0 * math.pi * d / turn, objects)
        extents.append((along, torch.where(on, along, -torch.inf).amax(dim=(-2, -1),
                                                                           keepdim=True)))
    return extents


def _within_reach(objects: Tensor, extents: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Pixels within :data:`COMPLETION_REACH` widths of every pixel of an object.

    The width is the object's largest extent over the directions of ``extents``
    (:func:`_full_turn`), with half a pixel to spare. A completion inside it is no wider than
    what is seen: an object that shows a sliver is not grown across the whole object in front
    of it.

    Args:
        objects: (B, K, H, W) {0, 1} visible masks.
        extents: :func:`_full_turn` of ``objects``.

    Returns:
        (B, K, H, W) {0, 1} in the masks' dtype (every pixel for an empty mask).
    """
    farthest = torch.full_like(objects, -torch.inf)  # to the farthest pixel of the object
    for along, high in extents:
        farthest = torch.maximum(farthest, high - along)
    # the farthest any two of its pixels lie apart
    width = torch.where(objects > 0.5, farthest, -torch.inf).amax(dim=(-2, -1), keepdim=True)
    return (farthest <= COMPLETION_REACH * width + 0.5).to(objects.dtype)


def _outline_bounds(objects: Tensor, in_front: Tensor,
                    extents: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Pixels on the inner side of every line that bounds an object's outline by itself.

    Along each direction of ``extents`` (:func:`_full_turn`) the object's outermost pixels give
    a supporting line; it bounds the object only where one of those pixels lies more than a
    pixel from ``in_front`` (else that stretch of the outline is the front object's edge, and
    the object may go on behind it).

    Args:
        objects: (B, K, H, W) {0, 1} visible masks.
        in_front: (B, K, H, W) {0, 1} for each object, the objects in front of it.
        extents: :func:`_full_turn` of ``objects``.

    Returns:
        (B, K, H, W) {0, 1} in the masks' dtype (every pixel for an empty mask).
    """
    on = objects > 0.5
    free = on & (_grown(in_front) < 0.5)
    inside = torch.ones_like(on)
    for along, high in extents:
        outermost = along >= high - 0.05  # ties only: the edge of an axis-aligned side
        bounds = (free & outermost).any(dim=(-2, -1), keepdim=True)
        inside &= (along <= high + 1e-3) | ~bounds
    return inside.to(objects.dtype)
