"""The run of a training: its phases, resume, signals, the data loader, checkpoints.

A run is a list of phases, each a number of optimiser steps of one phase's step
(:func:`training.step.train_step` with the phase's loss of :mod:`training.phase_losses`):

* ``stage1``: M and G learn together from (f_t, f_{t+1}) with soft masks;
* ``stage2``: M is frozen (out of the optimiser, eval mode, no gradient); G learns from the
  binarised pseudo-control mask;
* ``single``: the single-stage ablation, stage I and stage II losses in every step.

The global step counts on across phases (stage II of a 3000 + 1000 run has steps 3000 ...
3999); metric keys are ``<phase>/train/<name>``.

Exact resume: the data order is a function of the step (``ResumableBatchSampler``); weights,
both optimisers, the RNG states (torch, numpy, python) and the pseudo-control cache are saved
in ``checkpoints/last.safetensors`` every ``checkpoint_every`` steps and when stopped (SIGINT /
SIGTERM or a hook). The ``keep_checkpoints`` newest are kept; ``--resume`` falls back to an
older one when the newest cannot be read (``training.run_dir.load_resumable``).
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from lcvg_env import control as ctl
from lcvg_env.checkpoint import load_checkpoint, load_weights_strict, save_checkpoint
from lcvg_env.device import resolve_device
from lcvg_env.models import LayeredGenerator
from training.config import TrainConfig, apply_ablation
from training.data.pairs import FramePairDataset
from training.discriminator import PatchDiscriminator
from training.distributed import ResumableBatchSampler, barrier, init_distributed
from training.pseudo_control import PseudoControl
from training.rng_state import rng_state, seed_everything, set_rng_state
from training.run_dir import RunDir, load_resumable, mask_overlay, resumable_header
from training.step import train_step
from training.step_context import PHASES, GeneratorForward, StepContext, use_channels_last

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
        c = self.config
        self.discriminator = PatchDiscriminator(3, c.disc_ndf, c.disc_layers, c.disc_norm).to(
            self.device)
        if use_channels_last(c, self.device):
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
        if self.generator.light is not None:  # trained apart (training.light), kept as is
            self.generator.light.requires_grad_(False)
        params = [p for p in self.generator.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.base_lr,
                               betas=(self.config.adam_beta1, self.config.adam_beta2))
        if previous is not None:  # carry Adam moments of the parameters that stay
            for p in params:
                if p in previous.state:
                    opt.state[p] = previous.state[p]
        return opt

    def _wrap(self) -> tuple[nn.Module, nn.Module]:
        forward: nn.Module = GeneratorForward(self.generator)
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
        c = self.config
        h, w = c.model.resolution
        dataset = FramePairDataset(c.data, split="train", gap=c.gap, size=(h, w), flip=c.flip)
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
        """Write the resumable checkpoint (rank 0), atomically; keep ``keep_checkpoints``."""
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
        self.run.save_resumable(self.config.keep_checkpoints, self.generator.state_dict(),
                                self._config_dict(), training_state=state,
                                metadata={"argv": self.argv, "kind": "resumable"})

    def _load_resume(self) -> None:
        try:
            ckpt, _ = load_resumable(self.run.path)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"--resume: {error}") from None
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
        previous: list[tuple[int, Any]] = []
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
            # values are scanned on a CPU only: on a GPU each scan is a device sync
            with ctl.trusted_values(self.device.type != "cpu"):
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
                          fit_iterations=c.fit_iterations, at_most=True)
        self.run.log(self.step, {f"final/eval/{key}": value
                                 for key, value in summarize(result).items()})
        return result

    def step_context(self, phase: str, start: int = 0) -> StepContext:
        """Return the :class:`StepContext` of ``phase`` starting at global step ``start``.

        ``phase`` is "stage1", "stage2" or "single"; for stage II, M is frozen and the
        generator's optimiser is rebuilt without it if it still holds M's parameters. Used by
        the training loop and by ``benchmarks/train_step.py``.
        """
        if phase not in PHASES:
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
    """Return the TrainConfig a run folder was started with (from its resumable checkpoint).

    The newest readable one (see :func:`training.run_dir.load_resumable`), from its header
    alone: the trainer reads the tensors when it resumes.
    """
    header, _ = resumable_header(run_dir)
    return TrainConfig.from_dict(header["config"]["training"])
