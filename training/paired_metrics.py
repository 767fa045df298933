"""Per-frame, per-object scores of a generated frame against the true frame of a twin world.

Pure numpy. A paired evaluation (``training.paired``) runs the same actions in a world with
true dynamics (the twin, which knows every object's colour, visible mask and position) and in
a learned simulator, and scores each generated frame here against the twin's frame of the same
step.

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

from lcvg_env.world.locate import (
    SEARCH_RADIUS,
    TOLERANCE,
    check_frames,
    describe,
    dilate,
    find_objects,
    label_components,
    mask_centroids,
    object_colours,
)

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
    "object_colours",
    "psnr",
    "score_frame",
    "score_frames",
    "ssim",
]

HIT_FRACTION = 0.3
"""An object is hit when its found area is at least this fraction of its true visible area."""
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


def psnr(generated: np.ndarray, true: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """PSNR in dB (peak 255) of uint8 frames (..., H, W, 3), optionally over bool (..., H, W).

    Identical pixels give :data:`PSNR_CAP_DB` (and nothing above it is reported); NaN where
    ``where`` selects no pixel.
    """
    g = check_frames("generated", generated)
    t = check_frames("true", true, g.shape[:-1])
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
    g = check_frames("generated", generated)
    t = check_frames("true", true, g.shape[:-1])
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


def score_frames(
    generated: np.ndarray,
    true: np.ndarray,
    true_masks: np.ndarray,
    other_masks: np.ndarray,
    background: np.ndarray,
    sim_centroids_px: np.ndarray | None = None,
    tolerance: float = TOLERANCE,
    references: np.ndarray | None = None,
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
        references: the objects' reference colours, :func:`object_colours` of the same truth,
            when several systems are scored against it (computed here otherwise).

    Returns:
        Per object, float64 (B, K) arrays :data:`OBJECT_METRICS` (``visible``, ``hit`` and
        ``apart`` as 0/1; NaN where the object is not visible in the true frame, and for
        ``position_error_px`` also where it was missed; ``sim_position_error_px`` NaN when no
        ``sim_centroids_px``); per frame, float64 (B,) :data:`FRAME_METRICS`
        (``background_psnr`` NaN when no background pixel is left); and ``found`` bool
        (B, K, H, W).
    """
    found = find_objects(generated, true, true_masks, other_masks, background, tolerance,
                         references=references)
    vis = np.asarray(true_masks, dtype=bool)
    other = np.asarray(other_masks, dtype=bool)
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
    everyone = np.concatenate([vis, other], axis=1)
    apart = _apart(vis, everyone)
    sim_err = _sim_position_error(sim_centroids_px, true_c)
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


def _apart(vis: np.ndarray, everyone: np.ndarray) -> np.ndarray:
    """Bool (B, K): no other object within ``APART_MARGIN_PX`` of controlled object k.

    ``vis`` bool (B, K, H, W) masks of the controlled objects; ``everyone`` bool
    (B, K + M, H, W) those masks followed by the other objects' ones.
    """
    b, k = vis.shape[:2]
    grown = dilate(vis, APART_MARGIN_PX)  # (B, K, H, W)
    apart = np.zeros((b, k), dtype=bool)
    for j in range(k):
        rest = np.delete(everyone, j, axis=1).any(axis=1)  # (B, H, W)
        apart[:, j] = ~(grown[:, j] & rest).any(axis=(-2, -1))
    return apart


def _sim_position_error(sim_centroids_px: np.ndarray | None, true_c: np.ndarray) -> np.ndarray:
    """Float64 (B, K) pixel distance of the simulator's centroids to the true (B, K, 2) ones.

    All NaN when ``sim_centroids_px`` is None; ValueError naming it when its shape is not
    ``true_c``'s.
    """
    b, k = true_c.shape[:2]
    if sim_centroids_px is None:
        return np.full((b, k), np.nan)
    sim = np.asarray(sim_centroids_px, dtype=np.float64)
    if sim.shape != (b, k, 2):
        raise ValueError(
            f"sim_centroids_px must have shape {(b, k, 2)}, got {describe(sim)}"
        )
    return np.hypot(*(sim - true_c).transpose(2, 0, 1))


def score_frame(generated: np.ndarray, true: np.ndarray, true_masks: np.ndarray,
                other_masks: np.ndarray, background: np.ndarray,
                sim_centroids_px: np.ndarray | None = None, tolerance: float = TOLERANCE
                ) -> dict[str, Any]:
    """Score one frame: :func:`score_frames` of a batch of one, unbatched.

    Arguments as for :func:`score_frames`, one frame each: frames (H, W, 3), masks (K, H, W)
    and (M, H, W), ``sim_centroids_px`` (K, 2). Returns per-object arrays (K,), per-frame
    floats and ``found`` (K, H, W).
    """
    for name, x in (("generated", generated), ("true", true), ("background", background)):
        if not isinstance(x, np.ndarray) or x.ndim != 3:
            raise ValueError(f"{name} must be a uint8 array (H, W, 3), got {describe(x)}")
    for name, x in (("true_masks", true_masks), ("other_masks", other_masks)):
        if not isinstance(x, np.ndarray) or x.ndim != 3:
            raise ValueError(f"{name} must be a bool array (K, H, W), got {describe(x)}")
    sim = None if sim_centroids_px is None else np.asarray(sim_centroids_px)[None]
    batch = score_frames(generated[None], true[None], true_masks[None], other_masks[None],
                         background[None], sim, tolerance)
    out: dict[str, Any] = {}
    for key, value in batch.items():
        out[key] = float(value[0]) if key in FRAME_METRICS else value[0]
    return out
