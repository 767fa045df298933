"""VQGAN decoder D: a quantised latent grid -> a frame.

taming-transformers layout, the mirror of ``Encoder``: 3x3 ``conv_in`` from ``z_channels`` to
``ch * ch_mult[-1]``; a middle block (residual, attention if ``mid_attention``, residual); for
each level from the last to the first, ``num_res_blocks + 1`` residual blocks to ``ch *
ch_mult[i]`` channels (with attention at the levels in ``attn_resolutions``) and, except at
level 0, a nearest-neighbour x2 upsample with a 3x3 conv; GroupNorm, SiLU and a 3x3
``conv_out`` to 3 channels (3 * ``patch_size**2``, unfolded by ``F.pixel_shuffle``), unbounded
(no tanh: the output approximates a frame in [-1, 1]). ``up[i]`` holds level ``i``, so the
modules run in the order ``up[n-1], ..., up[0]``. With the paper's settings it has 10.92 M
parameters, the released module's count; the 1x1 ``post_quant_conv`` before it is held by
``LayeredGenerator`` and not counted here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lcvg_env.models.blocks import AttnBlock, MidBlock, ResnetBlock, Stage, Upsample, vq_norm
from lcvg_env.models.config import ModelConfig


class Decoder(nn.Module):
    """(B, z_channels, h', w') -> (B, 3, h' f, w' f), f = ``config.downsample_factor``."""

    def __init__(self, config: ModelConfig, out_channels: int = 3) -> None:
        super().__init__()
        ch, mult, groups = config.ch, config.ch_mult, config.norm_groups
        self.patch_size = config.patch_size
        side = max(config.resolution) // config.patch_size
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(config.z_channels, block_in, 3, padding=1)
        self.mid = MidBlock(block_in, config.dropout, groups, config.mid_attention)
        stages: list[Stage] = []
        for level in reversed(range(len(mult))):
            block_out = ch * mult[level]
            blocks, attn = [], []
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out, config.dropout, groups))
                block_in = block_out
                if side // 2**level in config.attn_resolutions:
                    attn.append(AttnBlock(block_in, groups))
            upsample = Upsample(block_in) if level != 0 else None
            stages.insert(0, Stage(blocks, attn, upsample, "upsample"))
        self.up = nn.ModuleList(stages)
        self.norm_out = vq_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, out_channels * config.patch_size**2, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, z_channels, h', w') -> (B, 3, H, W), unbounded (about [-1, 1])."""
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = stage(h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.patch_size) if self.patch_size > 1 else out
