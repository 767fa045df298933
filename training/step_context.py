"""What one training step works with: its context, its batch, the generator's forward.

:class:`StepContext` holds the modules, optimisers and settings, :class:`FramePair` the batch
on the device, :class:`GeneratorForward` the generator's forward as one module call. The run
(``training.loop.Trainer``) builds the context once per phase; the step
(``training.step.train_step``) and the phases' losses (``training.phase_losses``) read it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lcvg_env.models import LayeredGenerator
from training.config import TrainConfig
from training.discriminator import PatchDiscriminator
from training.distributed import DistInfo
from training.pseudo_control import PseudoControl

PHASES = ("stage1", "stage2", "single")
"""Phase names: stage I, stage II, and the single-stage ablation (both in every step)."""


@dataclass(frozen=True)
class FramePair:
    """One batch of training pairs, on the step's device."""

    frame: torch.Tensor
    """(B, 3, H, W) f_t in [-1, 1]."""
    target: torch.Tensor
    """(B, 3, H, W) f_{t+1} in [-1, 1]."""
    index: torch.Tensor | None
    """(B,) dataset indices of the pairs (keys of the stage II fit cache), or None."""


class GeneratorForward(nn.Module):
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
    """:class:`GeneratorForward` of ``generator``, possibly DDP-wrapped or compiled."""
    discriminator: PatchDiscriminator
    disc_forward: nn.Module
    """``discriminator``, possibly DDP-wrapped or compiled."""
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    device: torch.device
    dist: DistInfo
    pseudo: PseudoControl
    perceptual: nn.Module | None = None
    base_lr: float = 1e-4
    phase: str = "stage1"
    """One of :data:`PHASES`."""
    phase_start: int = 0
    """Global step at which the phase started."""
    last: dict[str, torch.Tensor] = field(default_factory=dict)
    """Detached tensors of the last step, for the sample grids."""
    code_usage: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    """(n_embed,) uses of each code since the last dead-code reset."""

    def autocast(self) -> Any:
        """bf16 autocast on CUDA (``amp`` auto/bf16), a null context otherwise."""
        amp = self.config.amp
        use = (amp == "bf16") or (amp == "auto" and self.device.type == "cuda")
        if not use:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


def use_channels_last(config: TrainConfig, device: torch.device) -> bool:
    """Return True when ``config.channels_last`` asks for channels-last on ``device``."""
    return config.channels_last == "on" or (config.channels_last == "auto"
                                            and device.type == "cpu")
