"""Where first frames come from: bundled samples, a dataset folder, an array, or one image.

A ``StartFrames`` holds M candidate first frames as uint8 (M, H, W, 3) at the model's
resolution; an environment draws one per episode with its ``np_random``. Sources:

- an ``.npz`` file (the bundled ``lcvg_env/assets/sprites_starts.npz``): the array named
  ``frames`` (or the file's only array), uint8 (M, H, W, 3);
- an ``.npy`` file with such an array;
- a folder: every image directly inside it, plus the first frame (by sorted name) of every
  clip folder below it, e.g. the ``root/{train,val,test}/NNNNN/00000.png`` layout of
  ``lcvg-data`` and the playable-video-generation releases (only ``test``, else ``val``, is
  used when the folder has such splits, so that held-out clips start the episodes);
- an image file (png, jpg, ...) or an array (H, W, 3) / (M, H, W, 3).

Frames of another size are resized (bilinear, PIL) to the model's resolution; grey or RGBA
images are converted to RGB.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
"""File suffixes read as images."""
DEFAULT_MAX_FRAMES = 4096
"""Largest number of first frames read from a folder (sorted order)."""


class StartFrames:
    """M candidate first frames, uint8 (M, H, W, 3), at one resolution.

    Args:
        frames: uint8 (M, H, W, 3) or (H, W, 3) (numpy); resized to ``resolution``.
        resolution: (H, W) of the model.
        source: a description of where the frames came from (for messages).
    """

    def __init__(self, frames: np.ndarray, resolution: tuple[int, int], source: str = "array"):
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.source = source
        array = check_frames(frames, name=f"start frames from {source}")
        self.frames = resize_frames(array, self.resolution)
        self.frames.setflags(write=False)

    def __len__(self) -> int:
        """M, the number of candidate frames."""
        return int(self.frames.shape[0])

    def __repr__(self) -> str:
        return f"StartFrames({len(self)} frames {self.resolution} from {self.source})"

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One frame (H, W, 3) uint8 drawn uniformly with ``rng`` (a fresh copy)."""
        return self.frames[int(rng.integers(len(self)))].copy()

    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | np.ndarray | StartFrames,
        resolution: tuple[int, int],
        max_frames: int = DEFAULT_MAX_FRAMES,
    ) -> StartFrames:
        """Start frames from a path (npz, npy, image, folder), an array, or a StartFrames.

        Raises:
            FileNotFoundError: the path does not exist.
            ValueError: the source holds no usable frame, or frames of a bad shape or dtype.
        """
        if isinstance(source, StartFrames):
            if source.resolution == tuple(resolution):
                return source
            return cls(source.frames, resolution, source.source)
        if isinstance(source, np.ndarray):
            return cls(source, resolution, "array")
        if not isinstance(source, str | os.PathLike):
            raise TypeError(
                "start frames must be a path, an array or StartFrames, got "
                f"{type(source).__name__}"
            )
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"no start frames at {str(path)!r}")
        if path.is_dir():
            return cls(read_folder(path, max_frames), resolution, str(path))
        suffix = path.suffix.lower()
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                names = list(data.keys())
                if "frames" in names:
                    array = data["frames"]
                elif len(names) == 1:
                    array = data[names[0]]
                else:
                    raise ValueError(
                        f"{str(path)!r} must hold an array named 'frames' (or only one array), "
                        f"has {names}"
                    )
            return cls(array, resolution, str(path))
        if suffix == ".npy":
            return cls(np.load(path, allow_pickle=False), resolution, str(path))
        if suffix in IMAGE_SUFFIXES:
            return cls(read_image(path), resolution, str(path))
        raise ValueError(
            f"cannot read start frames from {str(path)!r}: expected a folder, .npz, .npy or an "
            f"image ({', '.join(IMAGE_SUFFIXES)})"
        )


def check_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """Validate first frames: uint8 (H, W, 3) or (M, H, W, 3) with M >= 1 -> (M, H, W, 3).

    Raises:
        ValueError: anything else, quoting the type, dtype and shape received.
    """
    if not isinstance(frames, np.ndarray):
        try:
            import torch

            if isinstance(frames, torch.Tensor):
                frames = frames.detach().cpu().numpy()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
    if not isinstance(frames, np.ndarray):
        raise ValueError(
            f"{name} must be a uint8 numpy array (H, W, 3) or (M, H, W, 3), got "
            f"{type(frames).__name__}"
        )
    if frames.dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 (values 0..255), got dtype {frames.dtype} with shape "
            f"{frames.shape}"
        )
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(
            f"{name} must have shape (H, W, 3) or (M, H, W, 3) with M, H, W >= 1, got "
            f"{frames.shape}"
        )
    return frames


def resize_frames(frames: np.ndarray, resolution: tuple[int, int]) -> np.ndarray:
    """uint8 (M, h, w, 3) -> uint8 (M, H, W, 3), bilinear; a copy even when sizes agree."""
    h, w = int(resolution[0]), int(resolution[1])
    if frames.shape[1:3] == (h, w):
        return np.ascontiguousarray(frames).copy()
    out = np.empty((frames.shape[0], h, w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR))
    return out


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file as uint8 (H, W, 3) RGB (the first frame of an animated file)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def read_folder(root: Path, max_frames: int = DEFAULT_MAX_FRAMES) -> np.ndarray:
    """First frames of a folder (see the module docstring) as uint8 (M, H, W, 3).

    Frames of different sizes are an error; resize them beforehand.
    """
    splits = [name for name in ("test", "val") if (root / name).is_dir()]
    search = root / splits[0] if splits else root
    paths = _first_frames(search)[:max_frames]
    if not paths:
        raise ValueError(
            f"no images found in {str(search)!r} (looked for {', '.join(IMAGE_SUFFIXES)} files "
            "and clip folders holding them)"
        )
    frames = [read_image(path) for path in paths]
    shapes = sorted({frame.shape for frame in frames})
    if len(shapes) > 1:
        raise ValueError(f"images in {str(search)!r} have different sizes: {shapes[:4]}")
    return np.stack(frames)


def _first_frames(folder: Path) -> list[Path]:
    images: list[Path] = []
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        pictures = sorted(name for name in files if name.lower().endswith(IMAGE_SUFFIXES))
        if not pictures:
            continue
        if Path(current) == folder:
            images.extend(Path(current) / name for name in pictures)
        else:
            images.append(Path(current) / pictures[0])
    return images


def frames_from_options(options: Mapping[str, Any] | None) -> np.ndarray | None:
    """Return the frame passed as ``reset(options={"frame": array})``, validated, or None."""
    if not options or "frame" not in options:
        return None
    frame = check_frames(options["frame"], name='reset(options={"frame": ...})')
    if frame.shape[0] != 1:
        raise ValueError(
            f'reset(options={{"frame": ...}}) takes one frame (H, W, 3), got shape '
            f"{frame.shape}"
        )
    return frame[0]

