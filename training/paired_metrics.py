"""Per-frame, per-object scores of a generated frame against the true frame of a twin world.

Pure numpy. A paired evaluation (``training.paired``) runs the same actions in a world with
true dynamics (the twin, which knows every object's colour, visible mask and position) and in
a learned simulator, and scores each generated frame here against the twin's frame of the same
step.

Finding an object in a generated frame (:func:`find_objects`)
-------------------------------------------------------------
The generated frame has no labels, so object k is looked for BY ITS TRUE COLOUR:

1. its reference colour ``c_k`` is the mean true RGB of its visible pixels in the true frame of
   this step (the twin's visible mask);
2. a generated pixel is a *candidate* for k when its RGB (Euclidean) distance to ``c_k`` is at
   most ``tolerance`` (:data:`TOLERANCE`), strictly smaller than its distance to the true
   background pixel there (the twin's object-free frame) and no larger than its distance to
   every other object's reference colour (the other controlled objects and the "other" masks);
   the 8-neighbours of such pixels join them when they are also closer to ``c_k`` than to the
   background and the other colours, whatever their distance: an antialiased rim pixel blends
   the object with what lies behind it, and it is closer to the object's colour exactly when
   the object covers more than half of it (the twin's mask rule, coverage > 0.5);
3. the candidates are split into 8-connected components; object k is *found* as the largest
   component whose centroid lies within :data:`SEARCH_RADIUS` x max(H, W) pixels of k's true
   visible centroid (empty when no component is that close). Components farther away are
   other things of a similar colour (a ghost left behind, another object).

Per object (arrays (..., K); NaN where the true object has no visible pixel, which is then not
scored and is counted as not ``visible``): ``hit`` (found area >= :data:`HIT_FRACTION` x true
visible area), ``position_error_px`` (found centroid vs true visible centroid, pixels; NaN when
missed), ``apart`` (the true mask dilated by :data:`APART_MARGIN_PX` px touches no other object's
mask), ``shape_iou`` (found vs true visible mask, 0 when missed), ``colour_error`` (mean
absolute RGB error, 0-255, of the generated pixels over the TRUE visible mask: an object drawn
elsewhere or not at all scores high), ``size_ratio`` (found area / true visible area) and, when
the simulator's own centroids are given, ``sim_position_error_px``. Per frame: ``psnr``,
``ssim`` (:func:`ssim`) and ``background_psnr`` (over pixels outside every true object mask and
outside every found mask).

Coordinates: pixel (x, y) with the centre of pixel (row i, column j) at (j, i), as
``lcvg_env.control`` and the environments' ``centroids_px``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "APART_MARGIN_PX",
    "HIT_FRACTION",
    "OBJECT_METRICS",
    "FRAME_METRICS",
    "PSNR_CAP_DB",
    "SEARCH_RADIUS",
    "TOLERANCE",
    "dilate",
    "find_objects",
    "label_components",
    "mask_centroids",
    "psnr",
    "score_frame",
    "score_frames",
    "ssim",
]

TOLERANCE = 48.0
"""Largest RGB (Euclidean, 0-255) distance of a generated pixel to an object's reference colour
for it to count as that object's."""
HIT_FRACTION = 0.3
"""An object is hit when its found area is at least this fraction of its true visible area."""
SEARCH_RADIUS = 0.25
"""A found component's centroid must lie within this fraction of max(H, W) of the true one."""
APART_MARGIN_PX = 2
"""An object is "apart" when its true mask dilated by this many pixels (8-neighbourhood steps,
a (2m+1)-square) touches no other object's visible mask."""
PSNR_CAP_DB = 100.0
"""PSNR of identical images (and the largest PSNR reported)."""
SSIM_WINDOW = 11
"""Side of the Gaussian SSIM window (standard deviation :data:`SSIM_SIGMA`)."""
SSIM_SIGMA = 1.5
"""Standard deviation in pixels of the SSIM window."""
OBJECT_METRICS = (
    "visible",
    "hit",
    "position_error_px",
    "apart",
    "shape_iou",
    "colour_error",
    "size_ratio",
    "found_area",
    "true_area",
    "sim_position_error_px",
)
"""Keys of the per-object arrays of :func:`score_frames`."""
FRAME_METRICS = ("psnr", "ssim", "background_psnr")
"""Keys of the per-frame arrays of :func:`score_frames`."""


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} dtype {x.dtype}"
    return f"{type(x).__name__} {x!r:.60}"


def _frames(name: str, x: Any, batch: tuple[int, ...] | None = None) -> np.ndarray:
    """Check uint8 frames (..., H, W, 3)."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"{name} must be a uint8 array (..., H, W, 3), got {_describe(x)}")
    if batch is not None and x.shape[:-1] != batch:
        raise ValueError(f"{name} must have shape {(*batch, 3)}, got {x.shape}")
    return x


def _masks(name: str, x: Any, lead: tuple[int, ...], hw: tuple[int, int]) -> np.ndarray:
    """Check bool masks (*lead, M, H, W) (M may be 0); returns them as bool."""
    if not isinstance(x, np.ndarray) or x.ndim != len(lead) + 3:
        raise ValueError(
            f"{name} must be a bool array {(*lead, 'M', *hw)}, got {_describe(x)}"
        )
    if x.shape[: len(lead)] != lead or x.shape[-2:] != hw:
        raise ValueError(f"{name} must have shape {(*lead, 'M', *hw)}, got {x.shape}")
    if x.dtype != np.bool_:
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
            raise ValueError(f"{name} must be bool (or 0/1 numbers), got {_describe(x)}")
        if not np.all((x == 0) | (x == 1)):
            raise ValueError(f"{name} must hold only 0 and 1, got values {np.unique(x)[:8]}")
        x = x.astype(bool)
    return x


# --------------------------------------------------------------------------------------------
# image tools
# --------------------------------------------------------------------------------------------


def dilate(masks: np.ndarray, steps: int) -> np.ndarray:
    """Dilate bool masks (..., H, W) by ``steps`` 8-neighbourhood steps (a (2s+1)-square)."""
    out = np.asarray(masks, dtype=bool)
    for _ in range(int(steps)):
        grown = out.copy()
        grown[..., 1:, :] |= out[..., :-1, :]
        grown[..., :-1, :] |= out[..., 1:, :]
        rows = grown.copy()
        rows[..., :, 1:] |= grown[..., :, :-1]
        rows[..., :, :-1] |= grown[..., :, 1:]
        out = rows
    return out


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


def psnr(generated: np.ndarray, true: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """PSNR in dB (peak 255) of uint8 frames (..., H, W, 3), optionally over bool (..., H, W).

    Identical pixels give :data:`PSNR_CAP_DB` (and nothing above it is reported); NaN where
    ``where`` selects no pixel.
    """
    g = _frames("generated", generated)
    t = _frames("true", true, g.shape[:-1])
    err = (g.astype(np.float64) - t.astype(np.float64)) ** 2  # (..., H, W, 3)
    if where is None:
        mse = err.mean(axis=(-3, -2, -1))
    else:
        where = np.asarray(where, dtype=bool)
        if where.shape != g.shape[:-1]:
            raise ValueError(f"where must have shape {g.shape[:-1]}, got {where.shape}")
        count = where.sum(axis=(-2, -1)) * 3.0
        with np.errstate(invalid="ignore", divide="ignore"):
            mse = (err * where[..., None]).sum(axis=(-3, -2, -1)) / count
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 10.0 * np.log10(255.0**2 / mse)
    return np.where(np.isnan(mse), np.nan, np.minimum(value, PSNR_CAP_DB))


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of (..., H, W) with the 1-D ``window`` on both axes."""
    n = window.size
    h, w = x.shape[-2:]
    rows = sum(window[i] * x[..., i : h - n + 1 + i, :] for i in range(n))
    return sum(window[i] * rows[..., :, i : w - n + 1 + i] for i in range(n))


def ssim(generated: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Structural similarity of uint8 frames (..., H, W, 3) -> (...).

    Wang et al. (2004): an 11x11 Gaussian window of standard deviation 1.5 (valid positions
    only), C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, computed per RGB channel and averaged
    over the channels and the positions. Frames smaller than the window use a window of their
    smaller side (odd). Identical frames give 1.
    """
    g = _frames("generated", generated)
    t = _frames("true", true, g.shape[:-1])
    h, w = g.shape[-3:-1]
    size = min(SSIM_WINDOW, h, w)
    size = size if size % 2 == 1 else size - 1
    window = _gaussian_window(size)
    x = np.moveaxis(g.astype(np.float64), -1, -3)  # (..., 3, H, W)
    y = np.moveaxis(t.astype(np.float64), -1, -3)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    mx, my = _filter_valid(x, window), _filter_valid(y, window)
    sxx = _filter_valid(x * x, window) - mx * mx
    syy = _filter_valid(y * y, window) - my * my
    sxy = _filter_valid(x * y, window) - mx * my
    value = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return value.mean(axis=(-3, -2, -1))


# --------------------------------------------------------------------------------------------
# objects
# --------------------------------------------------------------------------------------------


def _reference_colours(true: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Mean true RGB (B, M, 3) under masks (B, M, H, W); NaN where a mask is empty."""
    area = masks.sum(axis=(-2, -1)).astype(np.float64)  # (B, M)
    total = np.einsum("bmhw,bhwc->bmc", masks.astype(np.float64), true.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / area[..., None]


def find_objects(
    generated: np.ndarray,
    true: np.ndarray,
    true_masks: np.ndarray,
    other_masks: np.ndarray,
    background: np.ndarray,
    tolerance: float = TOLERANCE,
    search_radius: float = SEARCH_RADIUS,
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

    Returns:
        bool (B, K, H, W) found masks (empty where not found or not visible in truth).
    """
    g = _frames("generated", generated)
    if g.ndim != 4:
        raise ValueError(f"generated must be (B, H, W, 3), got shape {g.shape}")
    b, h, w, _ = g.shape
    t = _frames("true", true, (b, h, w))
    bg = _frames("background", background, (b, h, w))
    vis = _masks("true_masks", true_masks, (b,), (h, w))
    other = _masks("other_masks", other_masks, (b,), (h, w))
    if not float(tolerance) > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    if not float(search_radius) > 0:
        raise ValueError(f"search_radius must be > 0, got {search_radius!r}")
    k = vis.shape[1]
    refs = _reference_colours(t, np.concatenate([vis, other], axis=1))  # (B, K+M, 3)
    gf = g.astype(np.float32)
    dist = np.linalg.norm(gf[:, None] - refs[:, :, None, None, :].astype(np.float32), axis=-1)
    dist = np.where(np.isnan(dist), np.inf, dist)  # (B, K+M, H, W)
    d_bg = np.linalg.norm(gf - bg.astype(np.float32), axis=-1)  # (B, H, W)
    closer = np.zeros((b, k, h, w), dtype=bool)
    for j in range(k):
        others = np.delete(dist, j, axis=1)
        nearest_other = others.min(axis=1) if others.shape[1] else np.inf
        closer[:, j] = (dist[:, j] < d_bg) & (dist[:, j] <= nearest_other)
    core = closer & (dist[:, :k] <= tolerance)
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


def score_frames(
    generated: np.ndarray,
    true: np.ndarray,
    true_masks: np.ndarray,
    other_masks: np.ndarray,
    background: np.ndarray,
    sim_centroids_px: np.ndarray | None = None,
    tolerance: float = TOLERANCE,
) -> dict[str, np.ndarray]:
    """Score B generated frames against the true frames of the same steps.

    Args:
        generated: uint8 (B, H, W, 3) generated frames.
        true: uint8 (B, H, W, 3) true frames.
        true_masks: bool (B, K, H, W) true visible masks of the K controlled objects, in the
            order the scores are reported.
        other_masks: bool (B, M, H, W) true visible masks of all other objects (M may be 0).
        background: uint8 (B, H, W, 3) true object-free frames.
        sim_centroids_px: optional float (B, K, 2): the simulator's own pixel centroids of the
            same objects (same order); gives ``sim_position_error_px``.
        tolerance: see :func:`find_objects`.

    Returns:
        Per object, float64 (B, K) arrays :data:`OBJECT_METRICS` (``visible``, ``hit`` and
        ``apart`` as 0/1; NaN where the object is not visible in the true frame, and for
        ``position_error_px`` also where it was missed; ``sim_position_error_px`` NaN when no
        ``sim_centroids_px``); per frame, float64 (B,) :data:`FRAME_METRICS`
        (``background_psnr`` NaN when no background pixel is left); and ``found`` bool
        (B, K, H, W).
    """
    found = find_objects(generated, true, true_masks, other_masks, background, tolerance)
    vis = np.asarray(true_masks, dtype=bool)
    other = np.asarray(other_masks, dtype=bool)
    b, k = vis.shape[:2]
    true_c, true_area = mask_centroids(vis)  # (B, K, 2), (B, K)
    found_c, found_area = mask_centroids(found)
    visible = true_area > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = found_area / true_area
    hit = visible & (found_area >= HIT_FRACTION * true_area) & (found_area > 0)
    err = np.hypot(*(found_c - true_c).transpose(2, 0, 1))
    position = np.where(hit, err, np.nan)
    inter = (found & vis).sum(axis=(-2, -1))
    union = (found | vis).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(hit, inter / np.maximum(union, 1), 0.0)
    diff = np.abs(generated.astype(np.float64) - true.astype(np.float64)).mean(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        colour = np.einsum("bkhw,bhw->bk", vis.astype(np.float64), diff) / true_area
    grown = dilate(vis, APART_MARGIN_PX)  # (B, K, H, W)
    everyone = np.concatenate([vis, other], axis=1)
    apart = np.zeros((b, k), dtype=bool)
    for j in range(k):
        rest = np.delete(everyone, j, axis=1).any(axis=1)  # (B, H, W)
        apart[:, j] = ~(grown[:, j] & rest).any(axis=(-2, -1))
    if sim_centroids_px is None:
        sim_err = np.full((b, k), np.nan)
    else:
        sim = np.asarray(sim_centroids_px, dtype=np.float64)
        if sim.shape != (b, k, 2):
            raise ValueError(
                f"sim_centroids_px must have shape {(b, k, 2)}, got {_describe(sim)}"
            )
        sim_err = np.hypot(*(sim - true_c).transpose(2, 0, 1))
    nan = np.where(visible, 1.0, np.nan)
    objects_anywhere = everyone.any(axis=1) | found.any(axis=1)
    out: dict[str, np.ndarray] = {
        "visible": visible.astype(np.float64),
        "hit": hit * nan,
        "position_error_px": position * nan,
        "apart": apart * nan,
        "shape_iou": iou * nan,
        "colour_error": colour * nan,
        "size_ratio": ratio * nan,
        "found_area": found_area * nan,
        "true_area": true_area * nan,
        "sim_position_error_px": sim_err * nan,
        "psnr": psnr(generated, true),
        "ssim": ssim(generated, true),
        "background_psnr": psnr(generated, true, where=~objects_anywhere),
        "found": found,
    }
    return out


def score_frame(
    generated: np.ndarray,
    true: np.ndarray,
    true_masks: np.ndarray,
    other_masks: np.ndarray,
    background: np.ndarray,
    sim_centroids_px: np.ndarray | None = None,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Score one frame: :func:`score_frames` of a batch of one, unbatched.

    Shapes: frames (H, W, 3), masks (K, H, W) and (M, H, W), ``sim_centroids_px`` (K, 2).
    Returns per-object arrays (K,), per-frame floats and ``found`` (K, H, W).
    """
    for name, x in (("generated", generated), ("true", true), ("background", background)):
        if not isinstance(x, np.ndarray) or x.ndim != 3:
            raise ValueError(f"{name} must be a uint8 array (H, W, 3), got {_describe(x)}")
    for name, x in (("true_masks", true_masks), ("other_masks", other_masks)):
        if not isinstance(x, np.ndarray) or x.ndim != 3:
            raise ValueError(f"{name} must be a bool array (K, H, W), got {_describe(x)}")
    sim = None if sim_centroids_px is None else np.asarray(sim_centroids_px)[None]
    batch = score_frames(generated[None], true[None], true_masks[None], other_masks[None],
                         background[None], sim, tolerance)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        out[key] = float(value[0]) if key in FRAME_METRICS else value[0]
    return out
