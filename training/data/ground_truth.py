"""Ground-truth sidecar of a clip, and the colour-key object locator used by evaluation.

Sidecar format
--------------
A clip folder (``root/<split>/NNNNN/``) may hold ``ground_truth.npz`` next to its frames, written
with :func:`numpy.savez_compressed` and readable with ``np.load`` (no pickle). Arrays, with T the
number of frames, K the number of objects and H, W the frame size:

==================  ===============  =========================================================
key                 dtype, shape     meaning
==================  ===============  =========================================================
``object_masks``    uint8 (T,K,H,W)  {0,1}: the VISIBLE pixels of object k in frame t
                                     (occluded and out-of-view parts are 0)
``foreground``      uint8 (T,H,W)    {0,1}: union of the object masks (everything that moves)
``centroids``       float32 (T,K,2)  pixel (x, y) centroid of the visible mask; NaN when the
                                     object has no visible pixel (out of view, fully occluded)
``boxes``           float32 (T,K,4)  pixel (x0, y0, x1, y1) of the visible mask, inclusive
                                     pixel indices (x1 is the last column); NaN when empty
``colors``          uint8 (K,3)      optional: RGB key colour of each object (colour-keyed
                                     sources such as the procedural sprites)
``names``           str (K,)         optional: a name per object (``"red disc"``)
==================  ===============  =========================================================

Pixel convention: x is the column, y the row; the centre of pixel (row i, column j) is at
(x, y) = (j, i), so a centroid is the mean of its pixels' indices. With ``align_corners=False``
normalised coordinates are ``u = (2 x + 1) / W - 1`` (see ``lcvg_env.control``).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "GROUND_TRUTH_FILE",
    "GroundTruth",
    "ground_truth_from_masks",
    "load_foreground",
    "load_ground_truth",
    "locate_objects",
    "mask_boxes_px",
    "mask_centroids_px",
    "save_ground_truth",
]

GROUND_TRUTH_FILE = "ground_truth.npz"
"""File name of the ground-truth sidecar inside a clip folder."""


@dataclass(frozen=True)
class GroundTruth:
    """Per-frame ground truth of one clip (the arrays of the sidecar, validated).

    Shapes: T frames, K objects, frame size H x W. See the module docstring for the meaning of
    every array and the pixel convention.
    """

    object_masks: np.ndarray
    """uint8 (T, K, H, W) in {0, 1}: visible pixels of each object."""
    foreground: np.ndarray
    """uint8 (T, H, W) in {0, 1}: union of the object masks."""
    centroids: np.ndarray
    """float32 (T, K, 2): pixel (x, y) of each object's visible pixels; NaN when none."""
    boxes: np.ndarray
    """float32 (T, K, 4): pixel (x0, y0, x1, y1), inclusive; NaN when the object is not visible."""
    colors: np.ndarray | None = None
    """uint8 (K, 3): RGB key colour of each object, or None when the source has no key colours."""
    names: tuple[str, ...] | None = None
    """One name per object, or None."""

    def __post_init__(self) -> None:
        m = self.object_masks
        if not isinstance(m, np.ndarray) or m.ndim != 4:
            raise ValueError(
                f"object_masks must be a (T,K,H,W) array, got {type(m).__name__} "
                f"with shape {getattr(m, 'shape', None)}"
            )
        t, k, h, w = m.shape
        expected = {
            "foreground": (t, h, w),
            "centroids": (t, k, 2),
            "boxes": (t, k, 4),
        }
        for name, shape in expected.items():
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.shape != shape:
                raise ValueError(
                    f"{name} must have shape {shape} to match object_masks {m.shape}, "
                    f"got {getattr(arr, 'shape', type(arr).__name__)}"
                )
        if self.colors is not None and (
            not isinstance(self.colors, np.ndarray) or self.colors.shape != (k, 3)
        ):
            raise ValueError(
                f"colors must have shape ({k}, 3), got {getattr(self.colors, 'shape', None)}"
            )
        if self.names is not None and len(self.names) != k:
            raise ValueError(f"names must have {k} entries, got {len(self.names)}")

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.object_masks.shape[0])

    @property
    def num_objects(self) -> int:
        """Number of objects K."""
        return int(self.object_masks.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """Frame size (H, W)."""
        return int(self.object_masks.shape[2]), int(self.object_masks.shape[3])


def mask_centroids_px(masks: np.ndarray) -> np.ndarray:
    """Pixel centroids of binary masks.

    Args:
        masks: (..., H, W) array, nonzero = inside.

    Returns:
        float32 (..., 2) pixel (x, y) means of the nonzero pixels; NaN where a mask is empty.
    """
    masks = np.asarray(masks)
    if masks.ndim < 2:
        raise ValueError(f"masks must be (..., H, W), got shape {masks.shape}")
    h, w = masks.shape[-2:]
    m = masks if masks.dtype in (np.uint8, np.bool_) else masks != 0
    if m.dtype == np.uint8 and m.size and m.max() > 1:
        m = m != 0
    cols = m.sum(axis=-2, dtype=np.int64).astype(np.float64)  # (..., W)
    rows = m.sum(axis=-1, dtype=np.int64).astype(np.float64)  # (..., H)
    area = cols.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        x = (cols @ np.arange(w, dtype=np.float64)) / area
        y = (rows @ np.arange(h, dtype=np.float64)) / area
    out = np.stack([x, y], axis=-1).astype(np.float32)
    out[area == 0] = np.nan
    return out


def mask_boxes_px(masks: np.ndarray) -> np.ndarray:
    """Pixel bounding boxes of binary masks.

    Args:
        masks: (..., H, W) array, nonzero = inside.

    Returns:
        float32 (..., 4) inclusive pixel boxes (x0, y0, x1, y1); NaN where a mask is empty.
    """
    masks = np.asarray(masks)
    if masks.ndim < 2:
        raise ValueError(f"masks must be (..., H, W), got shape {masks.shape}")
    h, w = masks.shape[-2:]
    m = masks != 0
    cols = m.any(axis=-2)  # (..., W)
    rows = m.any(axis=-1)  # (..., H)
    nonempty = cols.any(axis=-1)
    x0 = np.argmax(cols, axis=-1)
    x1 = w - 1 - np.argmax(cols[..., ::-1], axis=-1)
    y0 = np.argmax(rows, axis=-1)
    y1 = h - 1 - np.argmax(rows[..., ::-1], axis=-1)
    out = np.stack([x0, y0, x1, y1], axis=-1).astype(np.float32)
    out[~nonempty] = np.nan
    return out


def ground_truth_from_masks(
    object_masks: np.ndarray,
    colors: np.ndarray | None = None,
    names: tuple[str, ...] | list[str] | None = None,
) -> GroundTruth:
    """Build a :class:`GroundTruth` from visible object masks.

    Args:
        object_masks: (T, K, H, W) masks, nonzero = visible pixel of the object.
        colors: optional (K, 3) RGB key colours.
        names: optional K object names.

    Returns:
        The ground truth with foreground (union), centroids and boxes computed from the masks.
    """
    m = np.asarray(object_masks)
    if m.ndim != 4:
        raise ValueError(f"object_masks must be (T,K,H,W), got shape {m.shape}")
    m = (m != 0).astype(np.uint8)
    return GroundTruth(
        object_masks=m,
        foreground=m.max(axis=1) if m.shape[1] else np.zeros(m.shape[:1] + m.shape[2:], np.uint8),
        centroids=mask_centroids_px(m),
        boxes=mask_boxes_px(m),
        colors=None if colors is None else np.asarray(colors, dtype=np.uint8),
        names=None if names is None else tuple(str(n) for n in names),
    )


def save_ground_truth(clip_dir: str | os.PathLike[str], gt: GroundTruth) -> Path:
    """Write ``ground_truth.npz`` into ``clip_dir`` (compressed, no pickle).

    Returns:
        The path written.
    """
    if not isinstance(gt, GroundTruth):
        raise TypeError(f"gt must be a GroundTruth, got {type(gt).__name__}")
    path = Path(clip_dir) / GROUND_TRUTH_FILE
    arrays: dict[str, np.ndarray] = {
        "object_masks": gt.object_masks.astype(np.uint8, copy=False),
        "foreground": gt.foreground.astype(np.uint8, copy=False),
        "centroids": gt.centroids.astype(np.float32, copy=False),
        "boxes": gt.boxes.astype(np.float32, copy=False),
    }
    if gt.colors is not None:
        arrays["colors"] = gt.colors.astype(np.uint8, copy=False)
    if gt.names is not None:
        arrays["names"] = np.array(gt.names, dtype=str)
    tmp = path.with_name(path.name + ".tmp")
    # An .npz (np.load reads it) deflated at level 1: masks are sparse, so level 1 is much
    # faster than np.savez_compressed's default and nearly as small (docs/performance.md).
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, arr in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)
    os.replace(tmp, path)
    return path


def load_ground_truth(clip_dir: str | os.PathLike[str]) -> GroundTruth | None:
    """Read the sidecar of a clip folder.

    Args:
        clip_dir: the clip folder (or the ``ground_truth.npz`` path itself).

    Returns:
        The validated :class:`GroundTruth`, or None when the clip has no sidecar.

    Raises:
        ValueError: the sidecar exists but is unreadable or malformed (the message names it).
    """
    path = Path(clip_dir)
    if path.name != GROUND_TRUTH_FILE:
        path = path / GROUND_TRUTH_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            missing = {"object_masks", "foreground", "centroids", "boxes"} - keys
            if missing:
                raise ValueError(f"missing arrays {sorted(missing)} (has {sorted(keys)})")
            names = tuple(str(n) for n in data["names"]) if "names" in keys else None
            return GroundTruth(
                object_masks=data["object_masks"].astype(np.uint8, copy=False),
                foreground=data["foreground"].astype(np.uint8, copy=False),
                centroids=data["centroids"].astype(np.float32, copy=False),
                boxes=data["boxes"].astype(np.float32, copy=False),
                colors=data["colors"].astype(np.uint8) if "colors" in keys else None,
                names=names,
            )
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"unreadable ground truth {path}: {exc}") from exc


def load_foreground(clip_dir: str | os.PathLike[str]) -> np.ndarray | None:
    """Read only the ``foreground`` array (T, H, W) uint8 of a sidecar (cheaper than all of it).

    Returns:
        The array, or None when the clip has no sidecar.
    """
    path = Path(clip_dir) / GROUND_TRUTH_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["foreground"].astype(np.uint8, copy=False)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise ValueError(f"unreadable ground truth {path}: {exc}") from exc


def locate_objects(
    frames: np.ndarray,
    gt: GroundTruth | np.ndarray,
    max_distance: float = 60.0,
    min_pixels: int = 3,
) -> np.ndarray:
    """Find each object in frames by its key colour (an evaluation detector independent of masks).

    A pixel belongs to object k when its RGB Euclidean distance to the key colour of k is at most
    ``max_distance`` (0..255 scale) and smaller than its distance to every other key colour. The
    position is the centroid of those pixels, in the pixel convention of the module docstring.

    Args:
        frames: uint8 (T, H, W, 3) RGB frames (real or generated).
        gt: the clip's :class:`GroundTruth` (its ``colors`` are used), or a (K, 3) colour array.
        max_distance: colour distance threshold.
        min_pixels: fewer matching pixels than this means "not found".

    Returns:
        float32 (T, K, 2) pixel (x, y) per object; NaN when the object is not found.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T,H,W,3) RGB, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {frames.dtype}")
    colors = gt.colors if isinstance(gt, GroundTruth) else np.asarray(gt)
    if colors is None:
        raise ValueError("ground truth has no key colours (colors is None): cannot locate objects")
    colors = np.asarray(colors, dtype=np.float32)
    if colors.ndim != 2 or colors.shape[1] != 3:
        raise ValueError(f"colors must be (K,3), got shape {colors.shape}")
    if max_distance <= 0:
        raise ValueError(f"max_distance must be positive, got {max_distance}")
    t, h, w, _ = frames.shape
    k = colors.shape[0]
    out = np.full((t, k, 2), np.nan, dtype=np.float32)
    if k == 0:
        return out
    px = frames.reshape(t, h * w, 1, 3).astype(np.float32)
    d2 = ((px - colors[None, None]) ** 2).sum(-1)  # (T, H*W, K)
    nearest = d2.argmin(-1)  # (T, H*W)
    best = np.take_along_axis(d2, nearest[..., None], -1)[..., 0]
    ok = best <= max_distance**2
    xs = np.tile(np.arange(w, dtype=np.float64), h)
    ys = np.repeat(np.arange(h, dtype=np.float64), w)
    for j in range(k):
        sel = (ok & (nearest == j)).astype(np.float64)  # (T, H*W)
        n = sel.sum(-1)
        found = n >= max(1, min_pixels)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j, 0] = np.where(found, (sel @ xs) / n, np.nan)
            out[:, j, 1] = np.where(found, (sel @ ys) / n, np.nan)
    return out
