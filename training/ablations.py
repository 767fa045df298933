"""Diagnostics that tell the paper's ablations apart (``python -m training.ablations RUN ...``).

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

import json
import sys
from pathlib import Path
from typing import Any

import torch

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


def main(argv: list[str] | None = None) -> int:
    """``python -m training.ablations DATA CKPT [CKPT ...]``: print one JSON line per ckpt."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python -m training.ablations DATA CHECKPOINT [CHECKPOINT ...]",
              file=sys.stderr)
        return 2
    data, ckpts = args[0], args[1:]
    torch.set_num_threads(1)
    for ckpt in ckpts:
        model = LayeredGenerator.from_checkpoint(ckpt, device="cpu")
        print(json.dumps({"checkpoint": ckpt, **mask_diagnostics(model, data)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
