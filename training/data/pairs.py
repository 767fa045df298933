"""Pairs of frames (f_t, f_{t+k}) for stage I and stage II training."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from training.data.layout import (
    CHECK_MODES,
    build_index,
    load_annotation,
    require_trusted_pickle,
    scan_clips,
)
from training.data.layout_dataset import LayoutDataset
from training.data.skipped import warn_skipped
from training.data.transforms import parse_size

__all__ = ["FramePairDataset", "to_tensor"]


def to_tensor(frame: np.ndarray, flip: bool = False) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [-1, 1], optionally flipped left-right."""
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"frame must be (H, W, 3), got shape {frame.shape}")
    src = frame[:, ::-1] if flip else frame
    out = np.empty((3,) + frame.shape[:2], dtype=np.float32)
    np.multiply(src.transpose(2, 0, 1), np.float32(1 / 127.5), out=out, casting="unsafe")
    out -= 1.0
    return torch.from_numpy(out)


class FramePairDataset(LayoutDataset):
    """Pairs (f_t, f_{t+gap}) of every clip of a split, with the clip's ground truth if any.

    Sources: the split layout ``root/{train,val,test}/NNNNN/*.png`` (see ``training.data.layout``),
    a flat folder of clip folders and/or video files (``split=None``), a single clip folder or a
    single video file (``split=None``). A frame is never paired with itself: clips need at least
    ``gap + 1`` readable frames, and pairs whose frames are unreadable are skipped; everything
    skipped is counted in one :class:`~training.data.layout.DataWarning`.

    Item (a dict):
        ``frame``, ``next_frame``: float32 (3, H, W) in [-1, 1];
        ``index``, ``clip_index``, ``frame_index``: int (item, clip, t);
        with ground truth: ``foreground``, ``next_foreground``: float32 (1, H, W) in {0, 1};
        with ``load_actions``: ``action``: float32 (gap, A), the actions of frames t .. t+gap-1.

    Args:
        root: data root (see above).
        split: "train", "val", "test", or None for a flat folder.
        gap: frame gap k >= 1 (BAIR 1, Tennis 5).
        size: output (H, W) (frames are resized to cover it and centre-cropped), an int for a
            square, or None to keep the source size (all frames must then share one size).
        flip: flip each pair left-right with probability 1/2 (frames and masks alike; the
            decision uses Python's ``random``, which DataLoader seeds per worker).
        check: frame check at scan time: "none", "tail" (truncation) or "decode".
        cache_mb: decoded-frame cache per process (DataLoader worker), MiB.
        ground_truth: None (use it when every usable clip has a sidecar), True (require it:
            clips without one are skipped and counted) or False (ignore it).
        load_actions: add ``action`` from ``actions.pkl`` (clips without one are skipped).
        trust_pickle: must be True with ``load_actions`` when a clip has ``actions.pkl``: the
            file is a pickle, and unpickling can execute arbitrary code. Without it the
            dataset raises PermissionError naming the file.
    """

    item_noun = "pair"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = "train",
        gap: int = 1,
        size: int | tuple[int, int] | None = None,
        flip: bool = False,
        *,
        check: str = "tail",
        cache_mb: float = 512.0,
        ground_truth: bool | None = None,
        load_actions: bool = False,
        trust_pickle: bool = False,
    ) -> None:
        if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or gap < 1:
            raise ValueError(
                f"gap must be an int >= 1 (a frame is never paired with itself), got {gap!r}"
            )
        if check not in CHECK_MODES:
            raise ValueError(f"check must be one of {CHECK_MODES}, got {check!r}")
        self.root = os.fspath(root)
        self.split = split
        self.gap = int(gap)
        self.size = parse_size(size)
        self.flip = bool(flip)
        self.load_actions = bool(load_actions)
        self.trust_pickle = bool(trust_pickle)
        scan = scan_clips(root, split, check)

        missing_gt = 0
        missing_actions = 0

        def keep(clip: Any) -> bool:
            nonlocal missing_gt, missing_actions
            if ground_truth is True and not clip.has_ground_truth:
                missing_gt += 1
                return False
            if self.load_actions:
                actions = os.path.join(clip.path, "actions.pkl")
                if clip.is_video or not os.path.isfile(actions):
                    missing_actions += 1
                    return False
                require_trusted_pickle(actions, self.trust_pickle)  # refuse now, not mid-epoch
            return True

        clips, self.index, short = build_index(scan, (0, self.gap), keep)
        if len(self.index) == 0:
            raise ValueError(
                f"no usable frame pairs (gap={self.gap}) in {scan.describe()}; "
                f"{short} clips have fewer than {self.gap + 1} readable frames"
                + (f", {missing_gt} clips lack ground_truth.npz" if missing_gt else "")
                + (f", {missing_actions} clips lack actions.pkl" if missing_actions else "")
            )
        warn_skipped(
            {
                "unreadable frames or videos": len(scan.unreadable),
                f"clips shorter than gap+1={self.gap + 1} readable frames": short,
                "clips without ground_truth.npz": missing_gt,
                "clips without actions.pkl": missing_actions,
            },
            scan.unreadable,
        )
        self._attach(clips, ground_truth, cache_mb)
        self._actions: dict[int, np.ndarray] = {}
        self._load_failures = 0

    def _item(self, index: int) -> dict[str, Any]:
        clip, t = self.index.locate(index)
        a = self.reader.frame(clip, t)
        b = self.reader.frame(clip, t + self.gap)
        if a.shape != b.shape:
            raise ValueError(
                f"frames {t} and {t + self.gap} of {self.clips[clip].path} differ in size "
                f"({a.shape} vs {b.shape}); pass size=(H, W)"
            )
        flip = self.flip and random.random() < 0.5
        item: dict[str, Any] = {
            "frame": to_tensor(a, flip),
            "next_frame": to_tensor(b, flip),
            "index": index,
            "clip_index": clip,
            "frame_index": t,
        }
        if self.has_ground_truth:
            fg = self.reader.foreground(clip)
            if fg is None:  # pragma: no cover - guarded by has_ground_truth
                raise ValueError(f"ground truth vanished from {self.clips[clip].path}")
            if len(fg) < t + self.gap + 1:
                raise ValueError(
                    f"{self.clips[clip].path}/ground_truth.npz has {len(fg)} frames, "
                    f"the clip {self.clips[clip].num_frames}"
                )
            item["foreground"] = _mask_tensor(fg[t], flip)
            item["next_foreground"] = _mask_tensor(fg[t + self.gap], flip)
        if self.load_actions:
            actions = self._clip_actions(clip)
            item["action"] = torch.from_numpy(actions[t : t + self.gap].copy())
        return item

    def _clip_actions(self, clip: int) -> np.ndarray:
        hit = self._actions.get(clip)
        if hit is None:
            raw = load_annotation(self.clips[clip].path, "actions.pkl", self.trust_pickle)
            hit = _actions_array(raw, self.clips[clip].path, self.clips[clip].num_frames)
            self._actions[clip] = hit
        return hit

    def __repr__(self) -> str:
        return (
            f"FramePairDataset(root={self.root!r}, split={self.split!r}, gap={self.gap}, "
            f"size={self.size}, flip={self.flip}, pairs={len(self)}, clips={len(self.clips)}, "
            f"ground_truth={self.has_ground_truth})"
        )


def _mask_tensor(mask: np.ndarray, flip: bool) -> torch.Tensor:
    if flip:
        mask = mask[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None]


def _actions_array(raw: Any, where: str, num_frames: int) -> np.ndarray:
    """Per-frame actions (a list) -> float32 (max(T, len), A); missing or None rows are NaN."""
    if raw is None:
        raise ValueError(f"{where} has no actions.pkl")
    rows = [
        None if a is None else np.atleast_1d(np.asarray(a, dtype=np.float32)).reshape(-1)
        for a in raw
    ]
    width = max((r.shape[0] for r in rows if r is not None), default=1)
    out = np.full((max(len(rows), num_frames), width), np.nan, dtype=np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            out[i, : r.shape[0]] = r.reshape(-1)[:width]
    return out
