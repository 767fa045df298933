"""Mask network M: a frame in [-1, 1] -> a soft foreground mask in [0, 1].

The architecture is the CycleGAN ResNet generator that the released code uses (Johnson et al.'s
style-transfer network): a 7x7 reflect-padded stem to ``ngf`` channels, two stride-2
convolutions to ``4 ngf`` channels at H/4 x W/4, ``n_blocks`` residual blocks, two transposed
convolutions back to ``ngf`` channels at H x W, a 7x7 reflect-padded convolution to one channel
and a sigmoid. With ngf = 64 and 9 blocks it has 11.38 M parameters.

The layers sit in one ``nn.Sequential`` called ``layers`` in the released order, so a released
``resnet_mask.model.<i>.*`` weight is our ``mask_net.layers.<i>.*`` (with ``mask_norm="batch"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lcvg_env.models.blocks import make_norm, norm_has_shift
from lcvg_env.models.config import ModelConfig


class ReflectResBlock(nn.Module):
    """CycleGAN residual block: x + norm(conv(pad(relu(norm(conv(pad(x))))))).

    3x3 convolutions with reflection padding; (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int, norm: str, max_groups: int) -> None:
        super().__init__()
        bias = not norm_has_shift(norm)
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels, max_groups),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels, max_groups),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return x + self.conv_block(x)


class OneOutputConv2d(nn.Conv2d):
    """``nn.Conv2d`` to one output channel; on CPUs a depthwise convolution summed over channels.

    Same parameters, state-dict keys and result (up to float rounding). oneDNN's direct kernel
    runs a 7x7 convolution to one channel at a fraction of its usual speed; the depthwise form
    avoids that kernel and is faster on CPUs (docs/performance.md). Other devices keep the
    plain convolution.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1, H', W')."""
        plain = self.groups != 1 or self.padding_mode != "zeros" or self.out_channels != 1
        if x.device.type != "cpu" or plain:
            return super().forward(x)
        weight = self.weight.reshape(self.in_channels, 1, *self.kernel_size)
        per_channel = F.conv2d(x, weight, None, self.stride, self.padding, self.dilation,
                               groups=self.in_channels)  # (B, C, H', W')
        out = per_channel.sum(dim=1, keepdim=True)
        return out if self.bias is None else out + self.bias.view(1, 1, 1, 1)


class MaskNet(nn.Module):
    """Soft foreground mask of a frame: (B, 3, H, W) in [-1, 1] -> (B, 1, H, W) in [0, 1].

    H and W must be divisible by 4. Normalisation is ``config.mask_norm`` (see ``ModelConfig``
    for why GroupNorm is the default rather than the released BatchNorm).
    """

    def __init__(self, config: ModelConfig, in_channels: int = 3) -> None:
        super().__init__()
        ngf, norm, groups = config.mask_ngf, config.mask_norm, config.mask_norm_groups
        bias = not norm_has_shift(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=bias),
            make_norm(norm, ngf, groups),
            nn.ReLU(),
        ]
        for i in range(2):  # (B, ngf * 2**i, H/2**i, W/2**i) -> (B, ngf * 2**(i+1), ...)
            c_in, c_out = ngf * 2**i, ngf * 2 ** (i + 1)
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=bias),
                make_norm(norm, c_out, groups),
                nn.ReLU(),
            ]
        layers += [ReflectResBlock(ngf * 4, norm, groups) for _ in range(config.mask_n_blocks)]
        for i in range(2):  # (B, ngf * 4 / 2**i, ...) -> twice the size, half the channels
            c_in, c_out = ngf * 4 // 2**i, ngf * 2 // 2**i
            layers += [
                nn.ConvTranspose2d(
                    c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                make_norm(norm, c_out, groups),
                nn.ReLU(),
            ]
        layers += [nn.ReflectionPad2d(3), OneOutputConv2d(ngf, 1, 7), nn.Sigmoid()]
        self.layers = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 1, H, W) in [0, 1].

        Inputs are not validated here (``LayeredGenerator.mask`` does it).
        """
        return self.layers(frames)
