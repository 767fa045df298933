"""Building blocks shared by the networks: normalisation factory and VQGAN blocks.

The VQGAN blocks follow the layout of taming-transformers (pre-activation residual blocks with
GroupNorm and SiLU, single-head spatial self-attention, stride-2 convolution down, nearest
neighbour + convolution up). Submodule names (``norm1``, ``conv1``, ``nin_shortcut``, ``q``,
``k``, ``v``, ``proj_out``, ``conv``) match that layout so that released weights map onto ours
by renaming prefixes only. Every block works with ``channels_last`` inputs and under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_count(channels: int, max_groups: int) -> int:
    """Largest divisor of ``channels`` that is at most ``max_groups``."""
    if channels < 1 or max_groups < 1:
        raise ValueError(f"channels and max_groups must be >= 1, got {channels}, {max_groups}")
    for groups in range(min(channels, max_groups), 0, -1):
        if channels % groups == 0:
            return groups
    return 1  # unreachable: 1 divides everything


def norm_has_shift(kind: str) -> bool:
    """Whether the norm ``kind`` of ``make_norm`` has a learned shift.

    A convolution followed by such a norm needs no bias.
    """
    return kind in ("batch", "group")


def make_norm(kind: str, channels: int, max_groups: int = 32) -> nn.Module:
    """Normalisation layer factory for (B, C, H, W) features.

    Args:
        kind: "group" (GroupNorm, affine, ``group_count(channels, max_groups)`` groups),
            "instance" (InstanceNorm without affine parameters or running statistics, as in
            CycleGAN), "batch" (BatchNorm with affine and running statistics) or "none".
        channels: C.
        max_groups: upper bound on the number of groups for "group".
    """
    if kind == "group":
        return nn.GroupNorm(group_count(channels, max_groups), channels, eps=1e-5, affine=True)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm kind {kind!r}; use 'group', 'instance', 'batch' or 'none'")


def vq_norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm used throughout the VQGAN encoder/decoder (eps 1e-6, affine)."""
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """Pre-activation residual block: x + conv(SiLU(GN(conv(SiLU(GN(x)))))).

    (B, in_channels, H, W) -> (B, out_channels, H, W); a 1x1 ``nin_shortcut`` adapts the skip
    path when the channel count changes.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float, groups: int) -> None:
        super().__init__()
        self.norm1 = vq_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = vq_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut: nn.Module = (
            nn.Conv2d(in_channels, out_channels, 1)
            if in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all H*W positions, with a residual connection.

    Uses ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where available),
    scale 1/sqrt(C) as in taming-transformers. (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = vq_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        b, c, h, w = x.shape
        y = self.norm(x)

        def tokens(t: torch.Tensor) -> torch.Tensor:
            return t.flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, H*W, C)

        q, k, v = tokens(self.q(y)), tokens(self.k(y)), tokens(self.v(y))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, H*W, C)
        out = out.squeeze(1).transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halve H and W: zero-pad right/bottom by one, then a 3x3 stride-2 convolution.

    (B, C, H, W) -> (B, C, H/2, W/2) for even H, W.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H/2, W/2)."""
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3x3 convolution.

    (B, C, H, W) -> (B, C, 2H, 2W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, 2H, 2W)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Stage(nn.Module):
    """One resolution level of the encoder or decoder.

    Residual blocks, each optionally followed by attention, then an optional resampler
    registered as ``downsample`` or ``upsample``.
    """

    def __init__(
        self,
        blocks: list[ResnetBlock],
        attn: list[AttnBlock],
        resample: nn.Module | None,
        resample_name: str,
    ) -> None:
        super().__init__()
        if attn and len(attn) != len(blocks):
            raise ValueError(f"need one attention per block, got {len(attn)} for {len(blocks)}")
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attn)
        self.resample_name = resample_name
        if resample is not None:
            self.add_module(resample_name, resample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H', W') with H' = H/2, H or 2H."""
        for index, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[index](x)
        resample = getattr(self, self.resample_name, None)
        if resample is not None:
            x = resample(x)
        return x


class MidBlock(nn.Module):
    """Residual block, attention (optional), residual block at the lowest resolution.

    (B, C, h, w) -> (B, C, h, w).
    """

    def __init__(self, channels: int, dropout: float, groups: int, attention: bool = True
                 ) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout, groups)
        self.attn_1: nn.Module = AttnBlock(channels, groups) if attention else nn.Identity()
        self.block_2 = ResnetBlock(channels, channels, dropout, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C, h, w)."""
        return self.block_2(self.attn_1(self.block_1(x)))
