"""Drop shadows: read once from a first frame, then cast wherever the objects go.

Objects lit by one light darken the background beside them by a soft copy of their silhouette,
offset away from the light. A canvas kept from the first frame (``lcvg_env.tracking.
start_canvas``) keeps those shadows where the objects stood, a ghost once they move, and lacks
them where the objects go. One shadow per scene is fitted here,

    shade(casters) = 1 - strength * shift(box(casters, width), offset)    # (B, 1, H, W)

(``box`` a width x width mean, so a straight edge's shadow ramps over ``width`` pixels;
``shift`` moves by whole pixels), so that the canvas can be freed of the first frame's shadows
(divided by their shade) and shaded at every step by the casters where they are then
(:func:`cast`). Frames are in [-1, 1]; the shade scales intensities ``(x + 1) / 2``.

The fit (:func:`fit_drop_shadow`) compares a ring of background pixels around the casters with
the background they would show unshadowed (the frame's quadratic trend plus push-pull of the
rest, ``lcvg_env.compositing.fill_holes``, from beyond the ring, then from beside the shadow
found so far), for every offset up to :data:`SHADOW_REACH` and width in :data:`SHADOW_WIDTHS`
at once by FFT correlations, the strength by least squares. A scene is given a shadow only
where it explains at least :data:`SHADOW_MIN_EXPLAINED` of the ring's difference from that
background, its edges at least :data:`SHADOW_MIN_EDGES` of the ring's detail, and it darkens
every colour alike (:data:`SHADOW_GREY`); elsewhere (no shadow, or a pattern or grain that
hides it) the strength is 0 and :func:`cast` and :func:`remove` change nothing. A shadow longer
or softer than the search (past 3 px, an edge wider than 5 px) is not read: it is left in the
canvas as before.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lcvg_env.compositing import dilate, fill_holes

__all__ = [
    "SHADOW_DRAWN",
    "SHADOW_EDGE_PX",
    "SHADOW_GREY",
    "SHADOW_MAX_STRENGTH",
    "SHADOW_MIN_EDGES",
    "SHADOW_MIN_EXPLAINED",
    "SHADOW_REACH",
    "SHADOW_RING_PX",
    "SHADOW_ROUNDS",
    "SHADOW_WIDTHS",
    "Cast",
    "DropShadow",
    "cast",
    "fit_drop_shadow",
    "no_shadow",
    "remove",
    "shade",
]

SHADOW_REACH = 3
"""Longest shadow offset tried (pixels, each axis). With 4 (and widths up to 7) a smooth
error of the unshadowed background was read as a shadow at the search's edge more often (200
classic first frames, which have none, push-pull as the unshadowed background: 37 read by the
first test, against 23)."""
SHADOW_WIDTHS = (1, 3, 5)
"""Widths tried for a shadow's soft edge (pixels; odd, the box's side)."""
SHADOW_RING_PX = 7
"""Width of the ring of background around the casters the fit reads (past the casters' own
1 px rim); a shadow reaches at most :data:`SHADOW_REACH` plus half the widest edge past them."""
SHADOW_ROUNDS = 3
"""Fits per scene: the first compares the ring with push-pull from beyond it, each next one
with push-pull from beside the shadow the last one found (closer, so truer)."""
SHADOW_MIN_EXPLAINED = 0.5
"""Least share of the ring's squared difference from the unshadowed background a shadow must
explain to be kept."""
SHADOW_MAX_STRENGTH = 0.9
"""Largest strength fitted (a shadow that darkens by more leaves too little to divide by)."""
SHADOW_EDGE_PX = 7
"""Side of the box mean whose remainder (a shadow's edges, the background's grain) the second
test compares (:data:`SHADOW_MIN_EDGES`)."""
SHADOW_MIN_EDGES = 0.1
"""Least share of the ring's detail (``SHADOW_EDGE_PX``) the shadow's own edges must explain
to be kept: a smooth error of the unshadowed background passes the first test as a faint,
wide shadow far out and fails this one (200 classic first frames, no shadows: 25 read by the
first test, none kept; varied: 125 of 144 kept, strong shadows 191 of 198; true masks, seeds
90000-90199)."""
SHADOW_DRAWN = 0.02
"""Darkening past which a cast shadow counts as drawn (:class:`Cast`): a composite step keeps
G's correction off the known canvas there (``lcvg_env.compositing.compose``). A G trained on
canvases that lacked the moved objects' shadows drew them itself and darkened the cast one
again (varied seed 0, paired: background 35.57 / 35.62 dB with G there, 35.75 / 35.83
without); the bundled G, trained again with the shadows cast, still scores lower with its
correction there (35.67 / 35.72 dB against 35.77 / 35.83)."""
SHADOW_GREY = 0.35
"""Largest spread of a shadow's strength fitted channel by channel (largest less smallest, over
their mean) for it to be kept: a shadow darkens every colour alike. Read through M's masks,
two classic episodes of 64 (paired, seed 1; their backgrounds have no shadows) took a dark
blotch beside a small triangle for one, with spreads of 0.40 and 0.65; twin shadows read from
200 varied first frames spread by 0.04 (median) and at most 0.49 (2 of 125 dropped; strong
shadows at most 0.16)."""
_SUPPORT = 0.01
"""Coverage above which a pixel counts as shadowed when the next round's background is
filled from beside the shadow."""


class DropShadow(NamedTuple):
    """One drop shadow per scene (batch element)."""

    offset: Tensor
    """(B, 2) int64 (dy, dx): how far the shadow lies from its caster, pixels."""
    width: Tensor
    """(B,) int64 odd: the side of the box the casters' silhouette is averaged over."""
    strength: Tensor
    """(B,) float32 in [0, :data:`SHADOW_MAX_STRENGTH`]: how much a full shadow darkens the
    background (0: no shadow)."""


def no_shadow(batch: int, device: torch.device | str = "cpu") -> DropShadow:
    """``batch`` scenes without shadows."""
    return DropShadow(torch.zeros(batch, 2, dtype=torch.long, device=device),
                      torch.ones(batch, dtype=torch.long, device=device),
                      torch.zeros(batch, device=device))


def shade(shadow: DropShadow, casters: Tensor) -> Tensor:
    """Return the (B, 1, H, W) factor in (0, 1] of the shadow of ``casters`` (B, C, H, W).

    The casters' union ({0, 1}) casts it, onto the background only: the factor is 1 on the
    casters themselves. Casters beyond the frame are not known.
    """
    union = casters.amax(dim=1, keepdim=True).float()
    return 1.0 - shadow.strength.view(-1, 1, 1, 1) * _coverage(union, shadow) * (1.0 - union)


class Cast(NamedTuple):
    """A background with a shadow cast on it."""

    image: Tensor
    """(B, 3, H, W) in [-1, 1]: the background, darkened where the shadow falls."""
    drawn: Tensor
    """(B, 1, H, W) {0, 1}: where the shadow darkens it by more than :data:`SHADOW_DRAWN`."""


def cast(background: Tensor, shadow: DropShadow, casters: Tensor) -> Cast:
    """Darken ``background`` (B, 3, H, W) in [-1, 1] by the shadow of ``casters``.

    The pixels no shadow reaches are returned as they are.
    """
    factor = shade(shadow, casters)
    image = torch.where(factor < 1.0, (background + 1.0) * factor - 1.0, background)
    return Cast(image, (factor < 1.0 - SHADOW_DRAWN).to(background.dtype))


def remove(frames: Tensor, shadow: DropShadow, casters: Tensor) -> Tensor:
    """Take the shadow of ``casters`` out of ``frames`` (B, 3, H, W), clamped to [-1, 1].

    The pixels no shadow reaches are returned as they are.
    """
    factor = shade(shadow, casters)
    freed = ((frames + 1.0) / factor - 1.0).clamp(-1.0, 1.0)
    return torch.where(factor < 1.0, freed, frames)


def fit_drop_shadow(frames: Tensor, casters: Tensor) -> DropShadow:
    """Read the drop shadow of each scene's ``casters`` (B, C, H, W) {0, 1} in ``frames``.

    Every pixel of the casters' union is treated as foreground (it casts, and no shadow is
    read on it); give the whole foreground, not only the controlled objects, or another
    object's shadow in the ring hides theirs. See the module's docstring for the method.
    """
    union = casters.amax(dim=1, keepdim=True).float()
    image = frames.float()
    intensity = (image + 1.0) / 2.0
    ring = dilate(union, SHADOW_RING_PX) * (1.0 - dilate(union, 1))
    hole = dilate(union, SHADOW_RING_PX)
    for _ in range(SHADOW_ROUNDS):  # >= 1: each round sets the shadow and what it explains
        unshadowed = (_fill_smooth(image, 1.0 - hole) + 1.0) / 2.0
        shadow, explained = _best_fit(intensity, unshadowed, ring, union)
        coverage = _coverage(union, shadow)
        hole = torch.maximum(dilate(union, 1), dilate((coverage > _SUPPORT).float(), 1))
    kept = ((explained >= SHADOW_MIN_EXPLAINED)
            & (_edge_share(intensity, unshadowed, union, coverage, shadow.strength)
               >= SHADOW_MIN_EDGES)
            & (_channel_spread(intensity, unshadowed, ring, coverage) <= SHADOW_GREY))
    return shadow._replace(strength=torch.where(kept, shadow.strength, 0.0))


def _channel_spread(intensity: Tensor, unshadowed: Tensor, ring: Tensor,
                    coverage: Tensor) -> Tensor:
    """Return the (B,) spread of a shadow's strength fitted channel by channel.

    The shadow falls where ``coverage`` (B, 1, H, W) is (:func:`_coverage`); the spread is the
    largest strength less the smallest, over their mean. A shadow takes the same share of every
    channel of the light it blocks; a background darker in some colours beside the casters
    does not.
    """
    seen = (intensity - unshadowed) * ring
    drawn = -unshadowed * coverage * ring
    per_channel = (drawn * seen).sum(dim=(2, 3)) / (drawn * drawn).sum(dim=(2, 3)).clamp_min(1e-12)
    spread = per_channel.amax(1) - per_channel.amin(1)
    return spread / per_channel.mean(1).clamp_min(1e-6)


def _edge_share(intensity: Tensor, unshadowed: Tensor, union: Tensor, coverage: Tensor,
                strength: Tensor) -> Tensor:
    """Return the (B,) share of the ring's detail that a shadow's own edges explain.

    The shadow darkens by ``strength`` (B,) where ``coverage`` (B, 1, H, W) is 1
    (:func:`_coverage`).

    Detail is what a :data:`SHADOW_EDGE_PX` box mean leaves; the share is negative where the
    shadow draws edges the frame does not show. A smooth error of the unshadowed background
    next to the casters (push-pull across a wide hole) can pass for a faint, wide shadow far
    out; it has no edges. Only pixels whose window misses the casters and their rims count.
    """
    k = SHADOW_EDGE_PX
    near = dilate(union, SHADOW_RING_PX) * (1.0 - dilate(union, 1 + k // 2))
    seen = _detail(intensity - unshadowed, k) * near
    drawn = _detail(-unshadowed * coverage, k) * near
    xy, xx = (drawn * seen).sum(dim=(1, 2, 3)), (drawn * drawn).sum(dim=(1, 2, 3))
    explained = strength * (2.0 * xy - strength * xx)  # |seen|^2 - |seen - strength drawn|^2
    return explained / (seen * seen).sum(dim=(1, 2, 3)).clamp_min(1e-12)


def _detail(image: Tensor, k: int) -> Tensor:
    """``image`` less its k x k box mean (over the pixels inside the frame)."""
    return image - F.avg_pool2d(image, k, stride=1, padding=k // 2, count_include_pad=False)


def _best_fit(intensity: Tensor, unshadowed: Tensor, ring: Tensor,
              union: Tensor) -> tuple[DropShadow, Tensor]:
    """Fit the shadow that best explains ``intensity`` as ``unshadowed`` times a shade.

    Over ``ring``; returns the offset, width and strength, and the share (B,) of the squared
    difference between the two they explain.

    With c the shifted coverage, intensity ~ u (1 - s c): the residual y = intensity - u is
    regressed on -u c. Its correlations with every shift of c come from two FFT products per
    width: sum_p a(p) c(p - o) is the inverse transform of conj(C) A at o.
    """
    b, _, h, w = intensity.shape
    r = SHADOW_REACH
    size = (h + r, w + r)  # no wrap-around for offsets up to r
    residual = (intensity - unshadowed) * ring
    along = -(residual * unshadowed).sum(1)  # (B, H, W): correlates with c
    weight = ((unshadowed * unshadowed) * ring).sum(1)  # correlates with c^2
    total = (residual * residual).sum(dim=(1, 2, 3))
    along_hat = torch.fft.rfft2(along, s=size)
    weight_hat = torch.fft.rfft2(weight, s=size)
    offsets = torch.arange(-r, r + 1, device=intensity.device)
    rows, cols = offsets % size[0], offsets % size[1]
    gains, strengths = [], []
    for width in SHADOW_WIDTHS:
        coverage = _box(union, torch.full((b,), width, device=intensity.device))[:, 0]
        cov_hat = torch.fft.rfft2(coverage, s=size)
        sq_hat = torch.fft.rfft2(coverage * coverage, s=size)
        xy = torch.fft.irfft2(cov_hat.conj() * along_hat, s=size)[:, rows][:, :, cols]
        xx = torch.fft.irfft2(sq_hat.conj() * weight_hat, s=size)[:, rows][:, :, cols]
        strength = (xy / xx.clamp_min(1e-9)).clamp(0.0, SHADOW_MAX_STRENGTH)
        gains.append((2.0 * strength * xy - strength * strength * xx).flatten(1))
        strengths.append(strength.flatten(1))
    gain, strength = torch.stack(gains, 1), torch.stack(strengths, 1)  # (B, widths, offsets)
    best = gain.flatten(1).argmax(1)
    n = (2 * r + 1) ** 2
    which, at = best // n, best % n
    widths = torch.tensor(SHADOW_WIDTHS, device=intensity.device)[which]
    offset = torch.stack([offsets[at // (2 * r + 1)], offsets[at % (2 * r + 1)]], 1)
    batch = torch.arange(b, device=intensity.device)
    explained = gain[batch, which, at].clamp_min(0.0) / total.clamp_min(1e-12)
    return DropShadow(offset, widths, strength[batch, which, at].float()), explained


def _fill_smooth(image: Tensor, valid: Tensor) -> Tensor:
    """Fill the holes of ``image`` (B, C, H, W) along its quadratic trend, then push-pull.

    The least-squares quadratic surface over the ``valid`` pixels (B, 1, H, W) is taken out,
    the rest push-pulled (``fill_holes``) and the surface added back: a hole in a gradient is
    filled along the gradient, not flattened toward its surroundings' mean (which a shadow
    beside the hole would otherwise be fitted to explain).
    """
    b, c, h, w = image.shape
    ys = torch.linspace(-1.0, 1.0, h, device=image.device).view(h, 1).expand(h, w)
    xs = torch.linspace(-1.0, 1.0, w, device=image.device).view(1, w).expand(h, w)
    basis = torch.stack([torch.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys]).flatten(1)
    weighted = basis[None] * valid.flatten(1)[:, None]  # (B, 6, HW)
    normal = weighted @ basis.T + 1e-4 * torch.eye(6, device=image.device)
    coeffs = torch.linalg.solve(normal, weighted @ image.flatten(2).transpose(1, 2))  # (B, 6, C)
    surface = (coeffs.transpose(1, 2) @ basis).view(b, c, h, w)
    return fill_holes(image - surface, valid) + surface


def _coverage(union: Tensor, shadow: DropShadow) -> Tensor:
    """Return the (B, 1, H, W) share in [0, 1] of each pixel the ``shadow`` of ``union`` covers.

    The casters' silhouette, softened by ``shadow.width`` and moved by its offset.
    """
    return _shift(_box(union, shadow.width), shadow.offset)


def _box(masks: Tensor, width: Tensor) -> Tensor:
    """(B, 1, H, W) mean over a width x width square around each pixel (zeros beyond).

    Each batch element has its own odd ``width`` (B,). Differences of cumulative sums,
    gathered at each element's own reach, so that a step casting the shadow neither loops
    over widths nor reads them back to the host.
    """
    reach = (width // 2).view(-1, 1, 1, 1)
    out = masks
    for dim in (2, 3):
        n = out.shape[dim]
        sums = F.pad(out.cumsum(dim), (1, 0) if dim == 3 else (0, 0, 1, 0))  # sums[k]: first k
        at = torch.arange(n, device=masks.device).view((1, 1, n, 1) if dim == 2 else (1, 1, 1, n))
        hi, lo = (at + reach + 1).clamp(max=n), (at - reach).clamp(min=0)
        size = list(out.shape)
        out = sums.gather(dim, hi.expand(size)) - sums.gather(dim, lo.expand(size))
    return out / (width * width).view(-1, 1, 1, 1).to(masks.dtype)


def _shift(maps: Tensor, offset: Tensor) -> Tensor:
    """Move (B, 1, H, W) maps by each element's whole-pixel ``offset`` (B, 2) (dy, dx).

    What comes in from beyond the frame is 0.
    """
    b, _, h, w = maps.shape
    ys = torch.arange(h, device=maps.device).view(1, h, 1) - offset[:, 0].view(b, 1, 1)
    xs = torch.arange(w, device=maps.device).view(1, 1, w) - offset[:, 1].view(b, 1, 1)
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    at = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).view(b, -1)
    taken = maps.flatten(1).gather(1, at).view(b, 1, h, w)
    return taken * inside.unsqueeze(1)
