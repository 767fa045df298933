"""Vector quantiser q: nearest codebook entry with a straight-through gradient.

Loss (VQ-VAE, van den Oord et al.), with sg the stop-gradient:

    loss = ||sg[z_e] - z_q||^2 + beta * ||sg[z_q] - z_e||^2        (legacy_beta=False)

the first (codebook) term moves the codes towards the encoder outputs, the second (commitment)
term, weighted by beta = 0.25, keeps the encoder close to its codes. taming-transformers, and so
the released code, applies beta to the other term by mistake; ``legacy_beta=True`` reproduces
that placement for compatibility with released weights and training runs:

    loss = beta * ||sg[z_e] - z_q||^2 + ||sg[z_q] - z_e||^2        (legacy_beta=True)

Both terms are means over all elements. The nearest-code search and the loss run in float32
even under autocast (bf16 distances would pick wrong codes), chunked over tokens so that the
(tokens x K) distance matrix stays small.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch
from torch import nn

_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps")
_MAX_DISTANCE_ELEMENTS = 2**24  # 64 MB of float32 distances per chunk


class QuantizerOutput(NamedTuple):
    """What ``VectorQuantizer.forward`` returns."""

    z_q: torch.Tensor
    """(B, C, h, w) quantised latents, straight-through: the forward value is the code, the
    gradient flows to the input unchanged. Same dtype as the input."""
    loss: torch.Tensor
    """() float32 codebook + commitment loss (see the module docstring)."""
    perplexity: torch.Tensor
    """() float32 exp(entropy) of the code usage in this batch, between 1 and K (no grad)."""
    indices: torch.Tensor
    """(B, h, w) int64 index of the chosen code at each position."""


class VectorQuantizer(nn.Module):
    """Codebook of ``n_embed`` vectors of ``embed_dim`` dims; (B, C, h, w) -> QuantizerOutput.

    ``C`` must equal ``embed_dim``. The codebook is ``embedding.weight`` (K, C), initialised
    uniformly in [-1/K, 1/K] as in taming-transformers.
    """

    def __init__(
        self, n_embed: int, embed_dim: int, beta: float = 0.25, legacy_beta: bool = False
    ) -> None:
        super().__init__()
        self.n_embed = n_embed
        self.embed_dim = embed_dim
        self.beta = beta
        self.legacy_beta = legacy_beta
        self.embedding = nn.Embedding(n_embed, embed_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / n_embed, 1.0 / n_embed)

    def extra_repr(self) -> str:
        """Describe the quantiser's settings in ``repr``."""
        return f"n_embed={self.n_embed}, beta={self.beta}, legacy_beta={self.legacy_beta}"

    def nearest(self, flat: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code for each row: (N, C) -> (N,) int64.

        Uses argmin_k ||e_k||^2 - 2 <z, e_k> (||z||^2 is the same for every k), never the
        (N, K, C) difference tensor.
        """
        codes = self.embedding.weight.float()  # (K, C)
        codes_sq = codes.pow(2).sum(1)  # (K,)
        flat = flat.float()
        chunk = max(1, _MAX_DISTANCE_ELEMENTS // self.n_embed)
        out = []
        for start in range(0, flat.shape[0], chunk):
            # (n, K) = ||e||^2 - 2 z e^T
            dist = torch.addmm(codes_sq, flat[start : start + chunk], codes.t(), alpha=-2.0)
            out.append(dist.argmin(1))
        return out[0] if len(out) == 1 else torch.cat(out)

    def lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes of an index grid: (B, h, w) int -> (B, C, h, w)."""
        if indices.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"indices must be int64 or int32, got {indices.dtype}")
        if indices.dim() != 3:
            raise ValueError(f"indices must be (B, h, w), got shape {tuple(indices.shape)}")
        return self.embedding(indices).permute(0, 3, 1, 2)  # (B, h, w, C) -> (B, C, h, w)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantise (B, C, h, w) latents; see ``QuantizerOutput``."""
        if not isinstance(z, torch.Tensor) or not z.is_floating_point():
            got = z.dtype if isinstance(z, torch.Tensor) else type(z).__name__
            raise TypeError(f"latents must be a floating-point tensor, got {got}")
        if z.dim() != 4 or z.shape[1] != self.embed_dim:
            raise ValueError(
                f"latents must be (B, {self.embed_dim}, h, w), got shape {tuple(z.shape)}"
            )
        b, c, h, w = z.shape
        device_type = z.device.type
        no_autocast = (
            torch.autocast(device_type, enabled=False)
            if device_type in _AUTOCAST_DEVICES
            else contextlib.nullcontext()
        )
        with no_autocast:
            z_e = z.float().permute(0, 2, 3, 1)  # (B, h, w, C)
            indices = self.nearest(z_e.reshape(-1, c))  # (B*h*w,)
            z_q = self.embedding.weight.float()[indices].view(b, h, w, c)  # (B, h, w, C)
            codebook = (z_q - z_e.detach()).pow(2).mean()
            commitment = (z_q.detach() - z_e).pow(2).mean()
            if self.legacy_beta:
                loss = self.beta * codebook + commitment
            else:
                loss = codebook + self.beta * commitment
            z_st = z_e + (z_q - z_e).detach()  # straight-through estimator
            with torch.no_grad():
                counts = torch.zeros(self.n_embed, device=z.device, dtype=torch.float32)
                counts.index_add_(0, indices, torch.ones_like(indices, dtype=torch.float32))
                probs = counts / indices.numel()
                perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return QuantizerOutput(
            z_q=z_st.permute(0, 3, 1, 2).to(z.dtype),  # (B, C, h, w)
            loss=loss,
            perplexity=perplexity,
            indices=indices.view(b, h, w),
        )
