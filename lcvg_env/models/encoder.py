"""VQGAN encoder E: a (masked) frame -> a continuous latent grid.

taming-transformers layout (after an optional space-to-depth fold of ``patch_size`` pixel
patches): 3x3 ``conv_in`` to ``ch`` channels; for each level ``i`` of ``ch_mult``,
``num_res_blocks`` residual blocks to ``ch * ch_mult[i]`` channels (each followed by
self-attention when the level's resolution is in ``attn_resolutions``) and, except at the last
level, a stride-2 downsample; a middle block (residual, attention, residual; the attention is
``mid_attention``); GroupNorm, SiLU and a 3x3 ``conv_out`` to ``z_channels``. With the paper's
settings it has 7.63 M parameters, the released module's count; the 1x1 ``quant_conv`` that
follows it is held by ``LayeredGenerator`` (as in the released code) and not counted here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lcvg_env.models.blocks import (
    AttnBlock,
    Downsample,
    MidBlock,
    ResnetBlock,
    Stage,
    vq_norm,
)
from lcvg_env.models.config import ModelConfig


class Encoder(nn.Module):
    """(B, 3, H, W) -> (B, z_channels, H / f, W / f), f = ``config.downsample_factor``."""

    def __init__(self, config: ModelConfig, in_channels: int = 3) -> None:
        super().__init__()
        ch, mult, groups = config.ch, config.ch_mult, config.norm_groups
        self.patch_size = config.patch_size
        # attention levels are named by the larger side of the feature map
        side = max(config.resolution) // config.patch_size
        self.conv_in = nn.Conv2d(in_channels * config.patch_size**2, ch, 3, padding=1)
        stages = []
        block_in = ch
        for level, m in enumerate(mult):
            block_out = ch * m
            blocks, attn = [], []
            for _ in range(config.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out, config.dropout, groups))
                block_in = block_out
                if side // 2**level in config.attn_resolutions:
                    attn.append(AttnBlock(block_in, groups))
            last = level == len(mult) - 1
            stages.append(Stage(blocks, attn, None if last else Downsample(block_in), "downsample"))
        self.down = nn.ModuleList(stages)
        self.mid = MidBlock(block_in, config.dropout, groups, config.mid_attention)
        self.norm_out = vq_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, config.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, z_channels, h', w')."""
        if self.patch_size > 1:
            x = F.pixel_unshuffle(x, self.patch_size)
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))
