"""Video files as clips: mp4/webm/gif read and written, datasets over videos, convert-videos."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from training.data.clips import ClipDataset
from training.data.layout import DataWarning
from training.data.pairs import FramePairDataset
from training.data.video import (
    VideoError,
    convert_videos,
    count_video_frames,
    read_video,
    write_video,
)


def moving_square(n: int = 8, size: int = 32) -> np.ndarray:
    frames = np.full((n, size, size, 3), 60, np.uint8)
    for t in range(n):
        frames[t, 8:16, 2 + 2 * t : 10 + 2 * t] = (220, 40, 40)
    return frames


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".gif"])
def test_roundtrip(tmp_path, suffix):
    if suffix != ".gif":
        pytest.importorskip("av")
    frames = moving_square()
    path = write_video(tmp_path / f"clip{suffix}", frames, fps=10)
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 6  # lossy codecs: close, not equal
    assert count_video_frames(path) == 8
    assert read_video(path, max_frames=3).shape[0] == 3


def test_unreadable_videos(tmp_path):
    with pytest.raises(VideoError, match="no such video"):
        read_video(tmp_path / "none.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"definitely not a video")
    with pytest.raises(VideoError):
        read_video(tmp_path / "junk.mp4")
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "x.gif", np.zeros((2, 4, 4, 3), np.float32))


def test_datasets_over_a_folder_of_videos(tmp_path):
    pytest.importorskip("av")
    for i in range(2):
        write_video(tmp_path / "train" / f"v{i}.mp4", moving_square(6))
    write_video(tmp_path / "train" / "v2.gif", moving_square(6))
    (tmp_path / "train" / "broken.webm").write_bytes(b"nope")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = FramePairDataset(tmp_path, "train", gap=2, size=16)
    assert sum(issubclass(w.category, DataWarning) for w in caught) == 1
    assert len(ds) == 3 * 4
    item = ds[5]
    assert item["frame"].shape == (3, 16, 16)
    with pytest.warns(DataWarning):
        clips = ClipDataset(tmp_path, "train", length=6)
    assert clips[0]["frames"].shape == (6, 3, 32, 32)
    flat = FramePairDataset(tmp_path / "train" / "v0.mp4", split=None)
    assert len(flat) == 5


def test_convert_videos(tmp_path):
    pytest.importorskip("av")
    src = tmp_path / "videos"
    for i in range(5):
        write_video(src / f"clip{i}.mp4", moving_square(4 + i))
    (src / "bad.mp4").write_bytes(b"xx")
    with pytest.warns(DataWarning, match="1 unreadable videos"):
        counts = convert_videos(src, tmp_path / "out", size=(16, 24), val_fraction=0.2,
                                test_fraction=0.2)
    assert sum(counts.values()) == 5 and counts["train"] >= 3
    ds = FramePairDataset(tmp_path / "out", "train")
    assert ds[0]["frame"].shape == (3, 16, 24)
    assert (tmp_path / "out" / "val" / "00000" / "source.txt").is_file()
    with pytest.raises(FileNotFoundError, match="no video files"):
        convert_videos(tmp_path / "out" / "val", tmp_path / "x")


def test_video_module_does_not_import_the_layout():
    # training.data.layout imports training.data.video: the reverse would be an import circle
    code = ("import sys, training.data.video, training.data.skipped; "
            "assert 'training.data.layout' not in sys.modules, 'layout imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
