"""Resize-and-crop of frames, masks and pixel coordinates, kept consistent with each other.

A frame of size (h, w) is scaled by ``s = max(H / h, W / w)`` (it covers the target), rounded to
(rh, rw), and centre-cropped to the target (H, W). Frames use bilinear (antialiased) resampling,
masks nearest, and pixel points map exactly: ``x' = (x + 0.5) * rw / w - 0.5 - ox`` (pixel centres
at integer coordinates, see ``training.data.ground_truth``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

__all__ = ["Geometry", "ResizeCrop", "flip_boxes", "flip_points", "parse_size"]


def parse_size(size: int | tuple[int, int] | list[int] | None) -> tuple[int, int] | None:
    """Normalise a size argument: None, an int (square) or (H, W) -> (H, W) or None."""
    if size is None:
        return None
    if isinstance(size, bool):
        raise TypeError(f"size must be an int or (H, W), got {size!r}")
    if isinstance(size, int):
        size = (size, size)
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"size must be an int or (H, W), got {size!r}") from exc
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


@dataclass(frozen=True)
class Geometry:
    """How one source size maps onto the target: resize to (rh, rw), then crop at (oy, ox)."""

    src: tuple[int, int]
    """Source (h, w)."""
    resized: tuple[int, int]
    """Size (rh, rw) after resizing, before the crop."""
    offset: tuple[int, int]
    """Top-left (oy, ox) of the crop window in the resized image."""
    out: tuple[int, int]
    """Target (H, W)."""

    @property
    def identity(self) -> bool:
        """True when nothing changes (source already has the target size)."""
        return self.src == self.out

    @property
    def scale(self) -> tuple[float, float]:
        """Resize factors (sx, sy) = (rw / w, rh / h) from source to resized pixels."""
        return self.resized[1] / self.src[1], self.resized[0] / self.src[0]


class ResizeCrop:
    """Resize (cover) then centre-crop to a target size; ``size=None`` keeps the source size.

    Args:
        size: target (H, W), an int for a square, or None.
    """

    def __init__(self, size: int | tuple[int, int] | None) -> None:
        self.size = parse_size(size)

    def geometry(self, src: tuple[int, int]) -> Geometry:
        """Return the :class:`Geometry` for a source of size ``src`` = (h, w)."""
        return _geometry(tuple(int(v) for v in src), self.size)  # type: ignore[arg-type]

    def image(self, img: np.ndarray) -> np.ndarray:
        """Resize and crop an RGB frame: uint8 (h, w, 3) -> uint8 (H, W, 3)."""
        g = self.geometry(img.shape[:2])
        if g.identity:
            return img
        if g.resized != g.src:
            pil = Image.fromarray(np.ascontiguousarray(img))
            img = np.asarray(pil.resize((g.resized[1], g.resized[0]), Image.Resampling.BILINEAR))
        oy, ox = g.offset
        return img[oy : oy + g.out[0], ox : ox + g.out[1]]

    def masks(self, masks: np.ndarray) -> np.ndarray:
        """Resize and crop masks with nearest sampling: (..., h, w) -> (..., H, W), same dtype."""
        g = self.geometry(masks.shape[-2:])
        if g.identity:
            return masks
        rows, cols = _nearest_indices(g)
        return masks[..., rows[:, None], cols[None, :]]

    def points(self, xy: np.ndarray, src: tuple[int, int]) -> np.ndarray:
        """Map pixel (x, y) points (..., 2) from a source of size ``src`` to the output frame.

        Points that land outside the output frame become NaN (the object is cropped away).
        """
        g = self.geometry(src)
        xy = np.asarray(xy, dtype=np.float32)
        if g.identity:
            return xy
        sx, sy = g.scale
        out = np.empty_like(xy)
        out[..., 0] = (xy[..., 0] + 0.5) * sx - 0.5 - g.offset[1]
        out[..., 1] = (xy[..., 1] + 0.5) * sy - 0.5 - g.offset[0]
        h, w = g.out
        outside = (
            (out[..., 0] < -0.5) | (out[..., 0] > w - 0.5) | (out[..., 1] < -0.5)
            | (out[..., 1] > h - 0.5)
        )
        out[outside] = np.nan
        return out

    def boxes(self, boxes: np.ndarray, src: tuple[int, int]) -> np.ndarray:
        """Map inclusive pixel boxes (..., 4) = (x0, y0, x1, y1) to the output frame, clipped.

        Boxes entirely outside the output become NaN.
        """
        g = self.geometry(src)
        boxes = np.asarray(boxes, dtype=np.float32)
        if g.identity:
            return boxes
        sx, sy = g.scale
        h, w = g.out
        # Inclusive pixel boxes: edges at x0 - 0.5 and x1 + 0.5.
        x0 = (boxes[..., 0]) * sx - g.offset[1]
        x1 = (boxes[..., 2] + 1.0) * sx - g.offset[1] - 1.0
        y0 = (boxes[..., 1]) * sy - g.offset[0]
        y1 = (boxes[..., 3] + 1.0) * sy - g.offset[0] - 1.0
        out = np.stack(
            [np.clip(x0, 0, w - 1), np.clip(y0, 0, h - 1), np.clip(x1, 0, w - 1),
             np.clip(y1, 0, h - 1)],
            axis=-1,
        ).astype(np.float32)
        gone = (x1 < 0) | (x0 > w - 1) | (y1 < 0) | (y0 > h - 1)
        out[gone] = np.nan
        return out


def flip_points(xy: np.ndarray, width: int) -> np.ndarray:
    """Horizontally flip pixel (x, y) points (..., 2) in a frame of the given width."""
    out = np.array(xy, dtype=np.float32, copy=True)
    out[..., 0] = (width - 1) - out[..., 0]
    return out


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Horizontally flip inclusive pixel boxes (..., 4) in a frame of the given width."""
    b = np.asarray(boxes, dtype=np.float32)
    out = b.copy()
    out[..., 0] = (width - 1) - b[..., 2]
    out[..., 2] = (width - 1) - b[..., 0]
    return out


@lru_cache(maxsize=64)
def _geometry(src: tuple[int, int], size: tuple[int, int] | None) -> Geometry:
    h, w = src
    if h <= 0 or w <= 0:
        raise ValueError(f"source size must be positive, got {src}")
    if size is None or size == src:
        return Geometry(src=src, resized=src, offset=(0, 0), out=src)
    oh, ow = size
    scale = max(oh / h, ow / w)
    rh = max(oh, int(round(h * scale)))
    rw = max(ow, int(round(w * scale)))
    return Geometry(src=src, resized=(rh, rw), offset=((rh - oh) // 2, (rw - ow) // 2), out=size)


@lru_cache(maxsize=64)
def _nearest_indices(g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    (h, w), (rh, rw), (oy, ox), (oh, ow) = g.src, g.resized, g.offset, g.out
    rows = np.floor((np.arange(oy, oy + oh) + 0.5) * h / rh).astype(np.intp).clip(0, h - 1)
    cols = np.floor((np.arange(ox, ox + ow) + 0.5) * w / rw).astype(np.intp).clip(0, w - 1)
    return rows, cols
