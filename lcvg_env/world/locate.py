"""Find the objects of a twin world in a frame that claims to show them, by their true colours.

A learned simulator's frame has no labels; the twin (``lcvg_env.world.twin``) knows every
object's colour, visible mask and position, so the object can be looked for in the frame by its
colour. Used by the paired evaluation (``training.paired_metrics``) and by anything that must
confirm from the frame that an object is where a simulator says it is (the demo).

The generated frame has no labels, so object k is looked for BY ITS TRUE COLOURS:

1. its reference colours ``c_k`` are the colours of its visible pixels in the true frame of this
   step (the twin's visible mask): for an object of one colour, the mean of them; for a
   bordered, many-coloured or strongly patterned one, a palette of up to four colours
   (``lcvg_env.world.palette``);
2. a generated pixel is a *candidate* for k when its RGB (Euclidean) distance to the nearest of
   ``c_k`` is at most ``tolerance`` (:data:`TOLERANCE`), strictly smaller than its distance to
   the true background pixel there (the twin's object-free frame) and no larger than its
   distance to every other object's reference colours (the other controlled objects and the
   "other" masks) but those k shares with it (within ``tolerance / 2``: a border every object
   has decides nothing between them); a pixel nearest to such a shared colour counts only
   within :data:`SHARED_REACH_PX` of a candidate of a colour k has alone (the border beside
   k's fill, not another object's border where k is not; an object with no colour of its own
   is looked for by all of them); the 8-neighbours of such pixels join them when they are
   also closer to ``c_k`` than to the background and the other colours, whatever their
   distance: an antialiased rim pixel blends the object with what lies behind it, and it is
   closer to the object's colour exactly when the object covers more than half of it (the
   twin's mask rule, coverage > 0.5);
3. the candidates are split into 8-connected components; object k is *found* as the largest
   component whose centroid lies within :data:`SEARCH_RADIUS` x max(H, W) pixels of k's true
   visible centroid (empty when no component is that close). Components farther away are
   other things of a similar colour (a ghost left behind, another object).

Coordinates: pixel (x, y) with the centre of pixel (row i, column j) at (j, i), as
``lcvg_env.control`` and the environments' ``centroids_px``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lcvg_env.world.masks import dilate
from lcvg_env.world.palette import reference_colours

__all__ = [
    "SEARCH_RADIUS",
    "SHARED_REACH_PX",
    "TOLERANCE",
    "check_frames",
    "check_masks",
    "describe",
    "dilate",
    "find_objects",
    "label_components",
    "mask_centroids",
    "object_colours",
]

TOLERANCE = 48.0
"""Largest RGB (Euclidean, 0-255) distance of a generated pixel to an object's reference colour
for it to count as that object's."""
SEARCH_RADIUS = 0.25
"""A found component's centroid must lie within this fraction of max(H, W) of the true one."""
SHARED_REACH_PX = 3
"""A pixel of a colour an object shares with another (a border they both have) counts for it
only within this many pixels (8-neighbour steps) of a pixel of a colour of its own."""

# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def describe(x: Any) -> str:
    """Short description of a received value for error messages."""
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} dtype {x.dtype}"
    return f"{type(x).__name__} {x!r:.60}"


def check_frames(name: str, x: Any, batch: tuple[int, ...] | None = None) -> np.ndarray:
    """Check uint8 frames (..., H, W, 3)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be a uint8 array (..., H, W, 3), got {describe(x)}")
    if batch is not None and x.shape[:-1] != batch:
        raise ValueError(f"{name} must have shape {(*batch, 3)}, got {x.shape}")
    return x


def check_masks(name: str, x: Any, lead: tuple[int, ...], hw: tuple[int, int]) -> np.ndarray:
    """Check bool masks (*lead, M, H, W) (M may be 0); returns them as bool."""
    if not isinstance(x, np.ndarray) or x.ndim != len(lead) + 3:
        raise ValueError(
            f"{name} must be a bool array {(*lead, 'M', *hw)}, got {describe(x)}"
        )
    if x.shape[: len(lead)] != lead or x.shape[-2:] != hw:
        raise ValueError(f"{name} must have shape {(*lead, 'M', *hw)}, got {x.shape}")
    if x.dtype != np.bool_:
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"{name} must be bool (or 0/1 numbers), got {describe(x)}")
        if not np.all((x == 0) | (x == 1)):
            raise ValueError(f"{name} must hold only 0 and 1, got values {np.unique(x)[:8]}")
        x = x.astype(bool)
    return x


# --------------------------------------------------------------------------------------------
# image tools
# --------------------------------------------------------------------------------------------


def _max3x3(x: np.ndarray) -> np.ndarray:
    """Maximum over each pixel's 3x3 neighbourhood of (..., H, W) (separable)."""
    rows = x.copy()
    np.maximum(rows[..., 1:, :], x[..., :-1, :], out=rows[..., 1:, :])
    np.maximum(rows[..., :-1, :], x[..., 1:, :], out=rows[..., :-1, :])
    out = rows.copy()
    np.maximum(out[..., :, 1:], rows[..., :, :-1], out=out[..., :, 1:])
    np.maximum(out[..., :, :-1], rows[..., :, 1:], out=out[..., :, :-1])
    return out


def label_components(masks: np.ndarray) -> np.ndarray:
    """Label the 8-connected components of bool masks (..., H, W), all images at once.

    Returns:
        int64 labels of the same shape: 0 off the masks; on them, 1 + the flat index (into the
        whole array) of one pixel of the component, so labels are unique across the batch and
        equal exactly within a component.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim < 2:
        raise ValueError(f"masks must be (..., H, W), got shape {masks.shape}")
    labels = np.where(masks, np.arange(1, masks.size + 1).reshape(masks.shape), 0)
    while True:
        grown = np.where(masks, _max3x3(labels), 0)
        # pointer jumping: a pixel takes the label its label's pixel now holds (labels only
        # grow and stay inside their component), so long components converge in few rounds
        g = grown.reshape(-1)
        on = g > 0
        g[on] = np.maximum(g[on], g[g[on] - 1])
        if np.array_equal(grown, labels):
            return labels
        labels = grown


def mask_centroids(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroids (..., 2) pixel (x, y) and areas (...) of masks (..., H, W); NaN where empty."""
    masks = np.asarray(masks, dtype=bool)
    h, w = masks.shape[-2:]
    area = masks.sum(axis=(-2, -1)).astype(np.float64)
    xs = (masks.sum(axis=-2) * np.arange(w)).sum(axis=-1)
    ys = (masks.sum(axis=-1) * np.arange(h)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroids = np.stack([xs / area, ys / area], axis=-1)
    centroids[area == 0] = np.nan
    return centroids, area


def object_colours(
    true: np.ndarray,
    true_masks: np.ndarray,
    other_masks: np.ndarray,
    background: np.ndarray,
    tolerance: float = TOLERANCE,
) -> np.ndarray:
    """Return the reference colours :func:`find_objects` looks for (rule 1 of the module doc).

    Returns:
        float64 (B, K + M, P, 3): the controlled objects, then the others; NaN in unused slots.
    """
    t = check_frames("true", true)
    if t.ndim != 4:
        raise ValueError(f"true must be (B, H, W, 3), got shape {t.shape}")
    b, h, w, _ = t.shape
    bg = check_frames("background", background, (b, h, w))
    vis = check_masks("true_masks", true_masks, (b,), (h, w))
    other = check_masks("other_masks", other_masks, (b,), (h, w))
    return reference_colours(t, np.concatenate([vis, other], axis=1), bg, float(tolerance))


def find_objects(
    generated: np.ndarray,
    true: np.ndarray,
    true_masks: np.ndarray,
    other_masks: np.ndarray,
    background: np.ndarray,
    tolerance: float = TOLERANCE,
    search_radius: float = SEARCH_RADIUS,
    references: np.ndarray | None = None,
) -> np.ndarray:
    """Find the controlled objects in generated frames by their true colours.

    See the module docstring for the rule.

    Args:
        generated: uint8 (B, H, W, 3) generated frames.
        true: uint8 (B, H, W, 3) true frames of the same steps.
        true_masks: bool (B, K, H, W) true visible masks of the controlled objects.
        other_masks: bool (B, M, H, W) true visible masks of every other object (M may be 0).
        background: uint8 (B, H, W, 3) true object-free frames.
        tolerance: largest RGB distance to the reference colour (default :data:`TOLERANCE`).
        search_radius: fraction of max(H, W) (default :data:`SEARCH_RADIUS`).
        references: the objects' reference colours when already known (several systems
            scored against the same truth): what :func:`object_colours` returns for these
            arguments.

    Returns:
        bool (B, K, H, W) found masks (empty where not found or not visible in truth).
    """
    g = check_frames("generated", generated)
    if g.ndim != 4:
        raise ValueError(f"generated must be (B, H, W, 3), got shape {g.shape}")
    b, h, w, _ = g.shape
    t = check_frames("true", true, (b, h, w))
    bg = check_frames("background", background, (b, h, w))
    vis = check_masks("true_masks", true_masks, (b,), (h, w))
    other = check_masks("other_masks", other_masks, (b,), (h, w))
    if not float(tolerance) > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    if not float(search_radius) > 0:
        raise ValueError(f"search_radius must be > 0, got {search_radius!r}")
    k = vis.shape[1]
    if references is None:
        refs = object_colours(t, vis, other, bg, tolerance)
    else:
        refs = np.asarray(references, dtype=np.float64)
        if refs.ndim != 4 or refs.shape[:2] != (b, k + other.shape[1]) or refs.shape[3] != 3:
            raise ValueError(f"references must be (B, K + M, P, 3) = ({b}, {k + other.shape[1]}, "
                             f"P, 3) as object_colours returns, got {describe(references)}")
    gf = g.astype(np.float32)
    slots = np.linalg.norm(
        gf[:, None, None] - refs[:, :, :, None, None].astype(np.float32), axis=-1)
    slots = np.where(np.isnan(slots), np.inf, slots)  # (B, K+M, P, H, W)
    dist = slots.min(axis=2)  # (B, K+M, H, W): to the nearest colour of each object
    d_bg = np.linalg.norm(gf - bg.astype(np.float32), axis=-1)  # (B, H, W)
    closer = np.zeros((b, k, h, w), dtype=bool)
    by_shared = np.zeros((b, k, h, w), dtype=bool)  # nearest to a colour j shares
    for j in range(k):
        # another object's colour decides against j only where j does not share it (a
        # border every object has in common decides nothing between them)
        same = np.nan_to_num(np.linalg.norm(refs[:, :, :, None] - refs[:, j, None, None],
                                            axis=-1), nan=np.inf) <= float(tolerance) / 2
        shared = same.any(axis=-1)  # (B, K+M, P): colours of each object that j has too
        rivals = np.where(shared[..., None, None], np.inf, slots)  # (B, K+M, P, H, W)
        nearest_other = np.delete(rivals, j, axis=1).min(axis=(1, 2), initial=np.inf)
        closer[:, j] = (dist[:, j] < d_bg) & (dist[:, j] <= nearest_other)
        common = np.delete(same, j, axis=1).any(axis=(1, 2))  # (B, P): j's colours shared
        own = ~np.isnan(refs[:, j, :, 0]) & ~common
        nearest_own = np.where(own[..., None, None], slots[:, j], np.inf).min(axis=1)
        # an object all of whose colours others have too is looked for by all of them
        by_shared[:, j] = (nearest_own > dist[:, j]) & own.any(axis=1)[:, None, None]
    core = closer & (dist[:, :k] <= tolerance)
    # a shared colour counts for j only beside j's own colours: its border next to its fill,
    # not another object's border where j is not
    core &= ~by_shared | dilate(core & ~by_shared, SHARED_REACH_PX)
    candidates = core | (dilate(core, 1) & closer)  # + the antialiased rim (see module doc)
    labels = label_components(candidates)  # (B, K, H, W), unique across the batch
    flat = labels.reshape(-1)
    on = flat > 0
    ids, inverse, counts = np.unique(flat[on], return_inverse=True, return_counts=True)
    found = np.zeros_like(candidates)
    if ids.size == 0:
        return found
    rows, cols = np.divmod(np.flatnonzero(on) % (h * w), w)
    cx = np.bincount(inverse, weights=cols, minlength=ids.size) / counts
    cy = np.bincount(inverse, weights=rows, minlength=ids.size) / counts
    owner = (ids - 1) // (h * w)  # (b * K + k) of each component
    true_c, _ = mask_centroids(vis)  # (B, K, 2)
    tc = true_c.reshape(-1, 2)[owner]
    reach = float(search_radius) * max(h, w)
    with np.errstate(invalid="ignore"):
        near = np.hypot(cx - tc[:, 0], cy - tc[:, 1]) <= reach  # NaN (invisible) -> False
    best = np.full(b * k, -1, dtype=np.int64)
    best_area = np.zeros(b * k, dtype=np.int64)
    for index in np.flatnonzero(near):  # a handful of components per object
        slot = owner[index]
        if counts[index] > best_area[slot]:
            best_area[slot], best[slot] = counts[index], ids[index]
    chosen = best.reshape(b, k)
    found = (labels == chosen[:, :, None, None]) & (chosen[:, :, None, None] > 0)
    return found
