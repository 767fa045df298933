"""Helpers shared by the simulator recorders (``fetchpush``, ``atari``): splits, clip writing.

The recorders write the layout of ``training.data.layout`` (``root/{train,val,test}/NNNNN/``
with ``00000.png ...``, optional ``actions.pkl`` / ``metadata.pkl`` / ``rewards.pkl`` /
``dones.pkl``, one entry per frame) and the ``ground_truth.npz`` sidecar of
``training.data.ground_truth``.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training.data.ground_truth import GroundTruth, save_ground_truth

__all__ = [
    "ClipData",
    "assign_splits",
    "prepare_root",
    "record_dataset",
    "resize_point",
    "write_clip",
]

ClipData = tuple[np.ndarray, GroundTruth, Mapping[str, Sequence[Any]]]
"""What a recorder hands :func:`record_dataset` per clip: frames uint8 (T, H, W, 3), the ground
truth and the per-frame annotations (``{"actions": [...], ...}``)."""


def assign_splits(n: int) -> list[str]:
    """Split name of each of ``n`` clips, in order: 80 % train, 10 % val, 10 % test.

    ``val`` and ``test`` get at least one clip each once ``n >= 3``; fewer clips all go to
    ``train``.

    Args:
        n: number of clips (>= 1).

    Returns:
        A list of ``n`` names from ``("train", "val", "test")``, train first.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of clips must be a positive int, got {n!r}")
    n_held = 0 if n < 3 else max(1, round(0.1 * n))
    n_train = n - 2 * n_held
    return ["train"] * n_train + ["val"] * n_held + ["test"] * n_held


def resize_point(
    xy: np.ndarray, src: tuple[int, int], dst: tuple[int, int]
) -> np.ndarray:
    """Map pixel points from a (h, w) image to the same image resized to (H, W).

    Pixel centres sit at integer coordinates (``training.data.ground_truth``), so
    ``x' = (x + 0.5) * W / w - 0.5`` and likewise for y.

    Args:
        xy: float (..., 2) pixel (x, y); NaN passes through.
        src: source (h, w).
        dst: target (H, W).

    Returns:
        float32 (..., 2) points in the target image.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if xy.shape[-1:] != (2,):
        raise ValueError(f"points must be (..., 2), got shape {xy.shape}")
    scale = np.array([dst[1] / src[1], dst[0] / src[0]])
    return ((xy + 0.5) * scale - 0.5).astype(np.float32)


def write_clip(
    clip_dir: str | os.PathLike[str],
    frames: np.ndarray,
    ground_truth: GroundTruth | None = None,
    annotations: Mapping[str, Sequence[Any]] | None = None,
) -> Path:
    """Write one clip folder: PNG frames, the ground-truth sidecar and per-frame pickles.

    Args:
        clip_dir: the folder to create (``root/<split>/NNNNN``); it must not hold frames yet.
        frames: uint8 (T, H, W, 3) RGB.
        ground_truth: written as ``ground_truth.npz`` when given; its (T, H, W) must match.
        annotations: e.g. ``{"actions": [...], "metadata": [...]}``: each is pickled as
            ``<name>.pkl``, a list with one entry per frame.

    Returns:
        The clip folder.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 (T,H,W,3), got {frames.dtype} with shape {frames.shape}"
        )
    t = frames.shape[0]
    if ground_truth is not None and (
        ground_truth.num_frames != t or ground_truth.size != frames.shape[1:3]
    ):
        raise ValueError(
            f"ground truth covers {ground_truth.num_frames} frames of {ground_truth.size}, "
            f"but the clip has {t} frames of {frames.shape[1:3]}"
        )
    path = Path(clip_dir)
    path.mkdir(parents=True, exist_ok=True)
    if any(path.glob("*.png")):
        raise ValueError(f"{path} already holds frames; choose an empty --out")
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{i:05d}.png", compress_level=1)
    if ground_truth is not None:
        save_ground_truth(path, ground_truth)
    for name, values in (annotations or {}).items():
        values = list(values)
        if len(values) != t:
            raise ValueError(f"{name} needs one entry per frame ({t}), got {len(values)}")
        with open(path / f"{name}.pkl", "wb") as f:
            pickle.dump(values, f)
    return path


def prepare_root(root: str | os.PathLike[str]) -> Path:
    """Create the output root; refuse one that already holds files.

    Raises:
        FileExistsError: ``root`` is a file, or a folder that is not empty.
    """
    path = Path(root)
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        listing = ", ".join(sorted(p.name for p in path.iterdir())[:5])
        raise FileExistsError(f"{path} is not empty (it holds {listing}); choose an empty folder")
    path.mkdir(parents=True, exist_ok=True)
    return path


def record_dataset(
    out: str | os.PathLike[str],
    clips: int,
    seed: int,
    record: Callable[[tuple[int, int]], ClipData],
    name: str,
    info: Mapping[str, Any],
) -> dict[str, Any]:
    """Record ``clips`` clips into the split layout under ``out`` and write ``out/info.json``.

    Clip i gets the seed ``(seed, i)`` (so a clip does not depend on the others) and the split
    of :func:`assign_splits`; the folders of each split are numbered from ``00000``.

    Args:
        out: output root; created, and must be empty.
        clips: number of clips in all.
        seed: the dataset seed.
        record: ``(seed, i) -> (frames, ground_truth, annotations)``.
        name: source name for the progress bar and the summary (``"fetchpush"``).
        info: JSON-safe description of the generator's settings, stored in ``info.json``.

    Returns:
        A summary: ``source``, ``out``, ``clips`` per split, ``frames``, ``seconds`` and
        ``frames_per_s`` (the generation speed, writing included).
    """
    if isinstance(clips, bool) or not isinstance(clips, int) or clips < 1:
        raise ValueError(f"clips must be a positive int, got {clips!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    root = prepare_root(out)
    splits = assign_splits(clips)
    counts = dict.fromkeys(("train", "val", "test"), 0)
    from tqdm import tqdm

    start = time.perf_counter()
    n_frames = 0
    bar = tqdm(range(clips), desc=name, unit="clip", disable=not sys.stderr.isatty())
    for i in bar:
        frames, gt, annotations = record((seed, i))
        split = splits[i]
        write_clip(root / split / f"{counts[split]:05d}", frames, gt, annotations)
        counts[split] += 1
        n_frames += len(frames)
    seconds = time.perf_counter() - start
    summary = {
        "source": name,
        "out": str(root),
        "clips": {k: v for k, v in counts.items() if v},
        "frames": n_frames,
        "seconds": round(seconds, 2),
        "frames_per_s": round(n_frames / max(seconds, 1e-9), 1),
    }
    (root / "info.json").write_text(
        json.dumps({"generator": f"lcvg {name}", "seed": seed, **info, **summary}, indent=2)
        + "\n"
    )
    return summary
