"""Diagnostics that tell the paper's ablations apart (``python -m training.ablations DATA CKPT``).

For a generator and held-out clips with ground truth, :func:`mask_diagnostics` measures what
each ablation is expected to break (method.md):

* ``mask_iou``: binarised mask vs the true moving foreground;
* ``mask_fraction`` vs ``true_fraction``: mean binarised mask area vs true foreground area
  (no L_bg: the mask collapses to empty; no L_fg: it fills the frame; fixed prior: a fixed
  size whatever the objects);
* ``soft_fraction``: share of pixels with a soft mask value in (0.1, 0.9) (no L_bin);
* ``leak``: mean |change| of the generated frame OUTSIDE the objects when the soft mask is
  shifted by 1/8 of the width, relative to the unshifted prediction (no L_bin: a soft mask
  leaks the scene, so shifting it moves the background too).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lcvg_env.configs import check_ints, parse_config
from lcvg_env.models import LayeredGenerator
from training import metrics
from training.evaluate import list_clips, load_clip, module_modes, restore_modes


@torch.no_grad()
def mask_diagnostics(model: LayeredGenerator, data: str | Path, split: str = "test",
                     num_clips: int = 16, frames: int = 8) -> dict[str, Any]:
    """Return the numbers of the module docstring, averaged over ``num_clips`` clips."""
    size = tuple(model.config.resolution)
    clips = []
    for clip_dir in list_clips(data, split):
        c = load_clip(clip_dir, frames, size)  # type: ignore[arg-type]
        if c is not None:
            clips.append(c)
        if len(clips) >= num_clips:
            break
    if not clips:
        raise ValueError(f"no usable clip in {Path(data) / split}")
    dev = next(model.parameters()).device
    f = torch.cat([c["frames"] for c in clips]).to(dev)  # (N, 3, H, W)
    fg = torch.cat([c["foreground"] for c in clips]).to(dev)  # (N, 1, H, W)
    modes = module_modes(model)
    model.eval()
    soft = torch.cat([model.mask(f[i:i + 64]) for i in range(0, f.shape[0], 64)]).float()
    binary = (soft > 0.5).float()
    shift = size[1] // 8
    shifted = torch.roll(soft, shifts=shift, dims=-1)
    pred = torch.cat([model.predict_next(f[i:i + 64], soft[i:i + 64])
                      for i in range(0, f.shape[0], 64)]).float()
    pred_s = torch.cat([model.predict_next(f[i:i + 64], shifted[i:i + 64])
                        for i in range(0, f.shape[0], 64)]).float()
    outside = 1 - torch.maximum(torch.maximum(fg, torch.roll(fg, shift, -1)),
                                torch.maximum(binary, torch.roll(binary, shift, -1)))
    leak = ((pred_s - pred).abs().mean(1, keepdim=True) * outside).sum() / outside.sum()
    restore_modes(modes)
    return {
        "mask_iou": float(metrics.mask_iou(binary, fg).mean()),
        "mask_fraction": float(binary.mean()),
        "true_fraction": float(fg.mean()),
        "soft_fraction": float(((soft > 0.1) & (soft < 0.9)).float().mean()),
        "leak": float(leak),
        "frames": int(f.shape[0]),
    }


@dataclass(frozen=True)
class DiagnosticsConfig:
    """What ``python -m training.ablations`` measures (:func:`mask_diagnostics`'s arguments)."""

    eval_split: str = "test"
    """Held-out split the clips come from."""
    eval_clips: int = 16
    """Clips averaged over."""
    frames: int = 8
    """Frames of each clip."""
    device: str = "cpu"
    """Torch device of the generators."""
    threads: int = 1
    """Torch CPU threads."""

    def __post_init__(self) -> None:
        """Validate the counts, naming the offending value."""
        check_ints(self, {"eval_clips": 1, "frames": 1, "threads": 1})


def main(argv: list[str] | None = None) -> int:
    """``python -m training.ablations DATA CKPT [CKPT ...]``: print one JSON line per ckpt."""
    parser = argparse.ArgumentParser(prog="python -m training.ablations",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("data", metavar="DATA", help="dataset root with ground truth")
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT",
                        help="generator checkpoints to diagnose")
    config, args = parse_config(parser, DiagnosticsConfig, argv, print_config=False)
    torch.set_num_threads(config.threads)
    for ckpt in args.checkpoints:
        model = LayeredGenerator.from_checkpoint(ckpt, device=config.device)
        diagnostics = mask_diagnostics(model, args.data, split=config.eval_split,
                                       num_clips=config.eval_clips, frames=config.frames)
        print(json.dumps({"checkpoint": ckpt, **diagnostics}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
