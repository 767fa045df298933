"""The training loop of both stages: one step function, the GAN alternation written out.

A run is a list of phases, each a number of optimiser steps with one step function:

* ``stage1``: M and G learn together from (f_t, f_{t+1}) with soft masks;
  loss = L_img + lambda_bg L_bg + lambda_fg L_fg + lambda_bin L_bin.
* ``stage2``: M is frozen (out of the optimiser, eval mode, no gradient); G learns from the
  binarised pseudo-control mask; loss = L_img + lambda'_bg L'_bg.
* ``single``: the single-stage ablation, stage I and stage II losses in every step.

with L_img = rec + lambda_VQ VQ + lambda_p perceptual + adaptive GAN. The global step counts on
across phases (stage II of a 3000 + 1000 run has steps 3000 ... 3999); metric keys are
``<phase>/train/<name>``.

Each step (:func:`train_step`):
  1. generator update: forward (DDP-wrapped), losses, the adaptive GAN weight at G's last
     layer, ``opt_g`` step;
  2. discriminator update (once ``step >= disc_start``): D on [f_{t+1}, f^_{t+1}.detach()],
     ``opt_d`` step.

Exact resume: the data order is a function of the step (``ResumableBatchSampler``); weights,
both optimisers, the RNG states (torch, numpy, python) and the pseudo-control cache are saved
in ``checkpoints/last.safetensors`` every ``checkpoint_every`` steps and when stopped (SIGINT /
SIGTERM or a hook).
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from lcvg_env import compositing
from lcvg_env import control as ctl
from lcvg_env.checkpoint import load_checkpoint, load_weights_strict, save_checkpoint
from lcvg_env.device import resolve_device
from lcvg_env.models import LayeredGenerator
from training import losses, metrics, schedules
from training.config import TrainConfig, apply_ablation
from training.discriminator import PatchDiscriminator
from training.distributed import (
    DistInfo,
    ResumableBatchSampler,
    all_reduce_mean,
    barrier,
    init_distributed,
)
from training.pseudo_control import PseudoBatch, PseudoControl
from training.run_dir import RunDir, mask_overlay

TRAINING_STATE_VERSION = 1


@dataclass(frozen=True)
class Phase:
    """One phase of a run: its name (metric prefix) and its number of steps."""

    name: str
    """"stage1", "stage2" or "single"."""
    steps: int
    """Optimiser steps of the phase."""


def plan_phases(config: TrainConfig) -> list[Phase]:
    """Return the phases ``config`` asks for (``stage`` and the single_stage ablation)."""
    if config.ablate == "single_stage":
        return [Phase("single", config.stage1_steps + config.stage2_steps)]
    out = []
    if config.stage in ("1", "both"):
        out.append(Phase("stage1", config.stage1_steps))
    if config.stage in ("2", "both"):
        out.append(Phase("stage2", config.stage2_steps))
    return out


class _Forward(nn.Module):
    """The generator's forward for one training step, as one module call (what DDP needs).

    ``forward(frames, control=None, joint=False, next_frames=None)``: stage I (control None)
    uses M's soft masks; stage II uses ``control``; ``joint`` does both in one batched call
    (frames repeated). With ``next_frames`` (B, 3, H, W), M also runs on them, in the same
    call as on ``frames``. Returns (pred (B', 3, H, W), masks (B', 1, H, W), vq_loss (),
    perplexity (), code indices (2, B', h', w'), next masks (B, 1, H, W) or None).
    """

    def __init__(self, generator: LayeredGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, frames: torch.Tensor, control: torch.Tensor | None = None,
                joint: bool = False, next_frames: torch.Tensor | None = None
                ) -> tuple[torch.Tensor | None, ...]:
        """See the class docstring."""
        g = self.generator
        b = frames.shape[0]
        next_masks = None
        if control is None or joint:
            if next_frames is None:
                soft = g.mask(frames)
            else:
                both = g.mask(torch.cat([frames, next_frames], 0))
                soft, next_masks = both[:b], both[b:]
        if control is None:
            masks = soft
        elif joint:
            masks = torch.cat([soft, control], 0)
            frames = torch.cat([frames, frames], 0)
        else:
            masks = control
        latents = g.encode_layers(frames, masks)
        pred = g.decode(latents.foreground + latents.background)
        return pred, masks, latents.vq_loss, latents.perplexity, latents.indices, next_masks


@dataclass
class StepContext:
    """Everything one training step touches."""

    config: TrainConfig
    generator: LayeredGenerator
    forward: nn.Module
    discriminator: PatchDiscriminator
    disc_forward: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    device: torch.device
    dist: DistInfo
    pseudo: PseudoControl
    perceptual: nn.Module | None = None
    base_lr: float = 1e-4
    phase: str = "stage1"
    phase_start: int = 0
    last: dict[str, torch.Tensor] = field(default_factory=dict)
    code_usage: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def autocast(self) -> Any:
        """bf16 autocast on CUDA (``amp`` auto/bf16), a null context otherwise."""
        amp = self.config.amp
        use = (amp == "bf16") or (amp == "auto" and self.device.type == "cuda")
        if not use:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def _channels_last(config: TrainConfig, device: torch.device) -> bool:
    return config.channels_last == "on" or (config.channels_last == "auto"
                                            and device.type == "cpu")


def train_step(ctx: StepContext, batch: dict[str, torch.Tensor], step: int) -> dict[str, float]:
    """One optimiser step of the current phase (generator, then discriminator).

    ``batch`` holds ``frame``, ``next_frame`` (B, 3, H, W) in [-1, 1] and ``index`` (B,);
    ``step`` is the global step. Returns the logs (unprefixed names).
    """
    cfg, phase = ctx.config, ctx.phase
    memory = torch.channels_last if _channels_last(cfg, ctx.device) else torch.contiguous_format
    frame = batch["frame"].to(ctx.device, non_blocking=True).contiguous(memory_format=memory)
    target = batch["next_frame"].to(ctx.device, non_blocking=True).contiguous(
        memory_format=memory)
    index = batch.get("index")
    local_step = step - ctx.phase_start
    logs: dict[str, float] = {}

    lr = ctx.base_lr * schedules.lr_factor(local_step, cfg.warmup_steps)
    for group in ctx.opt_g.param_groups:
        group["lr"] = lr
    for group in ctx.opt_d.param_groups:
        group["lr"] = lr * cfg.disc_lr_factor
    logs["lr"] = lr

    # ---- pseudo control (no gradient; M frozen in stage II, current M in the single stage)
    control = m_t_bin = None
    pseudo: PseudoBatch | None = None
    composite = phase == "stage2" and ctx.generator.config.prediction == "composite"
    if phase in ("stage2", "single"):
        was_training = ctx.generator.mask_net.training
        if phase == "single":
            ctx.generator.mask_net.eval()
        pseudo = ctx.pseudo.fit(ctx.generator.mask, frame, target, index)
        m_t_bin, control = pseudo.m_t, pseudo.m_c
        ctx.generator.mask_net.train(was_training)
        logs.update(pseudo.logs)
    changed = losses.changed_pixels(frame, target, cfg.fg_tau, cfg.fg_diff)  # real f_t, f_{t+1}
    if phase == "stage2" and cfg.self_forcing > 0:
        assert pseudo is not None
        frame, forced = self_forced_inputs(ctx, frame, pseudo.m_t, cfg.self_forcing,
                                           cfg.self_forcing_steps, pseudo.parts)
        logs["self_forced"] = forced
    comp = None
    if composite:  # G corrects the composite the fitted transforms imply (lcvg_env.compositing)
        assert pseudo is not None
        comp, control = _composite_inputs(ctx, frame, pseudo)

    # ---- 1. generator update
    use_gan = cfg.disc_weight > 0 and step >= cfg.disc_start
    with ctx.autocast():
        union = phase in ("stage1", "single") and cfg.bg_mask == "pair_union"
        pred, masks, vq, perplexity, codes, next_masks = ctx.forward(
            frame if comp is None else comp.image, control, phase == "single",
            target if union else None)
    b = frame.shape[0]
    pred = pred.float()
    if comp is not None:
        pred = comp.image + comp.band * pred
    pred1 = pred[:b]
    pixel_weight = (losses.motion_weights(changed, cfg.rec_motion_weight)
                    if cfg.rec_motion_weight > 0 else None)
    rec, rl = losses.reconstruction_loss(pred1, target, cfg.rec_weight, pixel_weight)
    vq_term, vl = losses.vq_loss_term(vq, cfg.vq_weight)
    perc, pl = losses.perceptual_loss(ctx.perceptual, pred1, target, cfg.perceptual_weight)
    logs.update(rl | vl | pl)
    logs["perplexity"] = float(perplexity)
    nll = rec + perc
    total = nll + vq_term

    if phase in ("stage1", "single"):
        soft = masks[:b].float()
        if next_masks is not None:  # bg_mask "pair_union"
            soft = losses.pair_union(soft, next_masks)
        ratio_step = local_step if phase == "stage1" else step
        w_fg = schedules.fg_weight(ratio_step, cfg.bg_weight, cfg.ratio_start, cfg.ratio_end,
                                   cfg.ratio_halve_every)
        w_bg = cfg.bg_weight if cfg.bg_loss else 0.0
        bg, bl = losses.background_loss(soft, frame.float(), target.float(), w_bg)
        if cfg.fg_prior == "dynamic":
            prior: torch.Tensor | float = changed
        else:
            prior = cfg.fixed_prior
        fg, fl = losses.size_prior_loss(soft, prior, w_fg, cfg.fg_hinge)
        w_bin = cfg.bin_weight * schedules.ramp(ratio_step, cfg.bin_ramp_steps)
        bn, bnl = losses.binarization_loss(
            masks[:b] if next_masks is None else torch.cat([masks[:b], next_masks]), w_bin)
        logs["bin_weight"] = w_bin
        total = total + bg + fg + bn
        logs.update(bl | fl | bnl)
        logs["fg_weight"] = w_fg
        logs["bg_weight"] = w_bg
    if phase in ("stage2", "single"):
        assert m_t_bin is not None and control is not None
        pred2 = pred[b:] if phase == "single" else pred
        if phase == "single":
            rec2, _ = losses.reconstruction_loss(pred2, target, cfg.rec_weight, pixel_weight)
            total = total + rec2
            logs["rec2_loss"] = float(rec2.detach()) / max(cfg.rec_weight, 1e-12)
        bg2, b2l = losses.stage2_background_loss(m_t_bin, pred2, target, cfg.stage2_bg_weight)
        total = total + bg2
        logs.update(b2l)
        logs["control_size"] = float(control.mean())

    if use_gan:
        params = {k: v.detach() for k, v in ctx.discriminator.named_parameters()}
        with ctx.autocast():
            logits_fake = functional_call(ctx.discriminator, params, (pred1,))
        g_loss, gl = losses.generator_gan_loss(logits_fake, cfg.disc_loss)
        d_weight = losses.adaptive_gan_weight(
            nll, g_loss, ctx.generator.last_layer, cfg.disc_weight,
            reduce=lambda t: all_reduce_mean(t, ctx.dist))
        total = total + d_weight * g_loss
        logs.update(gl)
        logs["d_weight"] = float(d_weight)

    ctx.opt_g.zero_grad(set_to_none=True)
    total.backward()
    if cfg.grad_clip > 0:
        norm = torch.nn.utils.clip_grad_norm_(
            [p for g in ctx.opt_g.param_groups for p in g["params"]], cfg.grad_clip)
        logs["grad_norm"] = float(norm)
    ctx.opt_g.step()
    logs["total_loss"] = float(total.detach())

    # ---- 2. discriminator update
    if use_gan:
        with ctx.autocast():
            logits = ctx.disc_forward(torch.cat([target, pred1.detach().to(target.dtype)], 0))
        d_loss, dl = losses.discriminator_loss(logits[:b], logits[b:], cfg.disc_loss)
        ctx.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        ctx.opt_d.step()
        logs.update(dl)

    if "foreground" in batch:  # ground truth, when the data has it: logged, never trained on
        with torch.no_grad():
            fg_true = batch["foreground"].to(ctx.device)
            logs["mask_iou"] = float(metrics.mask_iou(masks[:b].float(), fg_true).mean())
    if cfg.code_reset_every > 0:
        ctx.code_usage += torch.bincount(codes.flatten(), minlength=ctx.code_usage.numel()).to(
            ctx.code_usage)
        if (step + 1) % cfg.code_reset_every == 0:
            logs["codes_reset"] = float(reset_dead_codes(ctx, frame, masks[:b].detach()))

    ctx.last = {"frame": frame.detach(), "target": target.detach(),
                "pred": pred1.detach(), "masks": masks[:b].detach()}
    if control is not None:
        ctx.last["control"] = control.detach()
        ctx.last["pred_control"] = (pred[b:] if phase == "single" else pred).detach()
    return logs


def _composite_inputs(ctx: StepContext, frame: torch.Tensor, pseudo: PseudoBatch,
                      ) -> tuple[compositing.Composite, torch.Tensor]:
    """Return the composite of a stage II pair and its control mask m_c, as the simulator would.

    Each fitted object of f_t moves with its transform (nearest pixel) over f_t's background
    (known outside the fitted objects); the foreground beyond them stays in place.
    """
    assert pseudo.parts is not None and pseudo.theta is not None
    with torch.no_grad():
        parts = pseudo.parts.float()
        b, k, h, w = parts.shape
        moved = ctl.warp_nearest(parts.reshape(b * k, 1, h, w),
                                 pseudo.theta.reshape(b * k, 2, 3)).view(b, k, h, w)
        known = 1.0 - parts.amax(dim=1, keepdim=True)
        comp = compositing.compose(frame.float(), parts, pseudo.theta, moved, frame.float(),
                                   known, ctx.generator.config.band_px)
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
                generated, _ = compositing.predict(
                    g.predict_next, generated.float(), objects, still, objects, m,
                    generated.float(), 1.0 - objects.amax(dim=1, keepdim=True),
                    g.config.band_px)
            else:
                if k:
                    m = g.binary_mask(generated)
                generated = g.predict_next(generated, m)
            generated = generated.float().clamp(-1.0, 1.0)
    out = frame.clone()
    out[pick] = generated.to(frame.dtype)
    return out, float(pick.float().mean())


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


# ------------------------------------------------------------------------------------ state
def rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and CUDA), numpy and python, checkpoint-storable."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(np_state[0]), "keys": np.asarray(np_state[1]),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached": float(np_state[4])},
        "python": _python_state_to_storable(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def _python_state_to_storable(state: tuple) -> dict[str, Any]:
    version, internal, gauss = state
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].to(torch.uint8))
    n = state["numpy"]
    np.random.set_state((n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["internal"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in state["cuda"]])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python's random."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# ---------------------------------------------------------------------------------- trainer
Hook = Callable[["Trainer", int, dict[str, float]], None]


class Trainer:
    """Runs the phases of a :class:`TrainConfig` into a run folder (rank 0 writes).

    ``hooks`` are called after every step as ``hook(trainer, step, logs)``; a hook (or a
    signal) may call :meth:`request_stop` to end the run with a checkpoint.
    """

    def __init__(self, config: TrainConfig, out_dir: str | Path, resume: bool = False,
                 argv: list[str] | None = None, hooks: list[Hook] | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config)}")
        if not config.data:
            raise ValueError("TrainConfig.data is empty: pass --data DIR (the dataset root)")
        self.raw_config = config
        self.config = apply_ablation(config)
        self.device = resolve_device(config.device)
        self.dist = init_distributed(self.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if config.batch_size % self.dist.world_size:
            raise ValueError(
                f"batch_size {config.batch_size} is not divisible by the {self.dist.world_size} "
                "processes")
        self.run = RunDir(out_dir, enabled=self.dist.is_main)
        self.argv = argv or []
        self.hooks = list(hooks or [])
        self.phases = plan_phases(self.config)
        self._stop = False
        self.finished = False
        self.final_eval: dict[str, Any] | None = None
        self.step = 0
        self.phase_index = 0
        if config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        seed_everything(config.seed)
        self.generator = LayeredGenerator(self.config.model).to(self.device)
        self.generator.check_values = self.device.type == "cpu"
        c = self.config
        self.discriminator = PatchDiscriminator(3, c.disc_ndf, c.disc_layers, c.disc_norm).to(
            self.device)
        if _channels_last(c, self.device):
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        self.base_lr = c.learning_rate * (c.batch_size if c.scale_lr else 1)
        self.perceptual = None
        if c.perceptual_weight > 0:
            from training.perceptual import VGG16Perceptual
            self.perceptual = VGG16Perceptual.from_file(c.perceptual_weights or None).to(
                self.device)
        self.pseudo = PseudoControl(c.control_source, c.fit_iterations,
                                    cache=c.fit_cache and not c.flip, objects=c.control_objects)
        betas = (c.adam_beta1, c.adam_beta2)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(),
                                      lr=self.base_lr * c.disc_lr_factor, betas=betas)
        self.opt_g = self._make_opt_g(self.phases[0].name if self.phases else "stage1")
        self.code_usage = torch.zeros(c.model.n_embed, dtype=torch.long, device=self.device)
        self._resumed = False
        if resume:
            self._load_resume()
        elif c.init:
            ckpt = load_checkpoint(c.init)
            load_weights_strict(self.generator, ckpt.weights)

    # -------------------------------------------------------------------------- pieces
    def _make_opt_g(self, phase: str, previous: torch.optim.Optimizer | None = None
                    ) -> torch.optim.Optimizer:
        """Adam over G's trainable parameters; stage II leaves M out (and freezes it)."""
        frozen = phase == "stage2"
        self.generator.mask_net.requires_grad_(not frozen)
        self.generator.mask_net.train(not frozen)
        params = [p for p in self.generator.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.base_lr,
                               betas=(self.config.adam_beta1, self.config.adam_beta2))
        if previous is not None:  # carry Adam moments of the parameters that stay
            for p in params:
                if p in previous.state:
                    opt.state[p] = previous.state[p]
        return opt

    def _wrap(self) -> tuple[nn.Module, nn.Module]:
        forward: nn.Module = _Forward(self.generator)
        disc: nn.Module = self.discriminator
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            forward = DDP(forward, device_ids=ids)
            disc = DDP(disc, device_ids=ids)
        if self.config.compile:
            # The VQGAN adaptive weight differentiates the loss twice through the generator's
            # graph (autograd.grad with retain_graph), which compiled backwards that donate
            # their buffers refuse; off, they keep them.
            functorch_config = torch._functorch.config
            if hasattr(functorch_config, "donated_buffer"):
                functorch_config.donated_buffer = False
            backend = self.config.compile_backend
            forward = torch.compile(forward, backend=backend)  # type: ignore[assignment]
            disc = torch.compile(disc, backend=backend)  # type: ignore[assignment]
        return forward, disc

    def _loader(self, phase: Phase, phase_step: int) -> Iterator[dict[str, torch.Tensor]]:
        try:
            from training.data import FramePairDataset
        except ImportError:  # older layout: the class lives in training.data.pairs
            from training.data.pairs import FramePairDataset

        c = self.config
        dataset = FramePairDataset(c.data, split="train", gap=c.gap,
                                   size=tuple(c.model.resolution), flip=c.flip)
        seed = c.seed + {"stage1": 1, "stage2": 2, "single": 3}[phase.name]
        sampler = ResumableBatchSampler(len(dataset), c.batch_size, seed, phase_step,
                                        self.dist.rank, self.dist.world_size)
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=c.num_workers,
                            pin_memory=self.device.type == "cuda",
                            generator=torch.Generator().manual_seed(seed),
                            persistent_workers=False)
        return iter(loader)

    def request_stop(self) -> None:
        """Ask the loop to stop after the current step (a checkpoint is written)."""
        self._stop = True

    # --------------------------------------------------------------------- checkpoints
    def _config_dict(self) -> dict[str, Any]:
        return {"model": self.config.model.to_dict(), "training": self.raw_config.to_dict()}

    def save(self) -> None:
        """Write the resumable checkpoint (rank 0), atomically."""
        if not self.dist.is_main:
            return
        state = {
            "version": TRAINING_STATE_VERSION,
            "step": self.step,
            "phase_index": self.phase_index,
            "phases": [[p.name, p.steps] for p in self.phases],
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "pseudo_control": self.pseudo.state_dict(),
            "code_usage": self.code_usage,
            "rng": rng_state(),
        }
        save_checkpoint(self.run.checkpoint_path, self.generator.state_dict(),
                        self._config_dict(), training_state=state,
                        metadata={"argv": self.argv, "kind": "resumable"})

    def _load_resume(self) -> None:
        path = self.run.checkpoint_path
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}")
        ckpt = load_checkpoint(path, map_location="cpu")
        st = ckpt.training_state
        saved = [[str(n), int(s)] for n, s in st["phases"]]
        mine = [[p.name, p.steps] for p in self.phases]
        if saved[: len(mine)] != mine[: len(saved)] and saved != mine:
            raise ValueError(f"--resume: checkpoint phases {saved} differ from config {mine}")
        load_weights_strict(self.generator, ckpt.weights)
        self.discriminator.load_state_dict(st["discriminator"])
        self.phase_index = int(st["phase_index"])
        self.step = int(st["step"])
        if self.phases:  # the optimiser of the phase it stopped in (the last one when done)
            current = self.phases[min(self.phase_index, len(self.phases) - 1)]
            self.opt_g = self._make_opt_g(current.name)
        self.opt_g.load_state_dict(st["opt_g"])
        self.opt_d.load_state_dict(st["opt_d"])
        self.pseudo.load_state_dict(st["pseudo_control"])
        self.code_usage.copy_(st["code_usage"].to(self.device))
        set_rng_state(st["rng"])
        self._resumed = True

    def _export(self, path: Path, extra: dict[str, Any] | None = None) -> None:
        if self.dist.is_main:
            save_checkpoint(path, self.generator.state_dict(), self._config_dict(),
                            metadata={"argv": self.argv, "kind": "model", **(extra or {})})

    # ---------------------------------------------------------------------------- loop
    def _install_signals(self) -> list[tuple[int, Any]]:
        if sys.platform == "win32":
            return []
        import threading

        if threading.current_thread() is not threading.main_thread():
            return []
        previous = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous.append((sig, signal.getsignal(sig)))
            signal.signal(sig, lambda *_: self.request_stop())
        return previous

    def fit(self) -> bool:
        """Run (or continue) every phase. Returns True when all phases finished."""
        if not self._resumed:
            self.run.write_config(self._config_dict(), self.argv)
        previous = self._install_signals()
        try:
            return self._fit()
        finally:
            for sig, handler in previous:
                signal.signal(sig, handler)
            self.run.close()

    def _fit(self) -> bool:
        offset = sum(p.steps for p in self.phases[: self.phase_index])
        while self.phase_index < len(self.phases):
            phase = self.phases[self.phase_index]
            start = offset
            if self.step < start:
                self.step = start
            if not self._run_phase(phase, start):
                return False
            offset += phase.steps
            self.phase_index += 1
            if phase.name == "stage1":
                self._export(self.run.path / "checkpoints" / "stage1.safetensors")
            if self.phase_index < len(self.phases):
                self.opt_g = self._make_opt_g(self.phases[self.phase_index].name, self.opt_g)
            self.save()
        self._export(self.run.model_path)
        if self.dist.is_main and self.config.eval_clips > 0:
            self.final_eval = self._evaluate()
        barrier(self.dist)
        return True

    def _evaluate(self) -> dict[str, Any]:
        """Score the final generator on held-out clips (see training.evaluate); log and save."""
        from training.evaluate import evaluate, summarize

        c = self.config
        split = c.eval_split
        if not (Path(c.data) / split).is_dir():
            split = "val"
        self.generator.eval()
        result = evaluate(self.generator, c.data, self.run.path / "eval", split=split,
                          num_clips=c.eval_clips, horizon=c.eval_horizon,
                          fit_iterations=c.fit_iterations)
        self.run.log(self.step, {f"final/eval/{key}": value
                                 for key, value in summarize(result).items()})
        return result

    def step_context(self, phase: str, start: int = 0) -> StepContext:
        """Return the :class:`StepContext` of ``phase`` starting at global step ``start``.

        ``phase`` is "stage1", "stage2" or "single"; for stage II, M is frozen and the
        generator's optimiser is rebuilt without it if it still holds M's parameters. Used by
        the training loop and by ``benchmarks/train_step.py``.
        """
        if phase not in ("stage1", "stage2", "single"):
            raise ValueError(f"phase must be 'stage1', 'stage2' or 'single', got {phase!r}")
        if phase == "stage2":
            mask_params = {id(p) for p in self.generator.mask_net.parameters()}
            if any(id(p) in mask_params for g in self.opt_g.param_groups for p in g["params"]):
                self.opt_g = self._make_opt_g(phase, self.opt_g)
            self.generator.mask_net.requires_grad_(False)
            self.generator.mask_net.eval()
        forward, disc = self._wrap()
        return StepContext(config=self.config, generator=self.generator, forward=forward,
                           discriminator=self.discriminator, disc_forward=disc,
                           opt_g=self.opt_g, opt_d=self.opt_d, device=self.device,
                           dist=self.dist, pseudo=self.pseudo, perceptual=self.perceptual,
                           base_lr=self.base_lr, phase=phase, phase_start=start,
                           code_usage=self.code_usage)

    def _run_phase(self, phase: Phase, start: int) -> bool:
        c = self.config
        ctx = self.step_context(phase.name, start)
        end = start + phase.steps
        if self.step >= end:
            return True
        if (phase.name == "stage2" and self.step == start
                and self.generator.config.prediction == "composite"):
            # G's output becomes a correction of the composite: start from none, so that the
            # first composite steps are exactly the moved pixels (and train from there)
            with torch.no_grad():
                self.generator.decoder.conv_out.weight.zero_()
                self.generator.decoder.conv_out.bias.zero_()
        data = self._loader(phase, self.step - start)
        bar = None
        if c.progress and self.dist.is_main:
            from tqdm import tqdm

            bar = tqdm(total=phase.steps, initial=self.step - start, desc=phase.name,
                       unit="step", dynamic_ncols=True, leave=True)
        t0, n0 = time.perf_counter(), self.step
        try:
            while self.step < end:
                batch = next(data)
                logs = train_step(ctx, batch, self.step)
                self.step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(rec=f"{logs['rec_loss']:.3f}", refresh=False)
                local = self.step - start
                if self.step % c.log_every == 0 or self.step == end:
                    rate = (self.step - n0) / max(time.perf_counter() - t0, 1e-9)
                    logs["steps_per_s"] = rate
                    logs["samples_per_s"] = rate * c.batch_size
                    self.run.log(self.step, {f"{phase.name}/train/{k}": v
                                             for k, v in logs.items()})
                if (c.sample_every and local % c.sample_every == 0) or self.step == end:
                    self._samples(ctx, phase.name)
                for hook in self.hooks:
                    hook(self, self.step, logs)
                if self._stop:
                    self.save()
                    return False
                if self.step % c.checkpoint_every == 0 and self.step != end:
                    self.save()
        finally:
            if bar is not None:
                bar.close()
        return True

    def _samples(self, ctx: StepContext, name: str) -> None:
        last = ctx.last
        if not last or not self.dist.is_main:
            return
        rows = [last["frame"], mask_overlay(last["frame"], last["masks"]), last["pred"],
                last["target"]]
        if "control" in last:
            rows += [mask_overlay(last["frame"], last["control"]), last["pred_control"]]
        self.run.save_grid(f"{name}_{self.step:06d}", rows)


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False,
          argv: list[str] | None = None, hooks: list[Hook] | None = None) -> Trainer:
    """Build a :class:`Trainer`, run it, and return it (``trainer.step`` says how far it got)."""
    trainer = Trainer(config, out_dir, resume=resume, argv=argv, hooks=hooks)
    trainer.finished = trainer.fit()
    return trainer


def config_from_run(run_dir: str | Path) -> TrainConfig:
    """Return the TrainConfig a run folder was started with (from its resumable checkpoint)."""
    path = Path(run_dir) / "checkpoints" / "last.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"no resumable checkpoint at {path}")
    ckpt = load_checkpoint(path)
    cfg = TrainConfig.from_dict(ckpt.config["training"])
    return replace(cfg)
