"""Connected components of masks and per-object measurements (areas, centroids, boxes, rings).

Batched on any device, no per-pixel Python loops; coordinates are the normalised ones of
``lcvg_env.control``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lcvg_env.control.checks import _require_masks, _require_nonnegative
from lcvg_env.control.geometry import _pixel_centres, normalized_to_pixel

RING_SECTORS = 8
"""Equal angles around an object's centroid in which :func:`rings` asks whether pixels beside
it ring it all round (a border) or lie on one side (a shadow, another object)."""
RING_SHARE = 0.75
"""Share of the sectors (of those with pixels beside the object, at least half of them) that
must hold marked pixels for the object to count as ringed. For ``compositing.take_borders``
(a sector holds some pixel beside the object that no blend of its colour with the unshaded
background explains), on M's objects in 100 two-object twin scenes per look: 1.5 % of plain
varied objects (their shadows) and 2 % with texture 0.3 reach it, against 78 % of
dark-outlined varied, 89 % of white-outlined varied and 96 % of dark-outlined classic
objects."""


def _neighbour_max(labels: Tensor, connectivity: int) -> Tensor:
    """Max over each pixel's neighbourhood (itself included) of (B, 1, H, W) integer labels."""
    padded = F.pad(labels, (1, 1, 1, 1))
    centre = padded[..., 1:-1, 1:-1]
    if connectivity == 8:  # separable 3x3 maximum
        rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
        return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])
    horiz = torch.maximum(padded[..., 1:-1, :-2], padded[..., 1:-1, 2:])
    vert = torch.maximum(padded[..., :-2, 1:-1], padded[..., 2:, 1:-1])
    return torch.maximum(torch.maximum(horiz, vert), centre)


def connected_components(masks: Tensor, connectivity: int = 8, threshold: float = 0.5) -> Tensor:
    """Label the connected components of binarised masks, batched on any device.

    Parallel hooking with pointer jumping, no per-pixel Python loops. Every label names one
    pixel of its component (its root). Each round (1) hooks: the root of every label adopts the
    largest label found next to any pixel carrying it (a 3x3, or cross-shaped, max-pool and a
    scatter-max), then (2) jumps: every pixel, roots included, repeatedly takes the label of the
    pixel its label names, which halves the depth of the label chains at each jump. Labels only
    grow and stay inside their component; rounds stop when nothing changes.

    Args:
        masks: (B, 1, H, W) masks, binarised at ``threshold``.
        connectivity: 8 (default) or 4.
        threshold: foreground is ``masks > threshold``.

    Returns:
        (B, H, W) int64 labels: 0 for background; each component gets ``H * W - i`` where ``i``
        is the raster index of its first pixel (so labels are unique per image and earlier
        components get larger labels).
    """
    masks = _require_masks("masks", masks, channels=1)
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}")
    b, _, h, w = masks.shape
    n = h * w
    fg = (masks > threshold).view(b, n)
    ramp = torch.arange(n, 0, -1, device=masks.device, dtype=torch.int64)
    # (B, n + 1); label L names pixel n - L; background 0 names the sentinel n, which stays 0
    labels = F.pad(torch.where(fg, ramp, 0), (0, 1))
    while True:
        grid = labels[:, :n].view(b, 1, h, w)
        neighbours = F.pad(_neighbour_max(grid, connectivity).view(b, n), (0, 1))
        new = labels.scatter_reduce(1, n - labels, neighbours, reduce="amax")  # hook the roots
        new[:, n] = 0
        for _ in range(4):  # pointer jumping
            new = new.gather(1, n - new)
        if torch.equal(new, labels):
            break
        labels = new
    return labels[:, :n].reshape(b, h, w)


def object_masks(
    masks: Tensor, k: int, *, connectivity: int = 8, threshold: float = 0.5
) -> Tensor:
    """Split binarised masks into their ``k`` largest connected components.

    Args:
        masks: (B, 1, H, W) masks (soft masks are binarised at ``threshold``).
        k: number of objects to return (>= 1).
        connectivity: 8 (default) or 4 neighbours.
        threshold: binarisation threshold.

    Returns:
        (B, k, H, W) {0, 1} masks in the float dtype of ``masks`` (float32 for bool/integer),
        sorted by area, largest first (ties: the component whose first pixel in raster order
        comes first); zero masks pad images with fewer than ``k`` components.
    """
    masks = _require_masks("masks", masks, channels=1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    b, _, h, w = masks.shape
    n = h * w
    labels = connected_components(masks, connectivity, threshold)  # (B, H, W)
    flat = labels.view(b, n)
    offsets = torch.arange(b, device=masks.device).unsqueeze(1) * (n + 1)
    counts = torch.bincount((flat + offsets).view(-1), minlength=b * (n + 1)).view(b, n + 1)
    counts[:, 0] = 0  # background
    label_ids = torch.arange(n + 1, device=masks.device)
    key = counts * (n + 1) + label_ids  # area first, then larger label = earlier first pixel
    kk = min(k, n + 1)
    top = key.topk(kk, dim=1).indices  # (B, kk) label ids
    top_counts = counts.gather(1, top)
    selected = (labels.unsqueeze(1) == top.view(b, kk, 1, 1)) & (top_counts > 0).view(b, kk, 1, 1)
    out = selected.to(masks.dtype)
    if kk < k:
        out = torch.cat([out, out.new_zeros(b, k - kk, h, w)], dim=1)
    return out


def mask_areas(masks: Tensor) -> Tensor:
    """Area of each mask as a fraction of the frame: (B, K, H, W) -> (B, K) (soft = weighted)."""
    masks = _require_masks("masks", masks)
    _require_nonnegative("masks", masks)
    return masks.mean(dim=(-2, -1))


def mask_centroids(masks: Tensor) -> Tensor:
    """Centroid of each mask in normalised ``(x, y)``: (B, K, H, W) -> (B, K, 2).

    Soft masks are weighted by their values; empty masks give ``(0, 0)`` (never NaN).
    """
    masks = _require_masks("masks", masks)
    _require_nonnegative("masks", masks)
    h, w = masks.shape[-2:]
    total = masks.sum(dim=(-2, -1))
    mx = masks.sum(dim=-2) @ _pixel_centres(w, masks)  # (B, K)
    my = masks.sum(dim=-1) @ _pixel_centres(h, masks)
    safe = total.clamp_min(torch.finfo(masks.dtype).tiny)
    cent = torch.stack([mx / safe, my / safe], dim=-1)
    return torch.where((total > 0).unsqueeze(-1), cent, torch.zeros_like(cent))


def mask_boxes(masks: Tensor, threshold: float = 0.5) -> Tensor:
    """Bounding box of each binarised mask, normalised ``(x0, y0, x1, y1)``: (B,K,H,W)->(B,K,4).

    The box covers whole pixels: ``x0`` is the left edge of the leftmost pixel and ``x1`` the
    right edge of the rightmost (a full-frame mask gives ``(-1, -1, 1, 1)``; in pixel
    coordinates that is ``(j_min - 0.5, i_min - 0.5, j_max + 0.5, i_max + 0.5)``). Empty masks
    give zeros.
    """
    masks = _require_masks("masks", masks)
    h, w = masks.shape[-2:]
    fg = masks > threshold
    cols = fg.any(dim=-2)  # (B, K, W)
    rows = fg.any(dim=-1)  # (B, K, H)
    present = cols.any(dim=-1)
    dtype = masks.dtype
    j0 = cols.to(torch.uint8).argmax(dim=-1).to(dtype)
    j1 = (w - 1 - cols.flip(-1).to(torch.uint8).argmax(dim=-1)).to(dtype)
    i0 = rows.to(torch.uint8).argmax(dim=-1).to(dtype)
    i1 = (h - 1 - rows.flip(-1).to(torch.uint8).argmax(dim=-1)).to(dtype)
    box = torch.stack([2 * j0 / w - 1, 2 * i0 / h - 1, 2 * (j1 + 1) / w - 1, 2 * (i1 + 1) / h - 1],
                      dim=-1)
    return torch.where(present.unsqueeze(-1), box, torch.zeros_like(box))


def rings(objects: Tensor, marked: Tensor, looked: Tensor, fill: float = 0.0) -> Tensor:
    """Whether ``marked`` pixels ring each object.

    Args:
        objects: (B, K, H, W) {0, 1}.
        marked: (B, K, H, W) bool, within ``looked``.
        looked: (B, K, H, W) bool, the pixels around each object that were looked at.
        fill: a sector holds marked pixels when more than this share of its looked pixels
            are marked (0: any one).

    Returns:
        (B, K) bool: of the :data:`RING_SECTORS` equal angles around the object's centroid,
        at least half hold ``looked`` pixels and :data:`RING_SHARE` of those hold ``marked``
        ones.
    """
    b, k, h, w = objects.shape
    centre = normalized_to_pixel(mask_centroids(objects.float()), (h, w))[..., None, None]
    ys = torch.arange(h, device=objects.device, dtype=centre.dtype)[:, None]
    xs = torch.arange(w, device=objects.device, dtype=centre.dtype)[None, :]
    turn = torch.atan2(ys - centre[:, :, 1], xs - centre[:, :, 0]) / (2.0 * torch.pi) + 0.5
    sector = (turn * RING_SECTORS).long().clamp(max=RING_SECTORS - 1).view(b * k, h * w)

    def count(pixels: Tensor) -> Tensor:  # (B * K, sectors) pixels in each sector
        return torch.zeros(b * k, RING_SECTORS, device=objects.device).scatter_add_(
            1, sector, pixels.reshape(b * k, h * w).float())

    seen, held = count(looked), count(marked)
    used = seen > 0
    covered = used & (held > fill * seen)
    n = used.sum(dim=-1)
    return ((2 * n >= RING_SECTORS) & (covered.sum(dim=-1) >= RING_SHARE * n)).view(b, k)
