"""PatchGAN discriminator (pix2pix "NLayer" design, as used by VQGAN)."""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(32, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown discriminator norm {kind!r}; use batch|group|instance|none")


class PatchDiscriminator(nn.Module):
    """Fully convolutional discriminator giving one logit per overlapping patch.

    ``n_layers`` stride-2 convolutions (the first without normalisation), one stride-1
    convolution, then a 1-channel stride-1 convolution: (B, 3, H, W) -> (B, 1, H', W') logits.
    With 3 layers and 4x4 kernels each logit sees a 70x70 receptive field.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3,
                 norm: str = "batch") -> None:
        super().__init__()
        if in_channels < 1 or ndf < 1 or n_layers < 1:
            raise ValueError(
                f"PatchDiscriminator needs positive sizes, got in_channels={in_channels}, "
                f"ndf={ndf}, n_layers={n_layers}")
        use_bias = norm in ("none", "instance")
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=use_bias),
                _norm(norm, ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.main = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """pix2pix initialisation: conv weights N(0, 0.02); norm scales N(1, 0.02), shifts 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)):
                if module.weight is not None:
                    nn.init.normal_(module.weight, 1.0, 0.02)
                    nn.init.zeros_(module.bias)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Patch logits of frames (B, C, H, W) in [-1, 1] -> (B, 1, H', W')."""
        if frames.dim() != 4:
            raise ValueError(f"expected frames (B, C, H, W), got shape {tuple(frames.shape)}")
        return self.main(frames)
