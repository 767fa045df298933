"""The clip layout: scanning, the index, and the bad-data paths (via both datasets)."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.data.clips import ClipDataset
from training.data.layout import DataWarning, LayoutIndex, load_annotation, scan_clips
from training.data.pairs import FramePairDataset


def write_clip(folder: Path, n: int, size: int = 16, value: int = 0, suffix: str = ".png") -> Path:
    """A clip whose frame t is filled with (value + t) in the red channel, t in green."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(n):
        img = np.zeros((size, size, 3), np.uint8)
        img[..., 0] = (value + t) % 256
        img[..., 1] = t
        Image.fromarray(img).save(folder / f"{t:05d}{suffix}")
    return folder


def test_layout_index_maps_items_to_clip_and_frame():
    index = LayoutIndex([np.array([0, 1, 2]), np.array([], dtype=int), np.array([5, 7])])
    assert len(index) == 5
    assert [index.locate(i) for i in range(5)] == [(0, 0), (0, 1), (0, 2), (2, 5), (2, 7)]
    assert index.locate(-1) == (2, 7)
    with pytest.raises(IndexError):
        index.locate(5)
    with pytest.raises(TypeError):
        index.locate(1.0)  # type: ignore[arg-type]


def test_scan_split_layout_with_annotations(tmp_path):
    for i in range(3):
        clip = write_clip(tmp_path / "train" / f"{i:05d}", 4)
        with open(clip / "actions.pkl", "wb") as f:
            pickle.dump([np.zeros(2)] * 4, f)
    scan = scan_clips(tmp_path, "train")
    assert len(scan.clips) == 3
    assert all(c.num_frames == 4 and c.names is None for c in scan.clips)
    assert scan.clips[0].frame_path(3).endswith("00000/00003.png")
    assert "3 clips with 12 frames" in scan.describe()


def test_scan_sorts_frames_numerically(tmp_path):
    clip = tmp_path / "clip"
    clip.mkdir()
    for t in (0, 1, 2, 10):
        Image.fromarray(np.full((4, 4, 3), t, np.uint8)).save(clip / f"frame_{t}.png")
    scan = scan_clips(tmp_path, None)
    assert scan.clips[0].names == ("frame_0.png", "frame_1.png", "frame_2.png", "frame_10.png")


def test_flat_folder_and_single_clip_folder(tmp_path):
    write_clip(tmp_path / "a", 3)
    write_clip(tmp_path / "b", 3)
    assert len(FramePairDataset(tmp_path, split=None)) == 4
    assert len(FramePairDataset(tmp_path / "a", split=None)) == 2


def test_wrong_split_name_raises(tmp_path):
    write_clip(tmp_path / "train" / "00000", 3)
    with pytest.raises(ValueError, match="split must be one of"):
        FramePairDataset(tmp_path, split="training")


def test_missing_split_lists_splits_found(tmp_path):
    write_clip(tmp_path / "train" / "00000", 3)
    with pytest.raises(FileNotFoundError, match=r"no 'val' split; it has the splits \['train'\]"):
        FramePairDataset(tmp_path, split="val")


def test_flat_root_with_split_suggests_split_none(tmp_path):
    write_clip(tmp_path / "clipA", 3)
    with pytest.raises(FileNotFoundError, match="split=None"):
        FramePairDataset(tmp_path, split="train")


def test_missing_root_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        FramePairDataset(tmp_path / "nope")


def test_empty_root_says_what_was_found(tmp_path):
    (tmp_path / "train" / "00000").mkdir(parents=True)
    (tmp_path / "train" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"no usable frame pairs.*0 clips.*1 folders without"):
        FramePairDataset(tmp_path)


def test_only_short_clips_raise(tmp_path):
    write_clip(tmp_path / "train" / "00000", 1)
    with pytest.raises(ValueError, match="1 clips have fewer than 2 readable frames"):
        FramePairDataset(tmp_path)
    with pytest.raises(ValueError, match="no usable windows"):
        ClipDataset(tmp_path, "train", length=2)


def test_bad_data_is_skipped_and_counted_in_one_warning(tmp_path):
    write_clip(tmp_path / "train" / "00000", 5)
    write_clip(tmp_path / "train" / "00001", 1)  # too short for gap 1
    write_clip(tmp_path / "train" / "00002", 2)  # too short for gap 2
    broken = write_clip(tmp_path / "train" / "00003", 5)
    data = (broken / "00002.png").read_bytes()
    (broken / "00002.png").write_bytes(data[: len(data) // 2])  # truncated PNG
    (broken / "00004.png").write_bytes(b"not an image at all")  # unreadable
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = FramePairDataset(tmp_path, gap=2)
    ours = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(ours) == 1
    msg = str(ours[0].message)
    assert "2 unreadable frames" in msg and "2 clips shorter than gap+1=3" in msg
    # clip 0: pairs (0,2) (1,3) (2,4); clip 3 (frames 2 and 4 bad): only (1,3)
    pairs = sorted((ds.clips[c].path[-5:], t) for c, t in zip(ds.index.clip_of, ds.index.frame_of))
    assert pairs == [("00000", 0), ("00000", 1), ("00000", 2), ("00003", 1)]
    for i in range(len(ds)):
        item = ds[i]
        # frame t has green value t: the pair is exactly gap frames apart, never the same frame
        green = lambda x: round((float(x[1, 0, 0]) + 1) * 127.5)  # noqa: E731
        assert green(item["next_frame"]) - green(item["frame"]) == 2


def test_decode_check_catches_what_tail_check_cannot(tmp_path):
    clip = write_clip(tmp_path / "train" / "00000", 4)
    data = bytearray((clip / "00001.png").read_bytes())
    data[40:60] = b"\x00" * 20  # corrupt the middle, keep the end marker
    (clip / "00001.png").write_bytes(bytes(data))
    assert not scan_clips(tmp_path, "train", "tail").unreadable
    assert len(scan_clips(tmp_path, "train", "decode").unreadable) == 1
    # At load time a damaged pair is replaced by another one, with one warning.
    ds = FramePairDataset(tmp_path, check="none", cache_mb=0)
    with pytest.warns(DataWarning, match="unreadable data at pair"):
        items = [ds[i] for i in range(len(ds))]
    assert all(it["frame"].shape == (3, 16, 16) for it in items)


def test_jpeg_frames_and_tail_check(tmp_path):
    clip = tmp_path / "train" / "00000"
    clip.mkdir(parents=True)
    for t in range(3):
        Image.fromarray(np.full((8, 8, 3), 10 * t, np.uint8)).save(clip / f"{t:05d}.jpg")
    data = (clip / "00002.jpg").read_bytes()
    (clip / "00002.jpg").write_bytes(data[:-10])
    scan = scan_clips(tmp_path, "train")
    assert scan.clips[0].suffix == ".jpg" and len(scan.unreadable) == 1


class _RunsOnLoad:
    """Unpickling this opens (creates) ``marker``: what an untrusted pickle could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_actions_pkl_is_read_only_with_trust_pickle(tmp_path):
    clip = write_clip(tmp_path / "train" / "00000", 4)
    with open(clip / "actions.pkl", "wb") as f:
        pickle.dump([np.array([t, -t], np.float32) for t in range(4)], f)
    assert len(FramePairDataset(tmp_path)) == 3  # actions not asked for: the file is never read
    with pytest.raises(PermissionError, match=r"00000/actions\.pkl.*trust_pickle=True"):
        FramePairDataset(tmp_path, load_actions=True)
    with pytest.raises(PermissionError, match="trust_pickle=True"):
        load_annotation(clip, "actions.pkl")
    trusted = FramePairDataset(tmp_path, load_actions=True, trust_pickle=True)
    assert trusted[1]["action"].tolist() == [[1.0, -1.0]]
    assert len(load_annotation(clip, "actions.pkl", trust_pickle=True)) == 4
    assert load_annotation(clip, "rewards.pkl") is None  # absent: nothing to trust

    marker = tmp_path / "code_ran"
    with open(clip / "actions.pkl", "wb") as f:
        pickle.dump(_RunsOnLoad(marker), f)
    with pytest.raises(PermissionError):
        FramePairDataset(tmp_path, load_actions=True)
    with pytest.raises(PermissionError):
        load_annotation(clip, "actions.pkl")
    assert not marker.exists()
