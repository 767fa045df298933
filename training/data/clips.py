"""Whole clips (windows of T frames) with their ground truth, for evaluation and rollouts."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

from training.data.layout import (
    CHECK_MODES,
    LayoutIndex,
    build_index,
    scan_clips,
    warn_skipped,
)
from training.data.layout_dataset import LayoutDataset
from training.data.transforms import flip_boxes, flip_points, parse_size

__all__ = ["ClipDataset"]


class ClipDataset(LayoutDataset):
    """Windows of ``length`` frames (every ``step``-th frame) from the clips of a split.

    Same sources and bad-data handling as :class:`~training.data.pairs.FramePairDataset`: a
    window never spans an unreadable frame; clips without a full window are skipped and counted
    in one :class:`~training.data.layout.DataWarning`.

    Item (a dict), T = ``length``:
        ``frames``: float32 (T, 3, H, W) in [-1, 1];
        ``clip_dir``: str (clip folder or video file); ``index``, ``clip_index``, ``start``: int;
        with ground truth: ``foreground`` float32 (T, 1, H, W) in {0, 1}, ``object_masks``
        float32 (T, K, H, W) in {0, 1}, ``centroids`` float32 (T, K, 2) pixel (x, y) in the
        output frame (NaN when not visible), ``boxes`` float32 (T, K, 4) inclusive pixel boxes,
        ``object_valid`` bool (K,) (False for padding, see ``max_objects``).

    Args:
        root: data root (see ``training.data.layout``).
        split: "train", "val", "test", or None for a flat folder.
        length: frames per window T >= 1.
        size: output (H, W), an int for a square, or None (source size).
        step: frame step inside a window (the pair gap of the preset, e.g. 5 for Tennis).
        stride: distance between window starts; None gives one window per clip (its first).
        flip: flip each window left-right with probability 1/2 (frames, masks, coordinates).
        max_objects: pad (or cut) the object axis to K = max_objects so that clips with
            different object counts batch together; None keeps each clip's own K.
        check: frame check at scan time: "none", "tail" or "decode".
        cache_mb: decoded-frame cache per process, MiB.
        ground_truth: None (use it when every usable clip has it), True (require) or False.
    """

    item_noun = "window"

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str | None = "test",
        length: int = 16,
        size: int | tuple[int, int] | None = None,
        *,
        step: int = 1,
        stride: int | None = None,
        flip: bool = False,
        max_objects: int | None = None,
        check: str = "tail",
        cache_mb: float = 512.0,
        ground_truth: bool | None = None,
    ) -> None:
        for name, value in (("length", length), ("step", step)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if stride is not None and (
            isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1
        ):
            raise ValueError(f"stride must be an int >= 1 or None, got {stride!r}")
        if max_objects is not None and (
            isinstance(max_objects, bool) or not isinstance(max_objects, int) or max_objects < 1
        ):
            raise ValueError(f"max_objects must be an int >= 1 or None, got {max_objects!r}")
        if check not in CHECK_MODES:
            raise ValueError(f"check must be one of {CHECK_MODES}, got {check!r}")
        self.root = os.fspath(root)
        self.split = split
        self.length = int(length)
        self.step = int(step)
        self.stride = None if stride is None else int(stride)
        self.size = parse_size(size)
        self.flip = bool(flip)
        self.max_objects = max_objects
        scan = scan_clips(root, split, check)
        missing_gt = 0

        def keep(clip: Any) -> bool:
            nonlocal missing_gt
            if ground_truth is True and not clip.has_ground_truth:
                missing_gt += 1
                return False
            return True

        offsets = tuple(range(0, self.length * self.step, self.step))
        clips, index, short = build_index(scan, offsets, keep)
        # Thin the starts: one per clip, or every ``stride`` frames.
        starts = []
        for c in range(len(clips)):
            s = index.frame_of[index.offsets[c] : index.offsets[c + 1]]
            if self.stride is None:
                s = s[:1]
            else:
                s = s[(s - s[0]) % self.stride == 0]
            starts.append(s)
        self.index = LayoutIndex(starts)
        span = (self.length - 1) * self.step + 1
        if len(self.index) == 0:
            raise ValueError(
                f"no usable windows of {self.length} frames (step {self.step}, span {span}) in "
                f"{scan.describe()}; {short} clips are shorter than that"
                + (f", {missing_gt} clips lack ground_truth.npz" if missing_gt else "")
            )
        warn_skipped(
            {
                "unreadable frames or videos": len(scan.unreadable),
                f"clips without {span} consecutive readable frames": short,
                "clips without ground_truth.npz": missing_gt,
            },
            scan.unreadable,
        )
        self._attach(clips, ground_truth, cache_mb)
        self._load_failures = 0

    def _item(self, index: int) -> dict[str, Any]:
        clip, start = self.index.locate(index)
        ts = list(range(start, start + self.length * self.step, self.step))
        frames = self.reader.frames(clip, ts)  # (T, H, W, 3) uint8
        flip = self.flip and random.random() < 0.5
        if flip:
            frames = frames[:, :, ::-1]
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        item: dict[str, Any] = {
            "frames": x.div_(127.5).sub_(1.0),
            "clip_dir": self.clips[clip].path,
            "index": index,
            "clip_index": clip,
            "start": start,
        }
        if self.has_ground_truth:
            gt = self.reader.ground_truth(clip)
            if gt is None:  # pragma: no cover - guarded by has_ground_truth
                raise ValueError(f"ground truth vanished from {self.clips[clip].path}")
            if gt.num_frames < ts[-1] + 1:
                raise ValueError(
                    f"{self.clips[clip].path}/ground_truth.npz has {gt.num_frames} frames, "
                    f"the clip {self.clips[clip].num_frames}"
                )
            fg = gt.foreground[ts]  # (T, H, W)
            masks = gt.object_masks[ts]  # (T, K, H, W)
            cents = gt.centroids[ts]  # (T, K, 2)
            boxes = gt.boxes[ts]  # (T, K, 4)
            width = fg.shape[-1]
            if flip:
                fg, masks = fg[..., ::-1], masks[..., ::-1]
                cents, boxes = flip_points(cents, width), flip_boxes(boxes, width)
            valid = np.ones(masks.shape[1], dtype=bool)
            if self.max_objects is not None:
                masks, cents, boxes, valid = _pad_objects(masks, cents, boxes, self.max_objects)
            item["foreground"] = torch.from_numpy(np.ascontiguousarray(fg, np.float32))[:, None]
            item["object_masks"] = torch.from_numpy(np.ascontiguousarray(masks, np.float32))
            item["centroids"] = torch.from_numpy(np.ascontiguousarray(cents, np.float32))
            item["boxes"] = torch.from_numpy(np.ascontiguousarray(boxes, np.float32))
            item["object_valid"] = torch.from_numpy(valid)
        return item

    def ground_truth(self, index: int) -> Any:
        """Return the resized ground truth (all frames, key colours, names) of a window's clip.

        Returns:
            A :class:`~training.data.ground_truth.GroundTruth`, or None without ground truth.
        """
        clip, _ = self.index.locate(index)
        return self.reader.ground_truth(clip)

    def __repr__(self) -> str:
        return (
            f"ClipDataset(root={self.root!r}, split={self.split!r}, length={self.length}, "
            f"step={self.step}, size={self.size}, windows={len(self)}, clips={len(self.clips)}, "
            f"ground_truth={self.has_ground_truth})"
        )


def _pad_objects(
    masks: np.ndarray, cents: np.ndarray, boxes: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    t, have, h, w = masks.shape
    n = min(have, k)
    out_m = np.zeros((t, k, h, w), dtype=masks.dtype)
    out_c = np.full((t, k, 2), np.nan, dtype=np.float32)
    out_b = np.full((t, k, 4), np.nan, dtype=np.float32)
    out_m[:, :n] = masks[:, :n]
    out_c[:, :n] = cents[:, :n]
    out_b[:, :n] = boxes[:, :n]
    valid = np.zeros(k, dtype=bool)
    valid[:n] = True
    return out_m, out_c, out_b, valid
