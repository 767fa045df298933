"""The layered generator G: mask network, VQGAN encoder/quantiser/decoder, and their composition.

One simulator step, frames in [-1, 1] and masks in [0, 1], masking done in the [-1, 1] space
(a masked-out pixel becomes 0, mid grey):

    m = M(f)                                    # mask(f), soft; binarise for control
    z = q(quant_conv(E(cat[f * m, f * (1 - m)])))   # fg and bg in ONE batched encoder call
    f_next = D(post_quant_conv(z_fg + z_bg))    # generate(f, m).frames

State-dict keys follow the released code after two prefix renames (``resnet_mask.model.`` ->
``mask_net.layers.``, ``quantize.`` -> ``quantizer.``); ``encoder.*``, ``decoder.*``,
``quant_conv.*`` and ``post_quant_conv.*`` are the same. Load released weights with
``ModelConfig.official_bair()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from lcvg_env import compositing
from lcvg_env.checkpoint import (
    Checkpoint,
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    load_weights_strict,
    save_checkpoint,
)
from lcvg_env.control import binarize, values_checked
from lcvg_env.device import resolve_device
from lcvg_env.models.config import ModelConfig
from lcvg_env.models.decoder import Decoder
from lcvg_env.models.encoder import Encoder
from lcvg_env.models.light import LightEstimator, light_field
from lcvg_env.models.mask_net import MaskNet
from lcvg_env.models.quantizer import VectorQuantizer

FRAME_LIMIT = 2.0
"""Frames are expected in [-1, 1]; values beyond +-FRAME_LIMIT (e.g. 0..255 floats) or
non-finite values are rejected unless the call runs inside ``lcvg_env.control.trusted_values``.
Decoder outputs may overshoot [-1, 1] slightly: clamp generated frames before feeding them back."""
MASK_TOLERANCE = 1e-3
"""Masks may leave [0, 1] by at most this much (interpolation round-off) before being rejected."""


class GeneratorOutput(NamedTuple):
    """What ``LayeredGenerator.generate`` returns."""

    frames: torch.Tensor
    """(B, 3, H, W) predicted next frames, unbounded decoder output (about [-1, 1])."""
    vq_loss: torch.Tensor
    """() codebook + commitment loss of the foreground layer plus that of the background layer
    (each a mean over its own elements, as the released code sums ``loss_f + loss_b``)."""
    perplexity: torch.Tensor
    """() perplexity of the code usage over both layers (for logs; no gradient)."""


class LayeredOutput(NamedTuple):
    """What ``LayeredGenerator.forward`` returns: ``GeneratorOutput`` plus the masks used."""

    frames: torch.Tensor
    """(B, 3, H, W) predicted next frames."""
    vq_loss: torch.Tensor
    """() VQ loss, as in ``GeneratorOutput``."""
    perplexity: torch.Tensor
    """() code perplexity."""
    masks: torch.Tensor
    """(B, 1, H, W) masks the prediction was made with (M's soft masks when none were given)."""


class LayerLatents(NamedTuple):
    """What ``LayeredGenerator.encode_layers`` returns."""

    foreground: torch.Tensor
    """(B, embed_dim, h', w') quantised latent of ``frames * masks`` (straight-through)."""
    background: torch.Tensor
    """(B, embed_dim, h', w') quantised latent of ``frames * (1 - masks)``."""
    vq_loss: torch.Tensor
    """() VQ loss of both layers, as in ``GeneratorOutput``."""
    perplexity: torch.Tensor
    """() code perplexity over both layers."""
    indices: torch.Tensor
    """(2, B, h', w') int64 code indices: [0] foreground, [1] background."""


class LayeredGenerator(nn.Module):
    """Mask network + VQGAN that predicts the next frame from a frame and a foreground mask.

    Attributes:
        config: the ``ModelConfig`` it was built from.
        mask_net: M, (B, 3, H, W) -> (B, 1, H, W).
        encoder: E, (B, 3, H, W) -> (B, z_channels, h', w').
        quant_conv: 1x1 conv z_channels -> embed_dim.
        quantizer: codebook of ``n_embed`` x ``embed_dim``.
        post_quant_conv: 1x1 conv embed_dim -> z_channels.
        decoder: D, (B, z_channels, h', w') -> (B, 3, H, W).

    Inputs are checked: shapes and dtypes always, values (non-finite, out of range; one device
    synchronisation per call) unless the call runs inside ``lcvg_env.control.trusted_values``,
    the one value-check switch of ``lcvg_env``; use it in hot loops on a GPU or under
    ``torch.compile``.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        if config is None:
            config = ModelConfig()
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.config = config
        self.mask_net = MaskNet(config)
        self.encoder = Encoder(config)
        self.quant_conv = nn.Conv2d(config.z_channels, config.embed_dim, 1)
        self.quantizer = VectorQuantizer(
            config.n_embed, config.embed_dim, beta=config.beta, legacy_beta=config.legacy_beta
        )
        self.post_quant_conv = nn.Conv2d(config.embed_dim, config.z_channels, 1)
        self.decoder = Decoder(config)
        self.light = LightEstimator() if config.shading else None

    # --- public API -------------------------------------------------------------------------
    def mask(self, frames: torch.Tensor) -> torch.Tensor:
        """Soft foreground masks: (B, 3, H, W) in [-1, 1] -> (B, 1, H, W) in [0, 1]."""
        self._check_frames(frames)
        return self.mask_net(frames)

    def binary_mask(self, frames: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """Binarised foreground masks, the form that conditions G under control.

        (B, 3, H, W) in [-1, 1] -> (B, 1, H, W) float32 in {0, 1}: 1 where M's soft mask
        exceeds ``threshold`` (the paper's 0.5 by default).
        """
        return binarize(self.mask(frames).float(), threshold)

    def encode_layers(self, frames: torch.Tensor, masks: torch.Tensor) -> LayerLatents:
        """Quantised latents of the foreground and background layers.

        Args:
            frames: (B, 3, H, W) in [-1, 1].
            masks: (B, 1, H, W) in [0, 1] (soft or binary).
        """
        self._check_frames(frames)
        self._check_masks(masks, frames)
        batch = frames.shape[0]
        foreground = frames * masks
        layers = torch.cat([foreground, frames - foreground], dim=0)  # (2B, 3, H, W): fg, bg
        quantized = self.quantizer(self.quant_conv(self.encoder(layers)))
        z_fg, z_bg = quantized.z_q[:batch], quantized.z_q[batch:]  # (B, embed_dim, h', w') each
        return LayerLatents(
            foreground=z_fg,
            background=z_bg,
            vq_loss=2.0 * quantized.loss,  # mean over both layers -> sum of the two layer means
            perplexity=quantized.perplexity,
            indices=quantized.indices.view(2, batch, *quantized.indices.shape[1:]),
        )

    def decode(self, z_q: torch.Tensor) -> torch.Tensor:
        """Frames from quantised latents: (B, embed_dim, h', w') -> (B, 3, H, W)."""
        expected = (self.config.embed_dim, *self.config.latent_size)
        if not isinstance(z_q, torch.Tensor) or not z_q.is_floating_point():
            got = z_q.dtype if isinstance(z_q, torch.Tensor) else type(z_q).__name__
            raise TypeError(f"latents must be a floating-point tensor, got {got}")
        if z_q.dim() != 4 or tuple(z_q.shape[1:]) != expected:
            raise ValueError(f"latents must be (B, {expected}), got shape {tuple(z_q.shape)}")
        return self.decoder(self.post_quant_conv(z_q))

    def generate(self, frames: torch.Tensor, masks: torch.Tensor) -> GeneratorOutput:
        """Next frames from frames and (possibly edited) foreground masks.

        Args:
            frames: (B, 3, H, W) float in [-1, 1], H, W = ``config.resolution``.
            masks: (B, 1, H, W) float in [0, 1].

        Returns:
            ``GeneratorOutput(frames (B, 3, H, W), vq_loss (), perplexity ())``.
        """
        latents = self.encode_layers(frames, masks)
        out = self.decode(latents.foreground + latents.background)
        return GeneratorOutput(out, latents.vq_loss, latents.perplexity)

    def predict_next(self, frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """``generate(frames, masks).frames``: (B, 3, H, W), (B, 1, H, W) -> (B, 3, H, W)."""
        return self.generate(frames, masks).frames

    @torch.no_grad()
    def illumination(self, canvas: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Relative illumination (B, 1, H, W) of a canvas (B, 3, H, W), known where (B, 1, H, W).

        The light estimator's log-linear field (``lcvg_env.models.light``) with unknown pixels
        filled from the known ones; all ones for a model without one (``ModelConfig.shading``
        off): nothing then changes an object's colours as it moves. No gradient flows (the
        estimator is trained apart, by ``training.light``).
        """
        b, _, h, w = canvas.shape
        if self.light is None:
            return canvas.new_ones(b, 1, h, w)
        filled = compositing.fill_holes(canvas, known)
        return light_field(self.light(filled, known).float(), h, w)

    def forward(self, frames: torch.Tensor, masks: torch.Tensor | None = None) -> LayeredOutput:
        """Masks (M's soft masks when ``masks`` is None) and the predicted next frames.

        In a training loop of one's own, stage I calls ``model(frames)`` (the mask network
        learns through the prediction) and stage II ``model(frames, edited_masks)``; calling the
        module (rather than ``generate``) is what DistributedDataParallel needs. (lcvg's trainer
        wraps the generator in a module of its own that also returns the code indices.)

        Args:
            frames: (B, 3, H, W) in [-1, 1].
            masks: optional (B, 1, H, W) in [0, 1].
        """
        if masks is None:
            masks = self.mask(frames)
        out = self.generate(frames, masks)
        return LayeredOutput(out.frames, out.vq_loss, out.perplexity, masks)

    @property
    def last_layer(self) -> torch.Tensor:
        """Weight of the decoder's final conv (3, C, 3, 3), for VQGAN's adaptive GAN weight."""
        return self.decoder.conv_out.weight

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per submodule and in total.

        Buffers such as BatchNorm running statistics are not counted.
        """
        parts: dict[str, nn.Module] = {
            "mask_net": self.mask_net,
            "encoder": self.encoder,
            "quant_conv": self.quant_conv,
            "quantizer": self.quantizer,
            "post_quant_conv": self.post_quant_conv,
            "decoder": self.decoder,
        }
        if self.light is not None:
            parts["light"] = self.light
        counts = {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts

    # --- checkpoints --------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], device: str | torch.device = "auto"
    ) -> LayeredGenerator:
        """Load a generator in eval mode on ``device``.

        The checkpoint is one written by ``save`` or by ``lcvg_env.checkpoint.save_checkpoint``
        with ``config={"model": config.to_dict(), ...}``. ``path`` is a file path or a
        checkpoint name looked up by ``lcvg_env.checkpoint.find_checkpoint``.

        Raises:
            FileNotFoundError: no such checkpoint (every place looked is named).
            CheckpointError: unreadable file, no model config, or weights that do not fit.
        """
        file = find_checkpoint(path)
        return cls.from_loaded(load_checkpoint(file, map_location="cpu"), file, device)

    @classmethod
    def from_loaded(cls, checkpoint: Checkpoint, file: str | os.PathLike[str],
                    device: str | torch.device = "auto") -> LayeredGenerator:
        """Build the generator of an already loaded checkpoint (read from ``file``), in eval mode.

        Raises:
            CheckpointError: no model config, or weights that do not fit (``file`` is named).
        """
        target = resolve_device(device)
        model = cls(stored_model_config(checkpoint, file))
        load_weights_strict(model, checkpoint.weights)
        return model.to(target).eval()

    def save(
        self,
        path: str | os.PathLike[str],
        metadata: Mapping[str, Any] | None = None,
        extra_config: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write weights and config to ``path`` (safetensors, atomic); returns the path.

        ``extra_config`` entries (e.g. ``{"training": {...}}``) are stored beside ``"model"``.
        """
        config: dict[str, Any] = dict(extra_config or {})
        config["model"] = self.config.to_dict()
        return save_checkpoint(path, self.state_dict(), config, metadata=metadata)

    # --- validation ---------------------------------------------------------------------------
    def _device(self) -> torch.device:
        return self.decoder.conv_out.weight.device

    def _check_frames(self, frames: torch.Tensor) -> None:
        if not isinstance(frames, torch.Tensor):
            raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
        if not frames.is_floating_point():
            raise TypeError(
                f"frames must be floating point in [-1, 1], got dtype {frames.dtype} "
                "(uint8 frames: x.float() / 127.5 - 1)"
            )
        expected = (3, *self.config.resolution)
        if frames.dim() != 4 or tuple(frames.shape[1:]) != expected:
            raise ValueError(
                f"frames must be (B, {expected[0]}, {expected[1]}, {expected[2]}) for this "
                f"model (config.resolution={self.config.resolution}), got shape "
                f"{tuple(frames.shape)}"
            )
        if frames.shape[0] == 0:
            raise ValueError(f"frames must hold at least one frame, got {tuple(frames.shape)}")
        if frames.device != self._device():
            raise ValueError(f"frames are on {frames.device} but the model is on {self._device()}")
        if values_checked() and frames.device.type != "meta":
            with torch.no_grad():
                finite, low, high = _finite_min_max(frames)
            if not finite or low < -FRAME_LIMIT or high > FRAME_LIMIT:
                raise ValueError(
                    f"frames must be finite and in [-1, 1], got values in [{low:.4g}, {high:.4g}]"
                    + ("" if finite else " including NaN/inf")
                )

    def _check_masks(self, masks: torch.Tensor, frames: torch.Tensor) -> None:
        if not isinstance(masks, torch.Tensor):
            raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}")
        if not masks.is_floating_point():
            raise TypeError(f"masks must be floating point in [0, 1], got dtype {masks.dtype}")
        expected = (frames.shape[0], 1, frames.shape[2], frames.shape[3])
        if tuple(masks.shape) != expected:
            raise ValueError(
                f"masks must be (B, 1, H, W) = {expected} to match frames, got shape "
                f"{tuple(masks.shape)}"
            )
        if masks.device != frames.device:
            raise ValueError(f"masks are on {masks.device} but frames are on {frames.device}")
        if values_checked() and masks.device.type != "meta":
            with torch.no_grad():
                finite, low, high = _finite_min_max(masks)
            if not finite or low < -MASK_TOLERANCE or high > 1.0 + MASK_TOLERANCE:
                raise ValueError(
                    f"masks must be finite and in [0, 1], got values in [{low:.4g}, {high:.4g}]"
                    + ("" if finite else " including NaN/inf")
                )


def _finite_min_max(x: torch.Tensor) -> tuple[bool, float, float]:
    """(all finite, min, max) of a tensor with a single device synchronisation."""
    flat = x.detach().reshape(-1)
    low, high = torch.aminmax(flat)
    stats = torch.stack([torch.isfinite(flat).all().to(low.dtype), low, high]).float().tolist()
    return bool(stats[0]), stats[1], stats[2]


def stored_model_config(checkpoint: Checkpoint, file: str | os.PathLike[str]) -> ModelConfig:
    """Return the ``ModelConfig`` a loaded checkpoint was saved with.

    Raises:
        CheckpointError: its config has no valid ``"model"`` entry (``file`` is named).
    """
    stored = checkpoint.config if isinstance(checkpoint.config, dict) else {}
    model_config = stored.get("model")
    if not isinstance(model_config, Mapping):
        keys = sorted(stored)
        raise CheckpointError(
            f"{str(file)!r} holds no model config: its config has keys {keys}, no 'model'"
        )
    try:
        return ModelConfig.from_dict(model_config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{str(file)!r} has an invalid model config: {error}") from None
