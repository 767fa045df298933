"""Stage II inputs besides the real f_t: self-forced frames, and a composite generator's canvas.

Self-forcing replaces f_t by the generator's own output; a composite generator
(``ModelConfig.prediction``) corrects the composite the fitted transforms imply. Both run
without gradient; :mod:`training.phase_losses` calls them.
"""

from __future__ import annotations

import torch

from lcvg_env import compositing, shadows
from lcvg_env import control as ctl
from training.pseudo_control import PseudoBatch
from training.step_context import StepContext


def composite_inputs(ctx: StepContext, frame: torch.Tensor, pseudo: PseudoBatch,
                     ) -> tuple[compositing.Composite, torch.Tensor]:
    """Return the composite of a stage II pair and its control mask m_c, as the simulator would.

    Each fitted object of f_t moves with its transform (nearest pixel) over f_t's background
    (known outside the fitted objects, freed of f_t's drop shadow, which is cast again from
    where the objects go: ``lcvg_env.shadows``); the foreground beyond them stays in place.
    """
    assert pseudo.parts is not None and pseudo.theta is not None
    with torch.no_grad():
        parts = pseudo.parts.float()
        b, k, h, w = parts.shape
        moved = ctl.warp_nearest(parts.reshape(b * k, 1, h, w),
                                 pseudo.theta.reshape(b * k, 2, 3)).view(b, k, h, w)
        before = parts.amax(dim=1, keepdim=True)
        known = 1.0 - before
        # the drop shadow moves with its caster, as the simulator casts it
        casters = torch.cat([parts, pseudo.rest.float()], dim=1)
        shadow = shadows.fit_drop_shadow(frame.float(), casters)
        unshadowed = shadows.remove(frame.float(), shadow, casters)
        gain = None
        if ctx.generator.config.shading:  # relit as the simulator relights them
            light = ctx.generator.illumination(unshadowed, known)
            gain = compositing.shading_gain(light, pseudo.theta, moved)
        canvas, drawn = shadows.cast(compositing.fill_canvas(unshadowed, known), shadow,
                                     torch.cat([moved, pseudo.rest.float()], dim=1))
        comp = compositing.compose(compositing.matte(frame.float(), parts), pseudo.theta,
                                   moved, canvas, known, ctx.generator.config.band_px, before,
                                   gain, drawn=drawn)
        control = torch.maximum(comp.moved, pseudo.rest)
    return comp, control


@torch.no_grad()
def self_forced_inputs(ctx: StepContext, frame: torch.Tensor, masks: torch.Tensor,
                       probability: float, max_steps: int = 1,
                       parts: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
    """Replace a random share of the input frames by the generator's own k-step output.

    The simulator feeds generated frames back into G; trained on real frames only, G drifts
    out of its input distribution within a few steps (colours wash out, blobs appear).
    ``G(f_t, binarise(M(f_t)))`` is a generated-looking f_t with the objects nearly in place
    (nothing tells G how they move), so stage II then learns the controlled step from inputs
    like the ones it will see. Draws from torch's global RNG (restored on resume). A composite
    generator (``ModelConfig.prediction``) makes the replacement its own way: its correction
    of f_t with every fitted object left in place.

    Args:
        ctx: the step context (its ``generator`` and ``autocast`` are used).
        frame: (B, 3, H, W) real f_t in [-1, 1].
        masks: (B, 1, H, W) binarised masks of f_t.
        probability: chance per pair of the replacement.
        max_steps: k is drawn uniformly from 1..max_steps (one k per call; nothing is drawn
            for 1); steps after the first use binarise(M(.)) of the previous output.
        parts: (B, K, H, W) the objects of ``masks`` (needed by a composite generator).

    Returns:
        The (B, 3, H, W) input frames and the share that was replaced.
    """
    pick = torch.rand(frame.shape[0], device=frame.device) < probability  # (B,)
    if not bool(pick.any()):
        return frame, 0.0
    steps = 1 if max_steps == 1 else int(torch.randint(1, max_steps + 1, ()).item())
    g = ctx.generator
    generated, m = frame[pick], masks[pick]
    with ctx.autocast():
        for k in range(steps):
            if g.config.prediction == "composite":
                if parts is None:
                    raise ValueError("a composite generator needs the objects' parts")
                objects = parts[pick].float()
                n, j = objects.shape[:2]
                still = ctl.identity_matrix(n * j, device=frame.device).view(n, j, 2, 3)
                before = objects.amax(dim=1, keepdim=True)
                known = 1.0 - before
                generated, _ = compositing.predict(
                    g.predict_next, compositing.matte(generated.float(), objects), still,
                    objects, m, compositing.fill_canvas(generated.float(), known), known,
                    g.config.band_px, before)
            else:
                if k:
                    m = g.binary_mask(generated)
                generated = g.predict_next(generated, m)
            generated = generated.float().clamp(-1.0, 1.0)
    out = frame.clone()
    out[pick] = generated.to(frame.dtype)
    return out, float(pick.float().mean())
