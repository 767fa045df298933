"""The on-disk layout of clips, its scan, the index from item to (clip, frame), and frame reading.

Layout (that of the playable-video-generation release, how BAIR 256 and Tennis circulate)::

    root/
      train/ val/ test/            splits (any subset)
        00000/                     one clip folder per video
          00000.png 00001.png ...  frames in time order (png/jpg/bmp/webp; numeric order)
          actions.pkl              optional: list, one action per frame (a pickle: read
                                   only with trust_pickle, see load_annotation)
          rewards.pkl dones.pkl    optional
          metadata.pkl             optional: list, one dict per frame
          ground_truth.npz         optional: see ``training.data.ground_truth``
        clip.mp4                   a video file can stand in for a clip folder

``split=None`` reads ``root`` itself as a flat folder of clip folders and/or video files (or
``root`` is a single clip folder or video file).

Scanning lists every clip folder once; nothing is listed per item. ``check`` decides how hard the
scan looks at frames: ``"none"`` (names only), ``"tail"`` (default: empty files and truncated
PNG/JPEG, by their end markers; cheap, see docs/performance.md) or ``"decode"`` (decode every
frame). Frames that fail are skipped: a pair or window never uses them.
"""

from __future__ import annotations

import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training.data.ground_truth import (
    GROUND_TRUTH_FILE,
    GroundTruth,
    load_foreground,
    load_ground_truth,
    mask_boxes_px,
    mask_centroids_px,
)
from training.data.png import read_png_fast
from training.data.skipped import DataWarning, warn_skipped
from training.data.transforms import ResizeCrop
from training.data.video import VIDEO_EXTENSIONS, VideoError, count_video_frames, read_video

__all__ = [
    "ANNOTATION_FILES",
    "CHECK_MODES",
    "FRAME_EXTENSIONS",
    "SPLITS",
    "Clip",
    "ClipReader",
    "DataWarning",
    "LayoutIndex",
    "Scan",
    "read_image",
    "scan_clips",
    "warn_skipped",
]

SPLITS = ("train", "val", "test")
"""Split folder names."""
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
"""Frame image suffixes (lower case)."""
ANNOTATION_FILES = ("actions.pkl", "rewards.pkl", "metadata.pkl", "dones.pkl")
"""Optional per-clip files of the playable-video-generation layout."""
CHECK_MODES = ("none", "tail", "decode")
"""How hard a scan checks frames (see the module docstring)."""

_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


@dataclass(frozen=True)
class Clip:
    """One clip: a folder of frames or a video file."""

    path: str
    """The clip folder, or the video file."""
    num_frames: int
    """Number of frames (listed files, or the video's frame count)."""
    names: tuple[str, ...] | None = None
    """Frame file names in time order; None for videos and for the standard ``{t:05d}.png``."""
    suffix: str = ".png"
    """Frame suffix when ``names`` is None."""
    bad: frozenset[int] = frozenset()
    """Indices of unreadable frames."""
    has_ground_truth: bool = False
    """True when the folder holds ``ground_truth.npz``."""
    is_video: bool = False
    """True for a video file."""

    def frame_path(self, t: int) -> str:
        """Path of frame ``t`` (frame folders only)."""
        if self.is_video:
            raise ValueError(f"{self.path} is a video file, it has no frame files")
        name = self.names[t] if self.names is not None else f"{t:05d}{self.suffix}"
        return os.path.join(self.path, name)

    def good(self) -> np.ndarray:
        """Bool (num_frames,): True for readable frames."""
        ok = np.ones(self.num_frames, dtype=bool)
        if self.bad:
            ok[list(self.bad)] = False
        return ok


@dataclass
class Scan:
    """What a scan of a root found."""

    location: Path
    """The folder scanned (``root/split``, or ``root``)."""
    clips: list[Clip]
    """Clips in sorted order (each with at least one frame)."""
    unreadable: list[str] = field(default_factory=list)
    """Frames (or videos) that failed the check."""
    empty: list[str] = field(default_factory=list)
    """Clip folders without any frame file."""
    ignored: list[str] = field(default_factory=list)
    """Other files at the clip level (neither folders nor videos)."""

    def describe(self) -> str:
        """One line: what was found."""
        frames = sum(c.num_frames for c in self.clips)
        parts = [f"{len(self.clips)} clips with {frames} frames"]
        if self.empty:
            parts.append(f"{len(self.empty)} folders without frames")
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable frames or videos")
        if self.ignored:
            shown = ", ".join(self.ignored[:5]) + (" ..." if len(self.ignored) > 5 else "")
            parts.append(f"{len(self.ignored)} other files ({shown})")
        return f"{self.location}: " + ", ".join(parts)


def scan_clips(
    root: str | os.PathLike[str], split: str | None = "train", check: str = "tail"
) -> Scan:
    """List the clips of ``root/split`` (or of ``root`` when ``split`` is None).

    Raises:
        ValueError: ``split`` is not one of ``SPLITS`` / None, or ``check`` is unknown.
        FileNotFoundError: ``root`` or the split folder does not exist (the message lists what
            ``root`` holds instead).
    """
    if check not in CHECK_MODES:
        raise ValueError(f"check must be one of {CHECK_MODES}, got {check!r}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None (flat folder), got {split!r}")
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data root does not exist: {root}")
    if split is None:
        location = root
    else:
        location = root / split
        if not location.is_dir():
            present = [s for s in SPLITS if (root / s).is_dir()] if root.is_dir() else []
            if present:
                raise FileNotFoundError(
                    f"{root} has no {split!r} split; it has the splits {present}"
                )
            listing = _peek(root)
            raise FileNotFoundError(
                f"{root} has no split folders ({'/'.join(SPLITS)}); it holds {listing}. "
                "Pass split=None to read it as a flat folder of clips."
            )
    scan = Scan(location=location, clips=[])
    if location.is_file():
        _add_video(scan, location, check)
        return scan
    entries = sorted(os.scandir(location), key=lambda e: _natural_key(e.name))
    direct_frames = [
        e.name for e in entries if e.is_file() and e.name.lower().endswith(FRAME_EXTENSIONS)
    ]
    if direct_frames and split is None:
        # ``root`` is itself one clip folder.
        _add_folder(scan, location.as_posix(), [e for e in entries if e.is_file()], check)
        return scan
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = [e for e in os.scandir(entry.path) if e.is_file()]
            _add_folder(scan, entry.path, files, check)
        elif entry.name.lower().endswith(VIDEO_EXTENSIONS):
            _add_video(scan, Path(entry.path), check)
        else:
            scan.ignored.append(entry.name)
    return scan


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to uint8 (H, W, 3) RGB (grey, palette and RGBA are converted).

    Unfiltered RGB PNGs (as ``training.data.png.write_png`` writes them) take a fast path;
    everything else goes through Pillow.

    Raises:
        OSError, ValueError: unreadable or truncated file.
    """
    if os.fspath(path).lower().endswith(".png"):
        frame = read_png_fast(path)
        if frame is not None:
            return frame
    with Image.open(path) as im:
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im)


class LayoutIndex:
    """O(1) map from a flat item index to (clip, frame), from each clip's valid start frames.

    Args:
        starts: per clip, the int array of frames at which an item may start.
    """

    def __init__(self, starts: Sequence[np.ndarray]) -> None:
        counts = np.array([len(s) for s in starts], dtype=np.int64)
        self.counts = counts
        """Items per clip."""
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        """(num_clips + 1,) first item index of each clip."""
        dtype = np.int32 if len(starts) < 2**31 else np.int64
        self.clip_of = np.repeat(np.arange(len(starts), dtype=dtype), counts)
        """(N,) clip of each item."""
        self.frame_of = (
            np.concatenate([np.asarray(s, dtype=np.int32) for s in starts])
            if len(starts)
            else np.zeros(0, np.int32)
        )
        """(N,) start frame of each item."""

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(clip, frame) of item ``index`` (negative indices count from the end)."""
        n = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an int, got {type(index).__name__}")
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        return int(self.clip_of[index]), int(self.frame_of[index])


class _LRU:
    """A tiny least-recently-used cache with a byte budget."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        hit = self.items.get(key)
        if hit is None:
            return None
        self.items.move_to_end(key)
        return hit[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        if self.budget <= 0:
            return
        if key in self.items:
            self.used -= self.items.pop(key)[1]
        self.items[key] = (value, nbytes)
        self.used += nbytes
        while self.used > self.budget and len(self.items) > 1:
            _, (_, size) = self.items.popitem(last=False)
            self.used -= size


class ClipReader:
    """Reads frames and ground truth of scanned clips, resized, with a per-process cache.

    Each DataLoader worker holds its own copy (and cache). Frames are cached after decoding and
    resizing, so a dataset that fits the budget is decoded once per worker.

    Args:
        clips: the clips.
        size: target (H, W) or None (source size).
        cache_mb: cache budget in MiB per process (0 disables it; videos are always kept while
            in use).
    """

    def __init__(
        self, clips: Sequence[Clip], size: int | tuple[int, int] | None, cache_mb: float = 512.0
    ) -> None:
        if cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {cache_mb}")
        self.clips = list(clips)
        self.resize = ResizeCrop(size)
        self.cache_mb = float(cache_mb)
        self._cache = _LRU(int(cache_mb * 2**20))
        self._pid = os.getpid()

    def _lru(self) -> _LRU:
        if os.getpid() != self._pid:  # a forked worker starts with an empty cache of its own
            self._cache = _LRU(int(self.cache_mb * 2**20))
            self._pid = os.getpid()
        return self._cache

    def _cached(
        self, key: Hashable, make: Callable[[], Any], nbytes: Callable[[Any], int] | None = None
    ) -> Any:
        """Return the cached value of ``key``, else ``make()`` (cached unless None)."""
        cache = self._lru()
        value = cache.get(key)
        if value is None:
            value = make()
            if value is not None:
                cache.put(key, value, value.nbytes if nbytes is None else nbytes(value))
        return value

    def frame(self, clip: int, t: int) -> np.ndarray:
        """Frame ``t`` of clip ``clip``: uint8 (H, W, 3), resized and cropped."""
        c = self.clips[clip]
        if c.is_video:
            return self.video(clip)[t]
        return self._cached(("f", clip, t), lambda: self.resize.image(read_image(c.frame_path(t))))

    def frames(self, clip: int, ts: Sequence[int]) -> np.ndarray:
        """Frames ``ts`` of a clip: uint8 (T, H, W, 3)."""
        if self.clips[clip].is_video:
            return self.video(clip)[list(ts)]
        return np.stack([self.frame(clip, t) for t in ts])

    def video(self, clip: int) -> np.ndarray:
        """All frames of a video clip: uint8 (T, H, W, 3), resized and cropped."""
        path = self.clips[clip].path
        return self._cached(("v", clip), lambda: read_video(path, transform=self.resize.image))

    def ground_truth(self, clip: int) -> GroundTruth | None:
        """Return the clip's ground truth, resized and cropped like its frames, or None."""
        c = self.clips[clip]
        if not c.has_ground_truth:
            return None

        def load() -> GroundTruth | None:
            gt = load_ground_truth(c.path)
            return None if gt is None else _resize_ground_truth(gt, self.resize, gt.size)

        return self._cached(
            ("g", clip),
            load,
            lambda gt: gt.object_masks.nbytes + gt.foreground.nbytes + gt.centroids.nbytes,
        )

    def foreground(self, clip: int) -> np.ndarray | None:
        """Return the clip's foreground masks uint8 (T, H, W), resized and cropped, or None.

        Reads and caches only the ``foreground`` array of the sidecar (what pairs need).
        """
        c = self.clips[clip]
        if not c.has_ground_truth:
            return None

        def load() -> np.ndarray | None:
            fg = load_foreground(c.path)
            return None if fg is None else np.ascontiguousarray(self.resize.masks(fg))

        return self._cached(("fg", clip), load)


def require_trusted_pickle(path: str | os.PathLike[str], trust_pickle: bool) -> None:
    """Refuse to go on towards unpickling ``path`` unless ``trust_pickle`` is True.

    The per-clip annotation files are pickles, and unpickling can execute arbitrary code.

    Raises:
        PermissionError: ``trust_pickle`` is False; the message names ``path`` and the option.
    """
    if not trust_pickle:
        raise PermissionError(
            f"{os.fspath(path)!r} is a pickle: loading it can execute arbitrary code. Pass "
            "trust_pickle=True (e.g. FramePairDataset(..., load_actions=True, trust_pickle=True)) "
            "if you trust where the data came from."
        )


def load_annotation(
    clip_dir: str | os.PathLike[str], name: str, trust_pickle: bool = False
) -> Any:
    """Unpickle an optional per-clip file (``actions.pkl`` ...); None when absent.

    Raises:
        PermissionError: the file exists and ``trust_pickle`` is False (see
            :func:`require_trusted_pickle`).
    """
    path = Path(clip_dir) / name
    if not path.is_file():
        return None
    require_trusted_pickle(path, trust_pickle)
    with open(path, "rb") as f:
        return pickle.load(f)


def _resize_ground_truth(gt: GroundTruth, resize: ResizeCrop, src: tuple[int, int]) -> GroundTruth:
    """Resize masks (nearest) and map coordinates; objects cut by the crop get recomputed ones.

    An object wholly inside the crop keeps its exact centroid, scaled. An object the crop cuts
    has a different visible part, so its centroid is recomputed from its resized mask (NaN when
    nothing is left), and its box is clipped to the frame.
    """
    g = resize.geometry(src)
    if g.identity:
        return gt
    masks = resize.masks(gt.object_masks)
    centroids = resize.points(gt.centroids, src)
    boxes = resize.boxes(gt.boxes, src)
    if g.resized != g.out:  # a crop happened: find the objects it cuts
        sx, sy = g.resized[1] / g.src[1], g.resized[0] / g.src[0]
        (oy, ox), (h, w) = g.offset, g.out
        with np.errstate(invalid="ignore"):
            cut = (
                (gt.boxes[..., 0] * sx - ox < -0.5)
                | (gt.boxes[..., 1] * sy - oy < -0.5)
                | ((gt.boxes[..., 2] + 1) * sx - ox > w + 0.5)
                | ((gt.boxes[..., 3] + 1) * sy - oy > h + 0.5)
            )
        if cut.any():
            centroids = np.where(cut[..., None], mask_centroids_px(masks), centroids)
            boxes = np.where(cut[..., None], mask_boxes_px(masks), boxes)
    return GroundTruth(
        object_masks=masks,
        foreground=resize.masks(gt.foreground),
        centroids=centroids.astype(np.float32),
        boxes=boxes.astype(np.float32),
        colors=gt.colors,
        names=gt.names,
    )


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _peek(folder: Path, limit: int = 8) -> str:
    if not folder.is_dir():
        return "nothing (it is a file)"
    names = sorted(os.listdir(folder))
    if not names:
        return "nothing (it is empty)"
    more = f" ... ({len(names)} entries)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _frame_ok(path: str, check: str) -> bool:
    if check == "none":
        return True
    if check == "decode":
        try:
            with Image.open(path) as im:
                im.load()
            return True
        except Exception:
            return False
    lower = path.lower()
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if size == 0:
                return False
            if lower.endswith(".png"):
                if size < 12:
                    return False
                f.seek(-12, os.SEEK_END)
                return f.read(12) == _PNG_END
            if lower.endswith((".jpg", ".jpeg")):
                f.seek(-min(size, 32), os.SEEK_END)
                return b"\xff\xd9" in f.read()
            return True
    except OSError:
        return False


def _add_folder(scan: Scan, folder: str, files: list[os.DirEntry[str]], check: str) -> None:
    names = sorted(
        (e.name for e in files if e.name.lower().endswith(FRAME_EXTENSIONS)), key=_natural_key
    )
    if not names:
        scan.empty.append(folder)
        return
    has_gt = any(e.name == GROUND_TRUTH_FILE for e in files)
    bad = set()
    for t, name in enumerate(names):
        if not _frame_ok(os.path.join(folder, name), check):
            bad.add(t)
            scan.unreadable.append(os.path.join(folder, name))
    suffix = os.path.splitext(names[0])[1]
    standard = all(name == f"{t:05d}{suffix}" for t, name in enumerate(names))
    scan.clips.append(
        Clip(
            path=folder,
            num_frames=len(names),
            names=None if standard else tuple(names),
            suffix=suffix,
            bad=frozenset(bad),
            has_ground_truth=has_gt,
        )
    )


def _add_video(scan: Scan, path: Path, check: str) -> None:
    try:
        n = count_video_frames(path, exact=check == "decode")
    except VideoError:
        scan.unreadable.append(str(path))
        return
    if n <= 0:
        scan.empty.append(str(path))
        return
    scan.clips.append(Clip(path=str(path), num_frames=n, is_video=True))


def valid_starts(clip: Clip, offsets: Sequence[int]) -> np.ndarray:
    """Frames t of a clip such that every frame t + o (o in ``offsets``) exists and is readable.

    Returns:
        int64 (N,) sorted start frames.
    """
    span = max(offsets)
    n = clip.num_frames - span
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    good = clip.good()
    ok = np.ones(n, dtype=bool)
    for o in offsets:
        ok &= good[o : o + n]
    return np.flatnonzero(ok)


def build_index(
    scan: Scan,
    offsets: Sequence[int],
    keep: Callable[[Clip], bool] | None = None,
) -> tuple[list[Clip], LayoutIndex, int]:
    """Drop clips without a valid start; return (clips kept, their index, number dropped)."""
    kept: list[Clip] = []
    starts: list[np.ndarray] = []
    dropped = 0
    for clip in scan.clips:
        if keep is not None and not keep(clip):
            continue
        s = valid_starts(clip, offsets)
        if len(s) == 0:
            dropped += 1
            continue
        kept.append(clip)
        starts.append(s)
    return kept, LayoutIndex(starts), dropped

