"""Composite prediction: G corrects a frame made of moved pixels instead of redrawing it.

The paper's generator must carry an object's appearance across a move by itself, through a
quantised latent, and every step pays the loss of that pass again (thin parts, texture and
unseen colours fade within a few steps). For parametric controls the transform of each object
is known, so a controlled step (``ModelConfig.prediction == "composite"``) builds the frame the
move implies and lets G correct it only where something changed:

    pixels_k = warp(f_t * object_k, theta_k) / warp(object_k, theta_k)  # own pixels, moved
    composite = moved objects over the canvas              # holes filled from around them
    band = dilate(moved | objects before | holes, band_px)
    f_{t+1} = clamp(composite + band * G(composite, m_c))

``canvas`` is the background behind the objects (the simulator's: the real first frame, the
same at every step, unknown where the controlled objects and a margin around them stood at the
start; in training: f_t outside its objects),
``known`` (B, 1, H, W) says where it holds real content. Outside the band the composite is the
next frame, so the background a user starts from is kept exactly; inside it G adds shading,
shadows and the background an object uncovers. Frames are in [-1, 1], masks in {0, 1}, theta
``input_from_output`` (``lcvg_env.control``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lcvg_env import control as ctl

__all__ = ["Composite", "compose", "dilate", "fill_holes", "predict"]

Predict = Callable[[Tensor, Tensor], Tensor]
"""G's call: (frames (B, 3, H, W), masks (B, 1, H, W)) -> (B, 3, H, W)."""


class Composite(NamedTuple):
    """What :func:`compose` returns (all (B, C, H, W) on the frames' device)."""

    image: Tensor
    """(B, 3, H, W) moved objects over the canvas, holes filled from their surroundings."""
    band: Tensor
    """(B, 1, H, W) {0, 1}: where G's correction applies."""
    moved: Tensor
    """(B, 1, H, W) {0, 1}: union of the moved objects' masks."""


def dilate(masks: Tensor, px: int) -> Tensor:
    """Grow (B, 1, H, W) {0, 1} masks by ``px`` pixels (square neighbourhood)."""
    if px <= 0:
        return masks
    return F.max_pool2d(masks, 2 * px + 1, stride=1, padding=px)


def fill_holes(image: Tensor, valid: Tensor, levels: int = 6) -> Tensor:
    """Fill the pixels of (B, C, H, W) ``image`` where ``valid`` (B, 1, H, W) is 0.

    Push-pull: the valid pixels are averaged down a pyramid (each level weighted by how much
    of it is valid) and the holes take the finest average that reaches them, so a hole becomes
    the smooth continuation of what surrounds it. Valid pixels are returned unchanged.
    """
    pyramid = [(image * valid, valid)]
    for _ in range(levels):
        colour, weight = pyramid[-1]
        if min(colour.shape[-2:]) < 2:
            break
        pyramid.append((F.avg_pool2d(colour, 2, ceil_mode=True),
                        F.avg_pool2d(weight, 2, ceil_mode=True)))
    colour, weight = pyramid[-1]
    filled = colour / weight.clamp_min(1e-6)
    for colour, weight in reversed(pyramid[:-1]):
        coarse = F.interpolate(filled, size=colour.shape[-2:], mode="bilinear",
                               align_corners=False)
        mean = colour / weight.clamp_min(1e-6)
        filled = torch.where(weight > 0.999, mean, weight * mean + (1.0 - weight) * coarse)
    return torch.where(valid > 0.5, image, filled)


def compose(frames: Tensor, objects: Tensor, theta: Tensor, moved: Tensor, canvas: Tensor,
            known: Tensor, band_px: int, before: Tensor | None = None) -> Composite:
    """Move each object's pixels with its transform and lay them over the canvas.

    Args:
        frames: (B, 3, H, W) the frame the objects' pixels are taken from (f_t), or
            (B, K, 3, H, W) one per object (with carried tracking, the frame each object's
            template was taken in: its pixels are then never resampled twice).
        objects: (B, K, H, W) {0, 1} the objects' masks in ``frames``.
        theta: (B, K, 2, 3) each object's ``input_from_output`` transform from the next frame
            to ``frames``.
        moved: (B, K, H, W) {0, 1} the objects' masks after the step (where the controls put
            them); an object's pixels land only inside its moved mask.
        canvas: (B, 3, H, W) background to show where no object lands.
        known: (B, 1, H, W) {0, 1}: where ``canvas`` holds real content.
        band_px: width of the band around what changed where G's correction applies.
        before: (B, 1, H, W) where the objects stood in f_t (default: ``objects``' union).

    Returns:
        A :class:`Composite`. Objects earlier in K are drawn over later ones. Holes (pixels of
        a moved mask no object pixel reached, and canvas pixels never known) are filled from
        their surroundings (:func:`fill_holes`) for G to refine.
    """
    b, k, h, w = objects.shape
    source = frames if frames.dim() == 5 else frames.unsqueeze(1)  # (B, K or 1, 3, H, W)
    layers = torch.cat([source * objects.unsqueeze(2), objects.unsqueeze(2)], 2)
    # bilinear on premultiplied pixels: sub-pixel placement, no background bleeding into the
    # object's colour; a whole-pixel move returns the pixels themselves
    warped = ctl.warp_masks(layers.reshape(b * k, 4, h, w), theta.reshape(b * k, 2, 3))
    warped = warped.view(b, k, 4, h, w)
    alpha = warped[:, :, 3:]
    warped = torch.cat([warped[:, :, :3] / alpha.clamp_min(1e-6), alpha], 2)
    landed = (alpha * moved.unsqueeze(2)) > 0.5  # (B, K, 1, H, W)
    cover = landed.any(dim=1).to(frames.dtype)  # (B, 1, H, W)
    moved_union = moved.amax(dim=1, keepdim=True)
    # the background behind everything, its unknown parts filled from the known ones around
    image = fill_holes(canvas, known)
    for j in reversed(range(k)):  # object 0 ends on top
        image = torch.where(landed[:, j], warped[:, j, :3], image)
    hole = torch.maximum((1.0 - cover) * (1.0 - known), moved_union * (1.0 - cover))
    if before is None:
        before = objects.amax(dim=1, keepdim=True)
    changed = torch.maximum(torch.maximum(moved_union, before), hole)
    return Composite(image, dilate(changed, band_px), moved_union)


def predict(g: Predict, frames: Tensor, objects: Tensor, theta: Tensor, moved: Tensor,
            edited: Tensor, canvas: Tensor, known: Tensor, band_px: int,
            before: Tensor | None = None) -> tuple[Tensor, Composite]:
    """One composite step: ``composite + band * g(composite, edited)``, not clamped.

    Arguments as for :func:`compose`; ``g`` is G's call (``LayeredGenerator.predict_next``)
    and ``edited`` (B, 1, H, W) the control mask m_c it is given (the moved objects and the
    foreground that is not controlled). Returns the next frames (B, 3, H, W) and the composite.
    """
    comp = compose(frames, objects, theta, moved, canvas, known, band_px, before)
    correction = g(comp.image, edited)
    return comp.image + comp.band * correction.to(comp.image.dtype), comp
