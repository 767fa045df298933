"""The run folder: resolved config, JSONL metrics, optional TensorBoard, sample grids.

Layout of ``RUN_DIR``::

    config.json            resolved TrainConfig (to_dict) and the command line
    metrics.jsonl          one JSON object per line: {"step": ..., "stage1/train/rec_loss": ...}
    tensorboard/           event files, when the tensorboard package is installed
    samples/stage1_000500.png   grids: frame | mask overlay | prediction | target (rows)
    checkpoints/last.safetensors   resumable checkpoint (weights, optimisers, RNG, data order)
    checkpoints/stage1.safetensors model checkpoint at the end of stage I
    model.safetensors      the final generator (weights + config), for lcvg_env
    eval/                  the final evaluation (eval.json, plots, gifs)
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


class RunDir:
    """Owns the files of one training run; only the main process writes (``enabled``)."""

    def __init__(self, path: str | os.PathLike, enabled: bool = True,
                 tensorboard: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._tb: Any = None
        if enabled:
            for sub in ("samples", "checkpoints"):
                (self.path / sub).mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except Exception:  # tensorboard not installed: JSONL only
                    SummaryWriter = None
                if SummaryWriter is not None:
                    self._tb = SummaryWriter(str(self.path / "tensorboard"))

    @property
    def checkpoint_path(self) -> Path:
        """The resumable checkpoint, rewritten atomically every ``checkpoint_every`` steps."""
        return self.path / "checkpoints" / "last.safetensors"

    @property
    def model_path(self) -> Path:
        """The final generator checkpoint (weights and config only)."""
        return self.path / "model.safetensors"

    def write_config(self, config: Mapping[str, Any], argv: Sequence[str] | None = None) -> None:
        """Write config.json (resolved config and the command line that made it)."""
        if not self.enabled:
            return
        payload = {"config": dict(config), "argv": list(argv or []),
                   "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        tmp = self.path / "config.json.tmp"
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        os.replace(tmp, self.path / "config.json")

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append one line to metrics.jsonl (and TensorBoard scalars); NaN/inf become null."""
        if not self.enabled or not metrics:
            return
        row: dict[str, Any] = {"step": int(step), "time": round(time.time(), 3)}
        for key, value in metrics.items():
            v = float(value)
            row[key] = v if math.isfinite(v) else None
            if self._tb is not None and math.isfinite(v):
                self._tb.add_scalar(key, v, step)
        with open(self.path / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """All rows of metrics.jsonl (for tests and reports)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def save_grid(self, name: str, rows: Sequence[torch.Tensor], max_items: int = 8) -> Path | None:
        """Save rows of images as one PNG ``samples/<name>.png``; see :func:`image_grid`."""
        if not self.enabled:
            return None
        path = self.path / "samples" / f"{name}.png"
        Image.fromarray(image_grid(rows, max_items)).save(path)
        return path

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] (or (B, 1, H, W) in [0, 1]) -> uint8 (B, H, W, 3)."""
    if frames.dim() != 4 or frames.shape[1] not in (1, 3):
        raise ValueError(f"expected (B, 1|3, H, W), got {tuple(frames.shape)}")
    x = frames.detach().float().cpu()
    if x.shape[1] == 1:
        x = x.clamp(0, 1).expand(-1, 3, -1, -1)
    else:
        x = (x.clamp(-1, 1) + 1) / 2
    return (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def mask_overlay(frames: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Frames (B, 3, H, W) in [-1, 1] tinted red where masks (B, 1, H, W) are on."""
    red = torch.tensor([1.0, -1.0, -1.0], device=frames.device).view(1, 3, 1, 1)
    m = masks.float().clamp(0, 1)
    return frames.float() * (1 - 0.5 * m) + red * 0.5 * m


def image_grid(rows: Sequence[torch.Tensor], max_items: int = 8, pad: int = 2) -> np.ndarray:
    """Tile rows of images into one uint8 (H', W', 3) array.

    Each row is (B, 3, H, W) in [-1, 1] or (B, 1, H, W) in [0, 1]; the first ``max_items``
    images of each row are laid left to right, rows top to bottom, with white padding.
    """
    if not rows:
        raise ValueError("image_grid needs at least one row")
    arrays = [to_uint8(r[:max_items]) for r in rows]
    n = max(a.shape[0] for a in arrays)
    h, w = arrays[0].shape[1:3]
    grid = np.full((len(arrays) * (h + pad) + pad, n * (w + pad) + pad, 3), 255, np.uint8)
    for i, arr in enumerate(arrays):
        for j in range(arr.shape[0]):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y:y + h, x:x + w] = arr[j]
    return grid
