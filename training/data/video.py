"""Video files (mp4, webm, gif, ...) as clips: read with PyAV, or imageio when PyAV is missing.

PyAV (``pip install av``, in the ``video`` and ``dev`` extras) reads every format ffmpeg knows.
Without it, imageio's Pillow plugin still reads GIFs. Whole videos are decoded at once: the
datasets cache them per worker; for long videos, convert them to the frame-folder layout first
(``lcvg-data convert-videos``), which loads far faster.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from training.data.skipped import DataWarning

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoError",
    "check_split_fractions",
    "convert_videos",
    "count_video_frames",
    "read_video",
    "write_video",
]

VIDEO_EXTENSIONS = (".mp4", ".webm", ".gif", ".avi", ".mov", ".mkv", ".m4v")
"""File suffixes treated as videos (lower case)."""


class VideoError(ValueError):
    """A video file could not be opened or decoded."""


def _have_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def read_video(
    path: str | os.PathLike[str],
    max_frames: int | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """Decode a video file.

    Args:
        path: the video file.
        max_frames: stop after this many frames (None: all).
        transform: applied to each decoded (H, W, 3) uint8 frame (e.g. a resize, so that a long
            high-resolution video never sits in memory at full size).

    Returns:
        uint8 (T, H, W, 3) RGB frames.

    Raises:
        VideoError: unreadable file, or no frame decoded.
    """
    path = Path(path)
    if max_frames is not None and max_frames <= 0:
        raise ValueError(f"max_frames must be positive or None, got {max_frames}")
    if not path.is_file():
        raise VideoError(f"no such video file: {path}")
    frames: list[np.ndarray] = []
    try:
        for frame in _iter_frames(path):
            frames.append(transform(frame) if transform is not None else frame)
            if max_frames is not None and len(frames) >= max_frames:
                break
    except VideoError:
        raise
    except Exception as exc:  # decoders raise many types (av.error.*, OSError, ValueError)
        if not frames:
            raise VideoError(f"cannot decode video {path}: {exc}") from exc
        # A truncated file: keep the frames decoded before the damage.
    if not frames:
        raise VideoError(f"no frame decoded from video {path}")
    return np.stack(frames)


def count_video_frames(path: str | os.PathLike[str], exact: bool = False) -> int:
    """Count the frames of a video.

    Args:
        path: the video file.
        exact: decode every frame to count them; otherwise trust the container's count when it
            has one, else count the packets of the video stream (no decoding).

    Raises:
        VideoError: the file cannot be opened.
    """
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"no such video file: {path}")
    if exact or not _have_av():
        return int(read_video(path).shape[0]) if exact else _count_imageio(path)
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"no video stream in {path}")
            stream = container.streams.video[0]
            if stream.frames and stream.frames > 0:
                return int(stream.frames)
            n = 0
            for packet in container.demux(stream):
                if packet.size:
                    n += 1
            return n
    except VideoError:
        raise
    except Exception as exc:
        raise VideoError(f"cannot open video {path}: {exc}") from exc


def write_video(
    path: str | os.PathLike[str], frames: np.ndarray, fps: float = 10.0, quality: str = "high"
) -> Path:
    """Encode uint8 (T, H, W, 3) RGB frames into a video; the suffix picks the format.

    ``.gif`` is written with Pillow (lossless palette per frame for few-colour frames); ``.mp4``
    (H.264) and ``.webm`` (VP9) with PyAV. ``quality`` is "high" (near lossless) or "normal".

    Returns:
        The path written.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8 (T,H,W,3), got {frames.dtype} with shape {frames.shape}"
        )
    if quality not in ("high", "normal"):
        raise ValueError(f"quality must be 'high' or 'normal', got {quality!r}")
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(
            path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0
        )
        return path
    if not _have_av():
        raise VideoError(f"writing {suffix} needs PyAV: pip install av (or the [video] extra)")
    from fractions import Fraction

    import av

    codec, options = {
        ".mp4": ("libx264", {"crf": "1" if quality == "high" else "20", "preset": "fast"}),
        ".mkv": ("libx264", {"crf": "1" if quality == "high" else "20", "preset": "fast"}),
        ".webm": ("libvpx-vp9", {"crf": "4" if quality == "high" else "30", "b": "0"}),
    }.get(suffix, ("mpeg4", {"qscale": "2"}))
    h, w = frames.shape[1:3]
    pad_h, pad_w = h % 2, w % 2  # yuv420p needs even sizes
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height = w + pad_w, h + pad_h
        stream.pix_fmt = "yuv420p"
        stream.options = options
        for f in frames:
            if pad_h or pad_w:
                f = np.pad(f, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _iter_frames(path: Path) -> Iterator[np.ndarray]:
    if _have_av():
        import av

        try:
            container = av.open(str(path))
        except Exception as exc:
            raise VideoError(f"cannot open video {path}: {exc}") from exc
        with container:
            if not container.streams.video:
                raise VideoError(f"no video stream in {path}")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")
        return
    import imageio.v3 as iio

    try:
        for image in iio.imiter(path):
            arr = np.asarray(image)
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=-1)
            yield np.ascontiguousarray(arr[..., :3]).astype(np.uint8, copy=False)
    except Exception as exc:
        raise VideoError(f"cannot read {path} without PyAV (pip install av): {exc}") from exc


def _count_imageio(path: Path) -> int:
    return int(read_video(path).shape[0])


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ValueError unless both fractions are in [0, 1) and leave train a share (sum < 1)."""
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= frac < 1:
            raise ValueError(f"{name} must be in [0, 1), got {frac!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )


def _deal_into_splits(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> list[tuple[str, int]]:
    """Shuffle items 0..n-1 with ``seed`` and deal them into (split, item) pairs.

    val and test get their rounded fractions, train the rest; when that would leave train
    empty, everything goes to train.
    """
    import random

    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = int(round(n * val_fraction))
    n_test = int(round(n * test_fraction))
    if n - n_val - n_test < 1:
        n_val, n_test = 0, 0
    return (
        [("val", i) for i in order[:n_val]]
        + [("test", i) for i in order[n_val : n_val + n_test]]
        + [("train", i) for i in order[n_val + n_test :]]
    )


def convert_videos(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    size: int | tuple[int, int] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    max_frames: int | None = None,
    png_level: int = 0,
) -> dict[str, int]:
    """Decode a folder of videos (or one video) into the frame-folder layout.

    Videos are shuffled with ``seed`` and dealt into ``dst/{train,val,test}/NNNNN/`` (train gets
    what the fractions leave); each becomes ``00000.png ...`` plus ``source.txt`` naming the
    video. Frames are resized and centre-cropped to ``size`` when given, and written as
    uncompressed PNGs (``png_level`` 0, fastest to load) or compressed ones (1-9). Unreadable
    videos are skipped and counted in one warning.

    Returns:
        Clips written per split.
    """
    import warnings

    from training.data.png import write_png
    from training.data.transforms import ResizeCrop

    check_split_fractions(val_fraction, test_fraction)
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"video source does not exist: {src}")
    if src.is_file():
        videos = [src]
    else:
        videos = sorted(p for p in src.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
    if not videos:
        shown = ", ".join(sorted(os.listdir(src))[:8]) if src.is_dir() else str(src)
        raise FileNotFoundError(
            f"no video files ({', '.join(VIDEO_EXTENSIONS)}) under {src}; "
            f"it holds: {shown or 'nothing'}"
        )
    assignment = _deal_into_splits(len(videos), val_fraction, test_fraction, seed)
    resize = ResizeCrop(size)
    counts = {"train": 0, "val": 0, "test": 0}
    failed: list[str] = []
    root = Path(dst)
    for split, i in sorted(assignment, key=lambda a: (a[0], a[1])):
        try:
            frames = read_video(videos[i], max_frames=max_frames, transform=resize.image)
        except VideoError as exc:
            failed.append(f"{videos[i].name} ({exc})")
            continue
        clip = root / split / f"{counts[split]:05d}"
        clip.mkdir(parents=True, exist_ok=True)
        for t, frame in enumerate(frames):
            write_png(clip / f"{t:05d}.png", np.ascontiguousarray(frame), png_level)
        (clip / "source.txt").write_text(str(videos[i].resolve()) + "\n")
        counts[split] += 1
    if failed:
        warnings.warn(
            f"skipped {len(failed)} unreadable videos (e.g. {'; '.join(failed[:3])})",
            DataWarning,
            stacklevel=2,
        )
    if not sum(counts.values()):
        raise ValueError(f"no video under {src} could be decoded: {'; '.join(failed[:3])}")
    return counts
