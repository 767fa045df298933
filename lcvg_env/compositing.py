"""Composite prediction: G corrects a frame made of moved pixels instead of redrawing it.

The paper's generator must carry an object's appearance across a move by itself, through a
quantised latent, and every step pays the loss of that pass again (thin parts, texture and
unseen colours fade within a few steps). For parametric controls the transform of each object
is known, so a controlled step (``ModelConfig.prediction == "composite"``) builds the frame the
move implies and lets G correct it only where something changed:

    pixels_k = warp_nearest(f_t * object_k, theta_k)       # each object's own pixels, moved
    composite = moved objects over known * canvas          # holes (nothing known) are 0
    band = dilate(moved | objects before | holes, band_px)
    f_{t+1} = clamp(composite + band * G(composite, m_c))

``canvas`` is a background that persists across steps (the simulator's: the real first frame,
replaced by G's output only where the band has passed; in training: f_t outside its objects),
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

__all__ = ["Composite", "compose", "dilate", "predict", "update_canvas"]

Predict = Callable[[Tensor, Tensor], Tensor]
"""G's call: (frames (B, 3, H, W), masks (B, 1, H, W)) -> (B, 3, H, W)."""


class Composite(NamedTuple):
    """What :func:`compose` returns (all (B, C, H, W) on the frames' device)."""

    image: Tensor
    """(B, 3, H, W) moved objects over the known canvas; 0 in holes."""
    band: Tensor
    """(B, 1, H, W) {0, 1}: where G's correction applies."""
    moved: Tensor
    """(B, 1, H, W) {0, 1}: union of the moved objects' masks."""


def dilate(masks: Tensor, px: int) -> Tensor:
    """Grow (B, 1, H, W) {0, 1} masks by ``px`` pixels (square neighbourhood)."""
    if px <= 0:
        return masks
    return F.max_pool2d(masks, 2 * px + 1, stride=1, padding=px)


def compose(frames: Tensor, objects: Tensor, theta: Tensor, moved: Tensor, canvas: Tensor,
            known: Tensor, band_px: int) -> Composite:
    """Move each object's pixels with its transform and lay them over the canvas.

    Args:
        frames: (B, 3, H, W) current frames f_t.
        objects: (B, K, H, W) {0, 1} the objects' masks in f_t.
        theta: (B, K, 2, 3) each object's ``input_from_output`` transform of this step.
        moved: (B, K, H, W) {0, 1} the objects' masks after the step (where the controls put
            them); an object's pixels land only inside its moved mask, the rest of the moved
            mask is a hole for G to fill.
        canvas: (B, 3, H, W) background to show where no object lands.
        known: (B, 1, H, W) {0, 1}: where ``canvas`` holds real content.
        band_px: width of the band around what changed where G's correction applies.

    Returns:
        A :class:`Composite`. Objects earlier in K are drawn over later ones.
    """
    b, k, h, w = objects.shape
    layers = torch.cat([frames.unsqueeze(1) * objects.unsqueeze(2), objects.unsqueeze(2)], 2)
    warped = ctl.warp_nearest(layers.reshape(b * k, 4, h, w), theta.reshape(b * k, 2, 3))
    warped = warped.view(b, k, 4, h, w)
    landed = (warped[:, :, 3:] * moved.unsqueeze(2)) > 0.5  # (B, K, 1, H, W)
    image = canvas * known
    for j in reversed(range(k)):  # object 0 ends on top
        image = torch.where(landed[:, j], warped[:, j, :3], image)
    cover = landed.any(dim=1).to(frames.dtype)  # (B, 1, H, W)
    moved_union = moved.amax(dim=1, keepdim=True)
    hole = torch.maximum((1.0 - cover) * (1.0 - known), moved_union * (1.0 - cover))
    image = image * (1.0 - hole)
    changed = torch.maximum(torch.maximum(moved_union, objects.amax(dim=1, keepdim=True)), hole)
    return Composite(image, dilate(changed, band_px), moved_union)


def predict(g: Predict, frames: Tensor, objects: Tensor, theta: Tensor, moved: Tensor,
            edited: Tensor, canvas: Tensor, known: Tensor, band_px: int
            ) -> tuple[Tensor, Composite]:
    """One composite step: ``composite + band * g(composite, edited)``, not clamped.

    Arguments as for :func:`compose`; ``g`` is G's call (``LayeredGenerator.predict_next``)
    and ``edited`` (B, 1, H, W) the control mask m_c it is given (the moved objects and the
    foreground that is not controlled). Returns the next frames (B, 3, H, W) and the composite.
    """
    comp = compose(frames, objects, theta, moved, canvas, known, band_px)
    correction = g(comp.image, edited)
    return comp.image + comp.band * correction.to(comp.image.dtype), comp


def update_canvas(canvas: Tensor, known: Tensor, frames: Tensor, comp: Composite
                  ) -> tuple[Tensor, Tensor]:
    """Take G's output into the canvas where the band passed and no object now stands.

    Everywhere else the canvas keeps what it held: the real first frame's pixels stay wherever
    no object has been near. Returns the new ``(canvas, known)``.
    """
    free = comp.band * (1.0 - comp.moved)
    return torch.where(free > 0.5, frames, canvas), torch.maximum(known, free)
