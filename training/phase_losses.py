"""The generator's loss of each phase: forward pass, then the phase's loss terms.

Each phase has one function ``loss(ctx, pair, step) -> PhaseLoss`` (``step`` is the global
step), listed in :data:`PHASE_LOSSES`:

* :func:`stage1_loss`: M and G from (f_t, f_{t+1}) with M's soft masks;
  L_img + lambda_bg L_bg + lambda_fg L_fg + lambda_bin L_bin.
* :func:`stage2_loss`: G from the binarised pseudo-control mask (M frozen);
  L_img + lambda'_bg L'_bg.
* :func:`single_loss`: the single-stage ablation, both in one batched forward.

with L_img = rec + lambda_VQ VQ + lambda_p perceptual; the adaptive GAN term is added by
:func:`training.step.train_step`, from ``PhaseLoss.nll`` and ``PhaseLoss.pred``.

Backward sums a tensor's gradients in the order its uses were built, and a slice (even of all
rows) changes the gradient's layout, so the order of the terms and where the forward's
outputs are sliced are part of a run's numbers (in their last bits): keep them when editing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from training import losses, schedules
from training.config import TrainConfig
from training.pseudo_control import PseudoBatch
from training.stage2_inputs import composite_inputs, self_forced_inputs
from training.step_context import FramePair, StepContext

Logs = dict[str, float]


@dataclass
class PhaseLoss:
    """What a phase's loss function hands to the step: the loss and what the rest needs."""

    loss: torch.Tensor
    """() the generator's loss without the GAN term."""
    nll: torch.Tensor
    """() reconstruction + perceptual terms of ``pred`` (the adaptive GAN weight's reference)."""
    logs: Logs
    """Detached floats, unprefixed names."""
    frame: torch.Tensor
    """(B, 3, H, W) the generator's input frames (f_t, or its self-forced replacement)."""
    pred: torch.Tensor
    """(B, 3, H, W) float32 the prediction the discriminator judges."""
    masks: torch.Tensor
    """(B, 1, H, W) the masks ``pred`` was made with (M's; the control in stage II)."""
    codes: torch.Tensor
    """Code indices of the whole forward, (2, B', h', w')."""
    control: torch.Tensor | None = None
    """(B, 1, H, W) the pseudo-control mask m_c (stage II and single), else None."""
    pred_control: torch.Tensor | None = None
    """(B, 3, H, W) the prediction from ``control``, else None."""


def stage1_loss(ctx: StepContext, pair: FramePair, step: int) -> PhaseLoss:
    """Stage I: G predicts f_{t+1} from M's soft masks; the mask terms train M."""
    cfg = ctx.config
    frame, target = pair.frame, pair.target
    logs: Logs = {}
    changed = losses.changed_pixels(frame, target, cfg.fg_tau, cfg.fg_diff)
    with ctx.autocast():
        pred, masks, vq, perplexity, codes, next_masks = ctx.forward(
            frame, None, False, target if cfg.bg_mask == "pair_union" else None)
    b = frame.shape[0]
    pred = pred.float()[:b]  # all rows, yet a slice: see the module docstring
    total, nll = _image_loss(ctx, pred, target, vq, perplexity, _pixel_weight(cfg, changed),
                             logs)
    for term in _mask_terms(ctx, masks, next_masks, pair, changed, step - ctx.phase_start,
                            logs):
        total = total + term
    return PhaseLoss(total, nll, logs, frame, pred, masks[:b], codes)


def stage2_loss(ctx: StepContext, pair: FramePair, step: int) -> PhaseLoss:
    """Stage II: G predicts f_{t+1} from the pseudo control of the pair (M frozen).

    With ``self_forcing`` a share of the inputs is the generator's own output; a composite
    generator predicts its correction of the composite of the fitted transforms.
    """
    cfg = ctx.config
    target = pair.target
    logs: Logs = {}
    pseudo = _fit_pseudo_control(ctx, pair, logs)
    changed = losses.changed_pixels(pair.frame, target, cfg.fg_tau, cfg.fg_diff)  # real f_t
    frame = pair.frame
    if cfg.self_forcing > 0:
        frame, logs["self_forced"] = self_forced_inputs(
            ctx, frame, pseudo.m_t, cfg.self_forcing, cfg.self_forcing_steps, pseudo.parts)
    control = pseudo.m_c
    composite = None
    if ctx.generator.config.prediction == "composite":
        composite, control = composite_inputs(ctx, frame, pseudo)
    with ctx.autocast():
        pred, masks, vq, perplexity, codes, _ = ctx.forward(
            frame if composite is None else composite.image, control, False, None)
    pred = pred.float()
    if composite is not None:
        pred = composite.image + composite.band * pred
    judged = pred[:frame.shape[0]]  # all rows, yet a slice: see the module docstring
    total, nll = _image_loss(ctx, judged, target, vq, perplexity, _pixel_weight(cfg, changed),
                             logs)
    total = total + _stage2_background(ctx, pseudo, pred, target, control, logs)
    return PhaseLoss(total, nll, logs, frame, judged, masks[:frame.shape[0]], codes, control,
                     pred)


def single_loss(ctx: StepContext, pair: FramePair, step: int) -> PhaseLoss:
    """Compute the single-stage ablation's loss: stage I's and stage II's in every step.

    One forward makes both predictions (from M's masks, then from the pseudo control of the
    current M); the schedules of the mask terms run on the global step.
    """
    cfg = ctx.config
    frame, target = pair.frame, pair.target
    logs: Logs = {}
    pseudo = _fit_pseudo_control(ctx, pair, logs)
    changed = losses.changed_pixels(frame, target, cfg.fg_tau, cfg.fg_diff)
    control = pseudo.m_c
    with ctx.autocast():
        pred, masks, vq, perplexity, codes, next_masks = ctx.forward(
            frame, control, True, target if cfg.bg_mask == "pair_union" else None)
    pred = pred.float()
    b = frame.shape[0]
    from_masks = pred[:b]
    pixel_weight = _pixel_weight(cfg, changed)
    total, nll = _image_loss(ctx, from_masks, target, vq, perplexity, pixel_weight, logs)
    for term in _mask_terms(ctx, masks, next_masks, pair, changed, step, logs):
        total = total + term
    from_control = pred[b:]  # sliced after the mask terms: see the module docstring
    rec2, _ = losses.reconstruction_loss(from_control, target, cfg.rec_weight, pixel_weight)
    total = total + rec2
    logs["rec2_loss"] = float(rec2.detach()) / max(cfg.rec_weight, 1e-12)
    total = total + _stage2_background(ctx, pseudo, from_control, target, control, logs)
    return PhaseLoss(total, nll, logs, frame, from_masks, masks[:b], codes, control,
                     from_control)


PHASE_LOSSES: dict[str, Callable[[StepContext, FramePair, int], PhaseLoss]] = {
    "stage1": stage1_loss,
    "stage2": stage2_loss,
    "single": single_loss,
}
"""The loss function of each phase name."""


# ------------------------------------------------------------------------------------ terms
def _fit_pseudo_control(ctx: StepContext, pair: FramePair, logs: Logs) -> PseudoBatch:
    """Fit the pair's pseudo control, without gradient, with M in eval mode.

    M is frozen (eval) in stage II already; the single stage puts it back in its mode after.
    """
    net = ctx.generator.mask_net
    was_training = net.training
    net.eval()
    pseudo = ctx.pseudo.fit(ctx.generator.mask, pair.frame, pair.target, pair.index)
    net.train(was_training)
    logs.update(pseudo.logs)
    return pseudo


def _pixel_weight(cfg: TrainConfig, changed: torch.Tensor) -> torch.Tensor | None:
    """Per-pixel L1 weights (B, 1, H, W) from the changed pixels, or None (plain L1)."""
    if cfg.rec_motion_weight > 0:
        return losses.motion_weights(changed, cfg.rec_motion_weight)
    return None


def _image_loss(ctx: StepContext, pred: torch.Tensor, target: torch.Tensor,
                vq: torch.Tensor, perplexity: torch.Tensor,
                pixel_weight: torch.Tensor | None, logs: Logs
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """L_img without the GAN term: returns (rec + perceptual + VQ, rec + perceptual)."""
    cfg = ctx.config
    rec, rec_logs = losses.reconstruction_loss(pred, target, cfg.rec_weight, pixel_weight)
    vq_term, vq_logs = losses.vq_loss_term(vq, cfg.vq_weight)
    perc, perc_logs = losses.perceptual_loss(ctx.perceptual, pred, target,
                                             cfg.perceptual_weight)
    logs.update(rec_logs | vq_logs | perc_logs)
    logs["perplexity"] = float(perplexity)
    nll = rec + perc
    return nll + vq_term, nll


def _mask_terms(ctx: StepContext, masks: torch.Tensor, next_masks: torch.Tensor | None,
                pair: FramePair, changed: torch.Tensor, ratio_step: int, logs: Logs
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the weighted terms that train M, (L_bg, L_fg, L_bin), in their summing order.

    ``masks`` (B', 1, H, W) are the forward's masks, M's soft masks of f_t in the first B rows;
    ``next_masks`` (B, 1, H, W) those of f_{t+1} (``bg_mask="pair_union"``) or None;
    ``ratio_step`` drives the L_fg and L_bin schedules.
    """
    cfg = ctx.config
    b = pair.frame.shape[0]
    soft = masks[:b].float()
    if next_masks is not None:
        soft = losses.pair_union(soft, next_masks)
    w_fg = schedules.fg_weight(ratio_step, cfg.bg_weight, cfg.ratio_start, cfg.ratio_end,
                               cfg.ratio_halve_every)
    w_bg = cfg.bg_weight if cfg.bg_loss else 0.0
    bg, bg_logs = losses.background_loss(soft, pair.frame.float(), pair.target.float(), w_bg)
    prior: torch.Tensor | float = changed if cfg.fg_prior == "dynamic" else cfg.fixed_prior
    fg, fg_logs = losses.size_prior_loss(soft, prior, w_fg, cfg.fg_hinge)
    w_bin = cfg.bin_weight * schedules.ramp(ratio_step, cfg.bin_ramp_steps)
    both = masks[:b] if next_masks is None else torch.cat([masks[:b], next_masks])
    bn, bin_logs = losses.binarization_loss(both, w_bin)
    logs["bin_weight"] = w_bin
    logs.update(bg_logs | fg_logs | bin_logs)
    logs["fg_weight"] = w_fg
    logs["bg_weight"] = w_bg
    return bg, fg, bn


def _stage2_background(ctx: StepContext, pseudo: PseudoBatch, pred: torch.Tensor,
                       target: torch.Tensor, control: torch.Tensor, logs: Logs) -> torch.Tensor:
    """Return the weighted L'_bg of the prediction from the control (outside binarised m_t)."""
    bg2, bg2_logs = losses.stage2_background_loss(pseudo.m_t, pred, target,
                                                  ctx.config.stage2_bg_weight)
    logs.update(bg2_logs)
    logs["control_size"] = float(control.mean())
    return bg2
