"""Property-based tests of the data loaders: a random or damaged clip folder gives a valid clip
or a clear error, never a crash of another kind and never a clip of inconsistent shapes.

Clip folders are drawn from: frame files (valid PNG/JPEG/BMP of random sizes and modes, empty,
truncated or random bytes, odd names), a ground-truth sidecar (valid, of mismatched length or
size, malformed arrays, random bytes, absent) and stray files. Readers under test:
``training.evaluate.load_clip``, ``training.data.layout`` (``scan_clips``, ``read_image``),
``training.data.ground_truth.load_ground_truth`` and the ``FramePairDataset`` / ``ClipDataset``
items. Profiles: ``tests/conftest.py`` (``LCVG_HYPOTHESIS_PROFILE=thorough`` for many more
examples than the default ``quick``).
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st
from PIL import Image

from training.data.clips import ClipDataset
from training.data.ground_truth import (
    GROUND_TRUTH_FILE,
    GroundTruth,
    ground_truth_from_masks,
    load_ground_truth,
    save_ground_truth,
)
from training.data.layout import read_image, scan_clips
from training.data.pairs import FramePairDataset
from training.evaluate import load_clip

CLEAR = (ValueError, OSError)
"""What a damaged clip may raise (``PIL.UnidentifiedImageError`` is an ``OSError``)."""


# --- clip folders -----------------------------------------------------------------------------
def image_bytes(frame: np.ndarray, fmt: str, mode: str) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(frame).convert(mode)
    if fmt == "JPEG" and mode in ("RGBA", "P"):  # JPEG holds neither
        image = image.convert("RGB")
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@st.composite
def frame_files(draw: Any, size: tuple[int, int], t: int, sound: bool) -> tuple[str, bytes]:
    """Frame file ``t``: (name, contents); a sound one is a valid PNG/JPEG at ``size``."""
    h, w = size if sound else draw(st.one_of(st.just(size), st.tuples(st.integers(1, 12),
                                                                       st.integers(1, 12))))
    frame = np.random.default_rng(draw(st.integers(0, 99))).integers(0, 256, (h, w, 3), np.uint8)
    formats = [("PNG", ".png"), ("JPEG", ".jpg")] + ([] if sound else [("BMP", ".bmp")])
    fmt, suffix = draw(st.sampled_from(formats))
    data = image_bytes(frame, fmt, draw(st.sampled_from(["RGB", "L", "RGBA", "P"])))
    damage = "none" if sound else draw(st.sampled_from(["none", "empty", "truncate", "random",
                                                        "flip"]))
    if damage == "empty":
        data = b""
    elif damage == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "random":
        data = draw(st.binary(max_size=64))
    elif damage == "flip":
        raw = bytearray(data)
        raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
        data = bytes(raw)
    name = f"{t:05d}" if sound else draw(st.one_of(st.integers(0, 5).map("{:05d}".format),
                                                   st.sampled_from(["frame", "a 1", "10"])))
    return name + suffix, data


@st.composite
def sidecars(draw: Any, frames: int, size: tuple[int, int], sound: bool) -> Any:
    """A ground-truth sidecar: a GroundTruth to save, raw bytes, or None (absent)."""
    kind = "valid" if sound else draw(st.sampled_from(["valid", "other_length", "other_size",
                                                       "bytes", "wrong_keys", "absent"]))
    if kind == "absent":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "wrong_keys":
        buffer = io.BytesIO()
        np.savez(buffer, object_masks=np.zeros((2, 2), np.float32))
        return buffer.getvalue()
    t = max(frames, 1) + (draw(st.integers(-3, 3)) if kind == "other_length" else 0)
    h, w = (size[0] + 2, size[1]) if kind == "other_size" else size
    k = draw(st.integers(1, 3))
    masks = np.random.default_rng(draw(st.integers(0, 99))).random((max(t, 1), k, h, w)) > 0.7
    gt = ground_truth_from_masks(masks.astype(np.uint8))
    colors = np.zeros((k, 3), np.uint8) if sound or draw(st.booleans()) else None
    return GroundTruth(gt.object_masks, gt.foreground, gt.centroids, gt.boxes, colors=colors)


@st.composite
def clip_folders(draw: Any) -> dict[str, Any]:
    """A clip folder: its files (name -> bytes) and its sidecar; sound ones half the time."""
    size = (draw(st.integers(2, 10)), draw(st.integers(2, 10)))
    sound = draw(st.booleans())
    count = draw(st.integers(1 if sound else 0, 5))
    files = dict(draw(frame_files(size, t, sound)) for t in range(count))
    if draw(st.booleans()):
        files["notes.txt"] = b"stray"
    return {"files": files, "sidecar": draw(sidecars(count, size, sound)), "size": size}


@contextmanager
def written(spec: dict[str, Any]) -> Iterator[Path]:
    """The clip folder of ``spec`` written to ``root/clip``; yields ``root``."""
    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip"
        clip.mkdir()
        for name, data in spec["files"].items():
            (clip / name).write_bytes(data)
        sidecar = spec["sidecar"]
        if isinstance(sidecar, bytes):
            (clip / GROUND_TRUTH_FILE).write_bytes(sidecar)
        elif sidecar is not None:
            save_ground_truth(clip, sidecar)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DataWarning: skipped data is counted, expected
            yield Path(folder)


def clear_or(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``function``; a clear error (with a message) gives None."""
    try:
        return function(*args, **kwargs)
    except CLEAR as error:
        assert str(error)
        return None


# --- properties -------------------------------------------------------------------------------
@given(spec=clip_folders(), length=st.integers(1, 4), size=st.sampled_from([(8, 8), (6, 10)]))
def test_load_clip_gives_a_whole_clip_or_a_clear_error(spec: dict, length: int,
                                                       size: tuple[int, int]) -> None:
    with written(spec) as root:
        clip = clear_or(load_clip, root / "clip", length, size)
    event("a clip" if clip is not None else "no clip")
    if clip is None:
        return
    frames, objects = clip["frames"], clip["objects"]
    k = objects.shape[1]
    assert frames.shape == (length, 3, *size) and bool(torch.isfinite(frames).all())
    assert float(frames.min()) >= -1 and float(frames.max()) <= 1
    assert objects.shape == (length, k, *size)
    assert clip["foreground"].shape == (length, 1, *size)
    assert clip["centroids"].shape == (length, k, 2)
    assert clip["colors"].shape == (k, 3)


@given(spec=clip_folders())
def test_ground_truth_reads_whole_or_says_why(spec: dict) -> None:
    with written(spec) as root:
        gt = clear_or(load_ground_truth, root / "clip")
    if gt is not None:
        t, k, h, w = gt.object_masks.shape
        assert gt.centroids.shape == (t, k, 2) and gt.foreground.shape == (t, h, w)


@given(spec=clip_folders(), check=st.sampled_from(["none", "tail", "decode"]))
def test_scan_and_frames_read_or_say_why(spec: dict, check: str) -> None:
    with written(spec) as root:
        scan = scan_clips(root, split=None, check=check)
        for clip in scan.clips:
            assert 1 <= clip.num_frames <= len(spec["files"])
            for t in range(clip.num_frames):
                frame = clear_or(read_image, clip.frame_path(t))
                if frame is not None:
                    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3


@pytest.mark.parametrize("dataset", ["pairs", "windows"])
@given(spec=clip_folders(), check=st.sampled_from(["none", "tail", "decode"]))
def test_dataset_items_are_whole_or_the_dataset_says_why(dataset: str, spec: dict,
                                                         check: str) -> None:
    with written(spec) as root:
        if dataset == "pairs":
            data = clear_or(FramePairDataset, root, None, gap=1, size=8, check=check)
        else:
            data = clear_or(ClipDataset, root, None, length=2, size=8, check=check)
        event("a dataset" if data is not None else "no dataset")
        if data is None:
            return
        for index in range(len(data)):
            try:
                item = data[index]
            except RuntimeError as error:  # every item unreadable: the documented failure
                assert "unreadable" in str(error)
                return
            frames = item["frame"] if dataset == "pairs" else item["frames"]
            assert frames.shape[-3:] == (3, 8, 8) and bool(torch.isfinite(frames).all())
