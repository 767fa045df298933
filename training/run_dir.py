"""The run folder: resolved config, JSONL metrics, optional TensorBoard, sample grids.

Layout of ``RUN_DIR``::

    config.json            resolved TrainConfig (to_dict) and the command line
    metrics.jsonl          one JSON object per line: {"step": ..., "stage1/train/rec_loss": ...}
    tensorboard/           event files, when the tensorboard package is installed
    samples/stage1_000500.png   grids: frame | mask overlay | prediction | target (rows)
    checkpoints/last.safetensors   resumable checkpoint (weights, optimisers, RNG, data order)
    checkpoints/last-1.safetensors the previous resumable checkpoints, newest first
                                   (``TrainConfig.keep_checkpoints`` in all, with last)
    checkpoints/stage1.safetensors model checkpoint at the end of stage I
    model.safetensors      the final generator (weights + config), for lcvg_env
    eval/                  the final evaluation (eval.json, plots, gifs)
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from lcvg_env.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    read_checkpoint_header,
    save_checkpoint,
)

_OLDER = re.compile(r"last-(\d+)\.safetensors")
"""Names of the older resumable checkpoints: last-<k>.safetensors, k saves before the newest."""


class ResumeWarning(UserWarning):
    """The newest resumable checkpoint could not be read; an older one is used."""


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
        """The newest resumable checkpoint, written every ``checkpoint_every`` steps."""
        return self.path / "checkpoints" / "last.safetensors"

    def save_resumable(self, keep: int, weights: Mapping[str, torch.Tensor],
                       config: Mapping[str, Any], training_state: Any,
                       metadata: Mapping[str, Any]) -> Path | None:
        """Write a resumable checkpoint as :attr:`checkpoint_path`, keeping the ``keep`` newest.

        The new file is written in full under a hidden name first (``save_checkpoint``, itself
        atomic); then the older ones move down one place (``last`` -> ``last-1`` ..., those past
        ``keep`` are deleted) and the new one becomes ``last``, each by an atomic rename. A crash
        leaves complete files only; between two renames ``last`` may be missing, which
        :func:`load_resumable` falls back from. Returns the path (None when not ``enabled``).
        """
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an int >= 1, got {keep!r}")
        if not self.enabled:
            return None
        folder = self.checkpoint_path.parent
        incoming = save_checkpoint(folder / ".incoming.safetensors", weights, config,
                                   training_state=training_state, metadata=metadata)
        for path in resumable_checkpoints(self.path)[1:]:
            if _older_index(path) >= keep:
                path.unlink(missing_ok=True)
        for k in range(keep - 1, 0, -1):
            newer = self.checkpoint_path if k == 1 else folder / f"last-{k - 1}.safetensors"
            if newer.is_file():
                os.replace(newer, folder / f"last-{k}.safetensors")
        os.replace(incoming, self.checkpoint_path)
        return self.checkpoint_path

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


def resumable_checkpoints(run_path: str | os.PathLike) -> list[Path]:
    """List the resumable checkpoints of a run folder, newest first.

    ``checkpoints/last.safetensors`` comes first even when absent (a crash between the renames
    of :meth:`RunDir.save_resumable` can leave it missing), then the ``last-<k>.safetensors``
    that exist, by k.
    """
    folder = Path(run_path) / "checkpoints"
    older = [Path(e.path) for e in os.scandir(folder)] if folder.is_dir() else []
    return [folder / "last.safetensors"] + sorted(
        (path for path in older if _older_index(path) > 0), key=_older_index)


def _older_index(path: Path) -> int:
    """Return k of ``last-<k>.safetensors``, 0 for any other name."""
    match = _OLDER.fullmatch(path.name)
    return int(match.group(1)) if match else 0


def load_resumable(run_path: str | os.PathLike) -> tuple[Checkpoint, Path]:
    """Load the newest readable resumable checkpoint of a run folder; return it and its path.

    When the newest cannot be read (missing, truncated, not a checkpoint), the next older one
    is tried, and a :class:`ResumeWarning` names each file skipped, its error, and the file
    used.

    Raises:
        FileNotFoundError: the run folder has no resumable checkpoint at all.
        CheckpointError: none of them can be read (the message has each file's error).
    """
    def step_of(ckpt: Checkpoint) -> Any:
        state = ckpt.training_state if isinstance(ckpt.training_state, dict) else {}
        return state.get("step", "?")

    return _newest_readable(run_path, lambda path: load_checkpoint(path, map_location="cpu"),
                            step_of)


def resumable_header(run_path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """Read the header of the checkpoint :func:`load_resumable` would load, not its tensors.

    The header (config, metadata, ...) as ``lcvg_env.checkpoint.read_checkpoint_header`` reads
    it; the same fallback, warning and errors as :func:`load_resumable`.
    """
    def step_of(header: dict[str, Any]) -> Any:
        state = header.get("training_state")
        return state.get("step", "?") if isinstance(state, dict) else "?"

    return _newest_readable(run_path, read_checkpoint_header, step_of)


_Read = TypeVar("_Read")


def _newest_readable(run_path: str | os.PathLike, read: Callable[[Path], _Read],
                     step_of: Callable[[_Read], Any]) -> tuple[_Read, Path]:
    """``read(path)`` of the newest resumable checkpoint it can read (see load_resumable)."""
    candidates = resumable_checkpoints(run_path)
    if not any(path.is_file() for path in candidates):
        raise FileNotFoundError(f"no resumable checkpoint at {candidates[0]}")
    failures: list[str] = []
    for path in candidates:
        try:
            loaded = read(path)
        except (FileNotFoundError, CheckpointError) as error:
            failures.append(f"{path} ({type(error).__name__}: {error})")
            continue
        if failures:
            # stacklevel 1: shown once per process although the CLI reads the run twice
            warnings.warn(f"cannot read the resumable checkpoint {'; '.join(failures)}; "
                          f"resuming from {path} (step {step_of(loaded)}) instead",
                          ResumeWarning, stacklevel=1)
        return loaded, path
    raise CheckpointError("no resumable checkpoint of the run can be read: "
                          + "; ".join(failures))


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
