"""Convert the authors' released BAIR checkpoint into an lcvg checkpoint.

``lcvg-convert-official CKPT OUT --trust-pickle`` reads the PyTorch Lightning checkpoint of
the released code (github.com/Gabriel-Huang/Layered-Controllable-Video-Generation, module
``VQARAutoMaskModel``), renames its ``state_dict`` onto ``LayeredGenerator`` built with
``ModelConfig.official_bair()`` (BatchNorm mask network, taming's beta placement), checks every
name and shape, and writes a safetensors checkpoint that ``gym.make("LCVG-BAIR-v0",
checkpoint=OUT)`` and ``LayeredGenerator.from_checkpoint`` load. A Lightning checkpoint is a
pickle, and unpickling can run arbitrary code, so reading one needs ``--trust-pickle``
(``trust_pickle=True``): only convert files whose origin you trust. The output is pickle-free.

Mapping rules (released key -> ours), applied in this order:

1. The checkpoint's ``state_dict`` entry is used (a bare state dict is accepted too).
2. ``loss.*`` is dropped: the training loss module (PatchGAN discriminator, LPIPS/VGG
   perceptual network), not part of the generator.
3. ``resnet_mask.model.<i>.<rest>`` -> ``mask_net.layers.<i>.<rest>``: the CycleGAN ResNet
   generator's ``nn.Sequential`` (reflection pads, ReLUs and the sigmoid hold no weights, so the
   indices agree: 1 stem conv, 2 BN, 4/5 and 7/8 downsampling conv/BN, 10..18 residual blocks
   with ``conv_block.{1,2,5,6}``, 19/20 and 22/23 transposed conv/BN, 26 output conv); BatchNorm
   ``running_mean``, ``running_var`` and ``num_batches_tracked`` included.
4. ``quantize.embedding.weight`` -> ``quantizer.embedding.weight`` (the codebook, 1024 x 256).
5. ``encoder.*``, ``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*`` keep their names: our
   VQGAN blocks use taming-transformers' names (``conv_in``, ``down.<i>.block.<j>.{norm1,
   conv1,norm2,conv2,nin_shortcut}``, ``down.<i>.attn.<j>.{norm,q,k,v,proj_out}``,
   ``down.<i>.downsample.conv``, ``mid.{block_1,attn_1,block_2}``, ``up.<i>.block.<j>``,
   ``up.<i>.upsample.conv``, ``norm_out``, ``conv_out``).
6. Any other key is an error (listed), as is any missing or wrongly shaped key; floating point
   tensors are stored as float32.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lcvg_env.checkpoint import CheckpointError, save_checkpoint
from lcvg_env.configs import parse_config
from lcvg_env.models import LayeredGenerator, ModelConfig

DROPPED_PREFIXES = ("loss.",)
"""Released keys that are not part of the generator."""
RENAMED_PREFIXES = (
    ("resnet_mask.model.", "mask_net.layers."),
    ("quantize.", "quantizer."),
)
"""(released prefix, our prefix) pairs."""
KEPT_PREFIXES = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
"""Released prefixes whose keys are ours unchanged."""


def rename_key(key: str) -> str | None:
    """Our name for a released state-dict key, or None when the key is dropped.

    Raises:
        CheckpointError: the key belongs to no known module.
    """
    if key.startswith(DROPPED_PREFIXES):
        return None
    for old, new in RENAMED_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    if key.startswith(KEPT_PREFIXES):
        return key
    raise CheckpointError(f"released checkpoint key {key!r} belongs to no known module")


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: ModelConfig | None = None
) -> dict[str, torch.Tensor]:
    """Rename a released state dict onto ``LayeredGenerator(config)`` and check it.

    Args:
        state_dict: the released ``state_dict`` (name -> tensor); tensors may live on any
            device, "meta" included (then only names and shapes are checked).
        config: the architecture; default ``ModelConfig.official_bair()``.

    Returns:
        Our state dict (floating tensors as float32).

    Raises:
        TypeError: ``state_dict`` is not a mapping of str -> tensor.
        CheckpointError: unknown, missing or wrongly shaped keys (all of them listed).
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
    config = config or ModelConfig.official_bair()
    unknown: list[str] = []
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(
                f"state_dict must map str -> tensor, got {key!r} -> {type(value).__name__}"
            )
        try:
            new = rename_key(key)
        except CheckpointError:
            unknown.append(key)
            continue
        if new is not None:
            out[new] = value.float() if value.is_floating_point() else value
    # (a CPU model: building one on the "meta" device costs seconds of one-off warm-up)
    expected = {k: tuple(v.shape) for k, v in LayeredGenerator(config).state_dict().items()}
    missing = sorted(set(expected) - set(out))
    unexpected = sorted(set(out) - set(expected))
    wrong = [
        f"{k}: released {tuple(out[k].shape)} vs ours {expected[k]}"
        for k in sorted(set(out) & set(expected))
        if tuple(out[k].shape) != expected[k]
    ]
    if unknown or missing or unexpected or wrong:
        parts = []
        for label, items in (
            ("keys of no known module", unknown),
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("wrongly shaped keys", wrong),
        ):
            if items:
                more = f", ... ({len(items) - 8} more)" if len(items) > 8 else ""
                shown = ", ".join(items[:8]) + more
                parts.append(f"{label} ({len(items)}): {shown}")
        raise CheckpointError(
            "the released state dict does not fit LayeredGenerator(official_bair "
            f"{config.resolution}): " + "; ".join(parts)
        )
    return out


def load_released(path: str | os.PathLike[str], trust_pickle: bool = False) -> dict[str, Any]:
    """Unpickle a released Lightning checkpoint (needs ``trust_pickle=True``).

    Returns the checkpoint dict; a bare state dict is wrapped as ``{"state_dict": ...}``.

    Raises:
        PermissionError: ``trust_pickle`` is False.
        FileNotFoundError: no file at ``path``.
        CheckpointError: the file is not a checkpoint dict.
    """
    path = Path(path)
    if not trust_pickle:
        raise PermissionError(
            f"{str(path)!r} is a pickle: loading it can execute arbitrary code. Pass "
            "--trust-pickle (trust_pickle=True) if you trust where it came from."
        )
    if not path.is_file():
        raise FileNotFoundError(f"no released checkpoint at {str(path)!r}")
    data = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{str(path)!r} holds a {type(data).__name__}, not a checkpoint dict")
    if "state_dict" not in data:
        if all(isinstance(value, torch.Tensor) for value in data.values()):
            return {"state_dict": dict(data)}
        raise CheckpointError(
            f"{str(path)!r} has no 'state_dict' entry (keys: {sorted(map(str, data))[:12]})"
        )
    return dict(data)


def convert_official(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    trust_pickle: bool = False,
    resolution: tuple[int, int] = (256, 256),
) -> Path:
    """Convert a released checkpoint file to an lcvg checkpoint at ``out``; returns ``out``.

    Args:
        checkpoint: the released ``.ckpt`` (Lightning pickle).
        out: destination ``.safetensors`` (parent folders are created).
        trust_pickle: must be True to unpickle ``checkpoint``.
        resolution: (H, W) the model runs at: (256, 256) for BAIR, (96, 256) for Tennis.
    """
    data = load_released(checkpoint, trust_pickle=trust_pickle)
    config = ModelConfig.official_bair().replace(resolution=tuple(resolution))
    weights = convert_state_dict(data["state_dict"], config)
    metadata: dict[str, Any] = {
        "source": "official release (VQARAutoMaskModel), converted by lcvg-convert-official",
        "released_file": Path(checkpoint).name,
    }
    for key in ("global_step", "epoch", "pytorch-lightning_version"):
        value = data.get(key)
        if isinstance(value, int | float | str):
            metadata[key] = value
    return save_checkpoint(out, weights, {"model": config.to_dict()}, metadata=metadata)


@dataclass(frozen=True)
class ConvertOfficialConfig:
    """Options of ``lcvg-convert-official CKPT OUT`` (:func:`convert_official`'s)."""

    trust_pickle: bool = False
    """Allow unpickling CKPT (can execute code: only for files you trust)."""
    resolution: tuple[int, int] = (256, 256)
    """Frame size (H, W) the model runs at (BAIR 256 256, Tennis 96 256)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lcvg-convert-official CKPT OUT --trust-pickle [--resolution H W]``.

    Returns 0 on success, 2 on a refused or failed conversion (the reason is printed).
    """
    parser = argparse.ArgumentParser(
        prog="lcvg-convert-official",
        description="Convert the authors' released LCVG (BAIR) Lightning checkpoint into an "
        "lcvg safetensors checkpoint for gym.make('LCVG-BAIR-v0', checkpoint=OUT).",
    )
    parser.add_argument("checkpoint", help="released checkpoint (.ckpt, a pickle)")
    parser.add_argument("out", help="output file (.safetensors)")
    config, args = parse_config(parser, ConvertOfficialConfig, argv, print_config=False)
    try:
        path = convert_official(args.checkpoint, args.out, trust_pickle=config.trust_pickle,
                                resolution=config.resolution)
    except (PermissionError, FileNotFoundError, CheckpointError, ValueError, TypeError) as error:
        print(f"lcvg-convert-official: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
