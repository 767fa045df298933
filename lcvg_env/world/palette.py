"""Reference colours of the twin's objects: the colours the locator looks for in a frame.

An object of one colour (shaded, lightly textured, antialiased at its rim) is looked for by one
colour, the mean of its visible true pixels. An object of several colours (a dark border round a
bright fill, two-tone, strongly patterned) matches no single colour: it gets a *palette*.

:func:`reference_colours` builds each object's palette from its visible true pixels:

1. the edge pixels (those next to a pixel off the mask) that are only a blend ``a c + (1 - a) s
   b`` of the mean colour c of the inner (not edge) pixels with the object-free background b,
   darkened by a shadow (s in :data:`SHADES`), to within :data:`BLEND_RESIDUAL`, are left out:
   antialiasing, not a colour of the object; so are edge pixels next to another object (they
   blend the two). An object of fewer than :data:`MIN_COLOUR_PIXELS` inner pixels keeps all;
2. the rest are cut in two along their principal colour axis at the cut that sets the two
   sides' means farthest apart for their sizes (Otsu's rule), and each side again, while the two
   halves' means lie more than ``split_distance`` apart (the locator's tolerance: colours
   farther apart than it cannot both be matched by one), up to :data:`MAX_COLOURS` colours of at
   least :data:`MIN_COLOUR_PIXELS` pixels each;
3. a palette of one colour is the mean of every visible pixel, rim included (the rule the paired
   evaluation has always used for such objects).
"""

from __future__ import annotations

import numpy as np

from lcvg_env.world.masks import dilate

__all__ = ["BLEND_RESIDUAL", "MAX_COLOURS", "MIN_COLOUR_PIXELS", "SHADES", "reference_colours"]

MAX_COLOURS = 4
"""Most reference colours an object gets."""
MIN_COLOUR_PIXELS = 3
"""Fewest true pixels a reference colour stands for."""
BLEND_RESIDUAL = 12.0
"""RGB distance (0-255) within which an edge pixel counts as a blend of the object with what is
behind it."""
SHADES = np.linspace(0.5, 1.0, 11)
"""Darkenings of the object-free background tried for a blend (a shadow may lie under the rim)."""


def _cuts(colours: np.ndarray, own: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Otsu's cut of each of N pixel sets along its principal colour axis, all at once.

    Args:
        colours: float (N, n, 3); set i is ``colours[i][own[i]]``.
        own: bool (N, n).

    Returns:
        (order, size, apart): int (N, n) the pixels sorted along the axis (the set's own
        first), int (N,) how many of them form the first side (0 where no cut leaves
        :data:`MIN_COLOUR_PIXELS` on both sides), float (N,) the distance between the two
        sides' mean colours.
    """
    count = own.sum(axis=1)
    weights = own[..., None].astype(np.float64)
    total = (colours * weights).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = (colours - (total / count[:, None])[:, None]) * weights
    _, axes = np.linalg.eigh(np.einsum("nic,nid->ncd", centred, centred))
    along = np.where(own, np.einsum("nic,nc->ni", centred, axes[:, :, -1]), np.inf)
    order = np.argsort(along, axis=1, kind="stable")
    left = np.cumsum(np.take_along_axis(colours, order[..., None], 1), axis=1)[:, :-1]
    sizes = np.arange(1, colours.shape[1], dtype=np.float64)[None]  # of the first side
    rest = count[:, None] - sizes
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = left / sizes[..., None] - (total[:, None] - left) / rest[..., None]
    between = sizes * rest * (gap**2).sum(axis=-1)
    between[(sizes < MIN_COLOUR_PIXELS) | (rest < MIN_COLOUR_PIXELS)] = -1.0
    cut = np.argmax(between, axis=1)
    valid = np.take_along_axis(between, cut[:, None], 1)[:, 0] >= 0
    apart = np.linalg.norm(np.take_along_axis(gap, cut[:, None, None], 1)[:, 0], axis=-1)
    return order, np.where(valid, cut + 1, 0), np.where(valid, apart, 0.0)


def _palette(x: np.ndarray, split_distance: float) -> np.ndarray:
    """Colours (P, 3), 1 <= P <= MAX_COLOURS, of colours x (n, 3): rule 2 of the module doc."""
    pending: list[np.ndarray] = [x]
    kept: list[np.ndarray] = []
    while pending and len(pending) + len(kept) < MAX_COLOURS:
        colours = pending.pop(0)
        mean = colours.mean(axis=0)
        # the means of any two parts lie within the largest distance to the mean of it, so
        # colours within half the split distance of their mean never split (the common case)
        if np.sqrt(((colours - mean) ** 2).sum(axis=1).max()) * 2 <= split_distance:
            kept.append(colours)
            continue
        order, size, apart = _cuts(colours[None], np.ones((1, len(colours)), dtype=bool))
        if apart[0] <= split_distance:
            kept.append(colours)
        else:
            ordered = colours[order[0]]
            pending += [ordered[: size[0]], ordered[size[0]:]]
    return np.stack([c.mean(axis=0) for c in kept + pending])


def _blends(pixels: np.ndarray, behind: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Return (n,) bool: which pixels (n, 3) blend one of their ``colours`` (n, P, 3).

    A blend is with the pixel's shaded background ``behind`` (n, 3): rule 1 of the module doc.
    """
    shaded = SHADES[:, None, None, None] * behind[None, :, None]  # (S, n, 1, 3)
    towards = colours[None] - shaded  # (S, n, P, 3)
    offset = pixels[None, :, None] - shaded
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.clip((offset * towards).sum(-1) / (towards**2).sum(-1), 0.0, 1.0)
    residual = np.linalg.norm(offset - np.nan_to_num(share)[..., None] * towards, axis=-1)
    return np.nan_to_num(residual, nan=np.inf).min(axis=(0, 2)) <= BLEND_RESIDUAL


def reference_colours(
    true: np.ndarray, masks: np.ndarray, background: np.ndarray, split_distance: float
) -> np.ndarray:
    """Each object's palette (module docstring).

    Args:
        true: uint8 (B, H, W, 3) true frames.
        masks: bool (B, M, H, W) visible masks of every object of those frames.
        background: uint8 (B, H, W, 3) the object-free frames.
        split_distance: RGB distance (0-255) beyond which two parts are two colours.

    Returns:
        float64 (B, M, P, 3), P the largest palette of the batch (at least 1); NaN in a
        palette's unused slots and for an object with no visible pixel.
    """
    b, m, h, w = masks.shape
    pixels, behind = true.astype(np.float64), background.astype(np.float64)

    def mean(where: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.einsum("bmhw,bhwc->bmc", where.astype(np.float64), pixels) / (
                where.sum(axis=(-2, -1))[..., None])

    refs = np.full((b, m, MAX_COLOURS, 3), np.nan)
    refs[:, :, 0] = mean(masks)  # rule 3, and NaN where a mask is empty
    inner = masks & ~dilate(~masks, 1)
    grown = dilate(masks, 1)
    near_other = grown.sum(axis=1, dtype=np.int64)[:, None] - grown > 0  # (B, M, H, W)
    edge = masks & ~inner & ~near_other
    big = inner.sum(axis=(-2, -1)) >= MIN_COLOUR_PIXELS  # else every visible pixel counts
    inner_mean = mean(inner)
    at = np.nonzero(edge & big[..., None, None])  # (b, m, y, x) of the edge pixels tested
    blend = np.zeros_like(masks)
    blend[at] = _blends(pixels[at[0], at[2], at[3]], behind[at[0], at[2], at[3]],
                        inner_mean[at[0], at[1]][:, None])
    own = np.where(big[..., None, None], (inner | edge) & ~blend, masks)  # rule 1

    # rule 2's first cut of every object at once (each object's own pixels packed into a
    # row); only the objects it splits go on to their palettes
    present = np.flatnonzero(own.any(axis=(-2, -1)))
    rows, places = np.nonzero(own.reshape(b * m, h * w)[present])
    count = np.bincount(rows, minlength=len(present))
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    packed = np.zeros((len(present), int(count.max(initial=0)), 3))
    packed[rows, rank] = pixels.reshape(b, h * w, 3)[present[rows] // m, places]
    filled = np.zeros(packed.shape[:2], dtype=bool)
    filled[rows, rank] = True
    for index in present[_cuts(packed, filled)[2] > split_distance]:
        i, j = divmod(int(index), m)
        palette = _palette(pixels[i][own[i, j]], split_distance)
        refs[i, j, : len(palette)] = palette
    used = max(1, int((~np.isnan(refs[..., 0])).sum(axis=-1).max(initial=0)))
    return refs[:, :, :used]
