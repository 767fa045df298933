"""One optimiser step of any phase: the GAN alternation written out.

:func:`train_step`:
  1. generator update: the phase's loss (:data:`training.phase_losses.PHASE_LOSSES`), plus
     (once ``step >= disc_start``) the GAN term with the adaptive weight at G's last layer,
     ``opt_g`` step;
  2. discriminator update (once ``step >= disc_start``): D on [f_{t+1}, f^_{t+1}.detach()],
     ``opt_d`` step;
  3. bookkeeping: mask IoU against ground truth when the batch has it, code usage and the
     dead-code reset, the tensors of the sample grids.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from training import losses, metrics, schedules
from training.distributed import all_reduce_mean
from training.phase_losses import PHASE_LOSSES, PhaseLoss
from training.step_context import PHASES, FramePair, StepContext, use_channels_last

Logs = dict[str, float]


def train_step(ctx: StepContext, batch: dict[str, torch.Tensor], step: int) -> Logs:
    """One optimiser step of the current phase (generator, then discriminator).

    ``batch`` holds ``frame``, ``next_frame`` (B, 3, H, W) in [-1, 1] and ``index`` (B,)
    (optional: ``foreground`` (B, 1, H, W), logged against, never trained on); ``step`` is
    the global step. Returns the logs (unprefixed names).
    """
    loss_of_phase = PHASE_LOSSES.get(ctx.phase)
    if loss_of_phase is None:
        raise ValueError(f"StepContext.phase must be one of {PHASES}, got {ctx.phase!r}")
    pair = _pair_on_device(ctx, batch)
    logs: Logs = {"lr": _set_learning_rates(ctx, step)}
    out = loss_of_phase(ctx, pair, step)
    logs.update(out.logs)
    use_gan = ctx.config.disc_weight > 0 and step >= ctx.config.disc_start
    total = out.loss
    if use_gan:
        total = total + _generator_gan_term(ctx, out, logs)
    _update_generator(ctx, total, logs)
    if use_gan:
        _update_discriminator(ctx, pair.target, out.pred, logs)
    _record(ctx, batch, step, pair, out, logs)
    return logs


def _pair_on_device(ctx: StepContext, batch: dict[str, torch.Tensor]) -> FramePair:
    memory = (torch.channels_last if use_channels_last(ctx.config, ctx.device)
              else torch.contiguous_format)
    frame = batch["frame"].to(ctx.device, non_blocking=True).contiguous(memory_format=memory)
    target = batch["next_frame"].to(ctx.device, non_blocking=True).contiguous(
        memory_format=memory)
    return FramePair(frame, target, batch.get("index"))


def _set_learning_rates(ctx: StepContext, step: int) -> float:
    """Set both optimisers' learning rates for ``step`` (warm-up from the phase's start)."""
    cfg = ctx.config
    lr = ctx.base_lr * schedules.lr_factor(step - ctx.phase_start, cfg.warmup_steps)
    for group in ctx.opt_g.param_groups:
        group["lr"] = lr
    for group in ctx.opt_d.param_groups:
        group["lr"] = lr * cfg.disc_lr_factor
    return lr


def _generator_gan_term(ctx: StepContext, out: PhaseLoss, logs: Logs) -> torch.Tensor:
    """Return the generator's GAN loss times the adaptive weight (D gets no gradient)."""
    cfg = ctx.config
    params = {k: v.detach() for k, v in ctx.discriminator.named_parameters()}
    with ctx.autocast():
        logits_fake = functional_call(ctx.discriminator, params, (out.pred,))
    g_loss, g_logs = losses.generator_gan_loss(logits_fake, cfg.disc_loss)
    d_weight = losses.adaptive_gan_weight(
        out.nll, g_loss, ctx.generator.last_layer, cfg.disc_weight,
        reduce=lambda t: all_reduce_mean(t, ctx.dist))
    logs.update(g_logs)
    logs["d_weight"] = float(d_weight)
    return d_weight * g_loss


def _update_generator(ctx: StepContext, total: torch.Tensor, logs: Logs) -> None:
    ctx.opt_g.zero_grad(set_to_none=True)
    total.backward()
    if ctx.config.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(
            [p for g in ctx.opt_g.param_groups for p in g["params"]], ctx.config.grad_clip)
        logs["grad_norm"] = float(norm)
    ctx.opt_g.step()
    logs["total_loss"] = float(total.detach())


def _update_discriminator(ctx: StepContext, target: torch.Tensor, pred: torch.Tensor,
                          logs: Logs) -> None:
    b = target.shape[0]
    with ctx.autocast():
        logits = ctx.disc_forward(torch.cat([target, pred.detach().to(target.dtype)], 0))
    d_loss, d_logs = losses.discriminator_loss(logits[:b], logits[b:], ctx.config.disc_loss)
    ctx.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    ctx.opt_d.step()
    logs.update(d_logs)


def _record(ctx: StepContext, batch: dict[str, torch.Tensor], step: int, pair: FramePair,
            out: PhaseLoss, logs: Logs) -> None:
    """Mask IoU, code usage (and the dead-code reset when due), the last step's tensors."""
    cfg = ctx.config
    if "foreground" in batch:  # ground truth, when the data has it: logged, never trained on
        with torch.no_grad():
            fg_true = batch["foreground"].to(ctx.device)
            logs["mask_iou"] = float(metrics.mask_iou(out.masks.float(), fg_true).mean())
    if cfg.code_reset_every > 0:
        ctx.code_usage += torch.bincount(out.codes.flatten(),
                                         minlength=ctx.code_usage.numel()).to(ctx.code_usage)
        if (step + 1) % cfg.code_reset_every == 0:
            logs["codes_reset"] = float(reset_dead_codes(ctx, out.frame, out.masks.detach()))
    ctx.last = {"frame": out.frame.detach(), "target": pair.target.detach(),
                "pred": out.pred.detach(), "masks": out.masks.detach()}
    if out.control is not None and out.pred_control is not None:
        ctx.last["control"] = out.control.detach()
        ctx.last["pred_control"] = out.pred_control.detach()


@torch.no_grad()
def reset_dead_codes(ctx: StepContext, frame: torch.Tensor, masks: torch.Tensor) -> int:
    """Re-initialise codes unused since the last reset to random encoder outputs.

    The encoder outputs come from the layers of this batch (frame (B, 3, H, W), masks (B, 1, H,
    W)); the Adam moments of the replaced rows are zeroed. With several processes, rank 0's
    codebook is broadcast. Returns the number of codes replaced.
    """
    g = ctx.generator
    usage = ctx.code_usage
    if ctx.dist.enabled:
        torch.distributed.all_reduce(usage)
    dead = (usage == 0).nonzero().flatten()
    usage.zero_()
    if dead.numel() == 0:
        return 0
    fg = frame * masks
    z_e = g.quant_conv(g.encoder(torch.cat([fg, frame - fg], 0))).float()  # (2B, C, h, w)
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])  # (2B h w, C)
    pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
    weight = g.quantizer.embedding.weight
    weight[dead] = flat[pick].to(weight.dtype)
    if ctx.dist.enabled:
        torch.distributed.broadcast(weight.data, src=0)
    state = ctx.opt_g.state.get(weight, {})
    for key in ("exp_avg", "exp_avg_sq"):
        if key in state:
            state[key][dead] = 0
    return int(dead.numel())
