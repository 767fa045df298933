"""Configuration of the layered generator: one frozen dataclass and its named presets.

``ModelConfig()`` (the defaults) is the ``medium`` preset, a 64x64 model for a CPU; the
paper's settings are the classmethods ``paper_bair``, ``paper_tennis`` and ``official_bair``,
and ``tiny`` is the model of the tests. (``small`` names the training preset of
``training.config``, whose model is slimmer than ``medium``.) A config travels inside every
checkpoint as ``to_dict()`` and comes back through ``from_dict``, so the names of the presets
are not stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from lcvg_env.configs import check_choices

MaskNorm = Literal["group", "instance", "batch", "none"]
"""Normalisation layers the mask network can use (see ``ModelConfig.mask_norm``)."""
MASK_NORMS: tuple[MaskNorm, ...] = get_args(MaskNorm)
"""The choices of ``MaskNorm``."""
Prediction = Literal["frame", "composite"]
"""What the generator's output is (see ``ModelConfig.prediction``)."""
PREDICTIONS: tuple[Prediction, ...] = get_args(Prediction)
"""The choices of ``Prediction``."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the mask network, the VQGAN encoder/decoder and the quantiser.

    The downsampling factor of the VQGAN is ``patch_size * 2 ** (len(ch_mult) - 1)``;
    ``latent_size`` gives the resulting latent grid (h', w').
    """

    resolution: tuple[int, int] = (64, 64)
    """Frame size (H, W) in pixels; both must be divisible by the VQGAN downsampling factor and
    by 4 (the mask network's two stride-2 convolutions)."""

    # --- mask network M (CycleGAN ResNet generator) --------------------------------------------
    mask_ngf: int = 16
    """Channels after the mask network's 7x7 stem; doubled by each of its two downsamples."""
    mask_n_blocks: int = 3
    """Residual blocks at the mask network's bottleneck (H/4 x W/4); the paper uses 9."""
    mask_norm: MaskNorm = "group"
    """Normalisation in the mask network: "group" (default), "instance", "batch" or "none".

    GroupNorm is the default because it normalises each frame on its own: its output is the same
    in ``train()`` and ``eval()`` and does not depend on the other frames of the batch. BatchNorm
    (what the released code uses) estimates statistics from the batch, which at the batch sizes
    used here (1-8 pairs) are noisy, differ from the running averages used in ``eval()``, and
    make a frame's mask depend on its batch-mates; the simulator runs M on single generated
    frames, where that gap shows directly. In our check (the small mask net trained with
    supervision on 64x64 textured squares, 150-300 Adam steps, 2-3 seeds, IoU of eval-mode
    masks on single frames) BatchNorm was the worst at batch 2 (0.57 vs group 0.63, instance
    0.65), tied at batch 8 (0.80 for all three) and ahead at batch 4 (0.91 vs 0.87, 0.88; seed
    spread about +-0.03): it is the batch-size-sensitive choice. InstanceNorm (CycleGAN's
    choice, no affine) is per-frame too and matched GroupNorm within seed noise; GroupNorm
    was kept for its learned per-channel scale and shift. "none" did not train. Convolutions
    followed by "batch" or "group" carry no bias (the norm's shift replaces it), as in the
    released code; "instance" and "none" keep the bias."""
    mask_norm_groups: int = 32
    """Largest number of groups for ``mask_norm="group"``; each layer uses the largest divisor
    of its channel count that does not exceed it."""

    # --- VQGAN encoder E / decoder D (taming-transformers layout) ------------------------------
    ch: int = 32
    """Base channel count of the encoder and decoder."""
    ch_mult: tuple[int, ...] = (1, 2, 2)
    """Channel multiplier per resolution level; one downsample between consecutive levels."""
    num_res_blocks: int = 1
    """Residual blocks per level in the encoder (the decoder has one more per level)."""
    attn_resolutions: tuple[int, ...] = (16,)
    """Levels with self-attention, named by the larger side of the feature map at that level
    (``max(H, W) / (patch_size * 2**level)``); the middle block's is ``mid_attention``. With
    the paper's (16,) at 96x256 the attention sits at the 6x16 level, as in the released Tennis
    config."""
    patch_size: int = 1
    """Side of the pixel patches folded into channels before the encoder's first convolution
    (space-to-depth, ``F.pixel_unshuffle``) and unfolded after the decoder's last one
    (``F.pixel_shuffle``). 1 is the paper's layout. 2 removes the full-resolution level of
    both networks, the costliest per FLOP on a CPU (many pixels, few channels, memory-bound
    norms and activations), at the price of a decoder whose last step is a linear map from each
    feature to a 2x2 pixel block."""
    mid_attention: bool = True
    """Self-attention in the middle blocks of the encoder and decoder (the paper's layout has
    it). At 64x64 with small control steps the convolutions already see far enough, and the
    attention costs about a tenth of a CPU step."""
    z_channels: int = 64
    """Channels of the encoder output and of the decoder input."""
    norm_groups: int = 32
    """Groups of every GroupNorm in the encoder and decoder (taming uses 32); must divide
    ``ch * m`` for every ``m`` in ``ch_mult``."""
    dropout: float = 0.0
    """Dropout probability inside the encoder/decoder residual blocks."""

    # --- quantiser ------------------------------------------------------------------------------
    n_embed: int = 256
    """Number of codebook entries K."""
    embed_dim: int = 64
    """Dimension n_z of each codebook entry (1x1 convs map z_channels <-> embed_dim)."""
    beta: float = 0.25
    """Commitment weight of the VQ loss."""
    legacy_beta: bool = False
    """False: ``||sg[z_e] - z_q||^2 + beta ||sg[z_q] - z_e||^2`` (VQ-VAE; beta on the encoder's
    commitment term). True: taming-transformers' placement, which the released code runs with:
    ``beta ||sg[z_e] - z_q||^2 + ||sg[z_q] - z_e||^2`` (beta on the codebook term, so the
    encoder is pulled towards the codes four times harder than the codes towards it)."""

    # --- how a controlled step uses G ------------------------------------------------------------
    prediction: Prediction = "frame"
    """"frame" (the paper): G draws the whole next frame from the two layers. "composite": a
    controlled step first moves every object's own pixels with its transform over a background
    canvas (``lcvg_env.compositing``) and G's output is a correction added to that composite
    inside a band around what moved; everywhere else the composite is the next frame. Stage I
    trains both the same way (the paper's); stage II trains the path the simulator runs."""
    band_px: int = 4
    """Composite prediction: G's correction acts within this many pixels of the moved objects,
    the places they left and the holes they uncovered (room for shading and shadows)."""
    shading: bool = False
    """Composite prediction: the model holds a light estimator (``lcvg_env.models.light``)
    that reads the background canvas at reset, and every moved object's colours are scaled by
    the change of illumination between where its pixels were taken and where they land."""

    def __post_init__(self) -> None:
        """Coerce sequences to tuples and validate every field."""
        for name in ("resolution", "ch_mult", "attn_resolutions"):
            value = getattr(self, name)
            if not isinstance(value, list | tuple):
                raise TypeError(f"ModelConfig.{name} must be a tuple of ints, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        ints = {
            "mask_ngf": self.mask_ngf,
            "mask_n_blocks": self.mask_n_blocks,
            "mask_norm_groups": self.mask_norm_groups,
            "ch": self.ch,
            "patch_size": self.patch_size,
            "num_res_blocks": self.num_res_blocks,
            "z_channels": self.z_channels,
            "norm_groups": self.norm_groups,
            "n_embed": self.n_embed,
            "embed_dim": self.embed_dim,
            "band_px": self.band_px,
        }
        for name, value in ints.items():
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"ModelConfig.{name} must be an int, got {value!r}")
            minimum = 0 if name == "mask_n_blocks" else 1
            if value < minimum:
                raise ValueError(f"ModelConfig.{name} must be >= {minimum}, got {value!r}")
        for name in ("resolution", "ch_mult", "attn_resolutions"):
            for item in getattr(self, name):
                if not isinstance(item, int) or isinstance(item, bool) or item < 1:
                    raise ValueError(
                        f"ModelConfig.{name} must hold positive ints, got {getattr(self, name)!r}"
                    )
        if len(self.resolution) != 2:
            raise ValueError(f"ModelConfig.resolution must be (H, W), got {self.resolution!r}")
        if not self.ch_mult:
            raise ValueError("ModelConfig.ch_mult must not be empty, got ()")
        factor = self.downsample_factor
        for side in self.resolution:
            if side % factor or side % 4:
                raise ValueError(
                    f"ModelConfig.resolution {self.resolution!r} must be divisible by the VQGAN "
                    f"downsampling factor {factor} (ch_mult={self.ch_mult!r}, "
                    f"patch_size={self.patch_size}) and by 4"
                )
        for mult in self.ch_mult:
            if (self.ch * mult) % self.norm_groups:
                raise ValueError(
                    f"ModelConfig.norm_groups={self.norm_groups} must divide every encoder width "
                    f"ch*m = {[self.ch * m for m in self.ch_mult]}"
                )
        check_choices(self)
        for name in ("dropout", "beta"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"ModelConfig.{name} must be a float, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.beta < 0.0:
            raise ValueError(f"ModelConfig.beta must be >= 0, got {self.beta!r}")
        for name in ("legacy_beta", "mid_attention", "shading"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"ModelConfig.{name} must be a bool, got {getattr(self, name)!r}")

    # --- derived quantities ---------------------------------------------------------------------
    @property
    def downsample_factor(self) -> int:
        """Spatial reduction of the encoder, ``patch_size * 2 ** (len(ch_mult) - 1)``."""
        return self.patch_size * 2 ** (len(self.ch_mult) - 1)

    @property
    def latent_size(self) -> tuple[int, int]:
        """Latent grid (h', w') = (H, W) / downsample_factor."""
        factor = self.downsample_factor
        return (self.resolution[0] // factor, self.resolution[1] // factor)

    # --- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field (tuples become lists)."""
        out: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            out[item.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build a config from ``to_dict()`` output; missing keys take the defaults.

        Raises:
            TypeError: ``data`` is not a mapping.
            ValueError: ``data`` has keys that are not fields (they are named), or bad values.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"ModelConfig.from_dict needs a mapping, got {type(data).__name__}")
        known = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**dict(data))

    def replace(self, **changes: Any) -> ModelConfig:
        """Return a copy with ``changes`` applied (validated like a new config)."""
        return dataclasses.replace(self, **changes)

    # --- presets --------------------------------------------------------------------------------
    @classmethod
    def tiny(cls) -> ModelConfig:
        """32x32 test preset (about 53 K parameters): the one model config of the tests.

        8 base channels with one downsample (a 16x16 latent of 16 codes of 8 dims), no
        attention in the levels, a mask network of width 4 with one residual block. Tests at
        another frame size take ``tiny().replace(resolution=...)`` (any multiple of 4).
        """
        return cls(
            resolution=(32, 32),
            mask_ngf=4,
            mask_n_blocks=1,
            ch=8,
            ch_mult=(1, 2),
            num_res_blocks=1,
            attn_resolutions=(),
            z_channels=8,
            norm_groups=4,
            n_embed=16,
            embed_dim=8,
        )

    @classmethod
    def medium(cls) -> ModelConfig:
        """64x64 CPU preset (about 1.37 M parameters): 16x16 latent, 256 codes of 64 dims.

        Downsampling by 4 (not 16) keeps a 16x16 latent: a 4x4 grid of codes cannot
        reconstruct a textured background. Equal to ``ModelConfig()``. The ``small`` training
        preset (``training.config.small_model``) slims it to about 0.25 M parameters.
        """
        return cls()

    @classmethod
    def paper_bair(cls) -> ModelConfig:
        """BAIR at 256x256 with the released architecture (16x16 latent, 1024 x 256 codebook).

        Differs from the released code only in the defaults this project chose: GroupNorm in
        the mask network and VQ-VAE's placement of beta (see ``official_bair``).
        """
        return cls(
            resolution=(256, 256),
            mask_ngf=64,
            mask_n_blocks=9,
            ch=64,
            ch_mult=(1, 1, 2, 2, 4),
            num_res_blocks=2,
            attn_resolutions=(16,),
            z_channels=256,
            n_embed=1024,
            embed_dim=256,
        )

    @classmethod
    def paper_tennis(cls) -> ModelConfig:
        """Tennis at 96x256 (latent 6x16), otherwise ``paper_bair``."""
        return cls.paper_bair().replace(resolution=(96, 256))

    @classmethod
    def official_bair(cls) -> ModelConfig:
        """Exactly what the released code runs.

        ``paper_bair`` with a BatchNorm mask network and taming's swapped beta
        (``legacy_beta=True``). Use it for converted official weights.
        """
        return cls.paper_bair().replace(mask_norm="batch", legacy_beta=True)
