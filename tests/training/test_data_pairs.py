"""FramePairDataset: items, gap, resize/crop, flips with ground truth, actions, DataLoader."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from training.data.ground_truth import ground_truth_from_masks, save_ground_truth
from training.data.pairs import FramePairDataset, to_tensor


def write_gt_clip(folder: Path, n: int = 4, h: int = 16, w: int = 24) -> Path:
    """Frames with a white 4x4 square moving right by 2 px a frame, with its ground truth."""
    folder.mkdir(parents=True, exist_ok=True)
    masks = np.zeros((n, 1, h, w), np.uint8)
    for t in range(n):
        img = np.full((h, w, 3), 40, np.uint8)
        x0 = 2 + 2 * t
        img[6:10, x0 : x0 + 4] = 255
        masks[t, 0, 6:10, x0 : x0 + 4] = 1
        Image.fromarray(img).save(folder / f"{t:05d}.png")
    save_ground_truth(folder, ground_truth_from_masks(masks, colors=[[255, 255, 255]]))
    return folder


def test_item_keys_shapes_and_range(tmp_path):
    for i in range(2):
        write_gt_clip(tmp_path / "train" / f"{i:05d}")
    ds = FramePairDataset(tmp_path, "train", gap=1)
    assert len(ds) == 6
    item = ds[0]
    assert item["frame"].shape == (3, 16, 24) and item["frame"].dtype == torch.float32
    assert item["next_frame"].shape == (3, 16, 24)
    assert item["foreground"].shape == (1, 16, 24) and item["next_foreground"].shape == (1, 16, 24)
    assert -1.0 <= float(item["frame"].min()) and float(item["frame"].max()) <= 1.0
    assert float(item["frame"].max()) == 1.0  # the white square
    assert item["index"] == 0 and item["clip_index"] == 0 and item["frame_index"] == 0
    # the foreground marks exactly the white pixels
    white = (item["frame"] > 0.99).all(0)
    assert torch.equal(white, item["foreground"][0].bool())
    assert ds[-1]["index"] == 5
    with pytest.raises(IndexError):
        ds[6]


def test_gap_is_respected_and_never_zero(tmp_path):
    write_gt_clip(tmp_path / "train" / "00000", n=8)
    ds = FramePairDataset(tmp_path, gap=5)
    assert len(ds) == 3
    item = ds[2]
    assert item["frame_index"] == 2
    # the square moved 2 px a frame: 10 px over the gap of 5
    cols = lambda m: torch.nonzero(m[0].any(0))[:, 0]  # noqa: E731
    assert int(cols(item["next_foreground"])[0] - cols(item["foreground"])[0]) == 10
    with pytest.raises(ValueError, match="gap must be an int >= 1"):
        FramePairDataset(tmp_path, gap=0)


def test_resize_and_centre_crop_keep_masks_aligned(tmp_path):
    write_gt_clip(tmp_path / "train" / "00000")
    ds = FramePairDataset(tmp_path, size=(8, 8))  # 16x24 -> 8x12 -> crop 8x8 at x=2
    item = ds[0]
    assert item["frame"].shape == (3, 8, 8) and item["foreground"].shape == (1, 8, 8)
    fg = item["foreground"][0].bool()
    assert fg.any()
    assert float(item["frame"][:, fg].mean()) > 0.3  # mask lands on the bright square
    assert float(item["frame"][:, ~fg].mean()) < -0.3
    ds_int = FramePairDataset(tmp_path, size=8)
    assert ds_int[0]["frame"].shape == (3, 8, 8)


def test_flip_flips_frames_and_foreground_together(tmp_path):
    write_gt_clip(tmp_path / "train" / "00000")
    plain = FramePairDataset(tmp_path)
    flipped = FramePairDataset(tmp_path, flip=True)
    seen = set()
    for _ in range(40):
        item = flipped[1]
        ref = plain[1]
        if torch.equal(item["frame"], ref["frame"]):
            seen.add("same")
            assert torch.equal(item["foreground"], ref["foreground"])
        else:
            seen.add("flipped")
            for key in ("frame", "next_frame", "foreground", "next_foreground"):
                assert torch.equal(item[key], ref[key].flip(-1)), key
    assert seen == {"same", "flipped"}


def test_ground_truth_modes(tmp_path):
    write_gt_clip(tmp_path / "train" / "00000")
    plain = tmp_path / "train" / "00001"
    plain.mkdir()
    for t in range(3):
        Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(plain / f"{t:05d}.png")
    mixed = FramePairDataset(tmp_path)
    assert not mixed.has_ground_truth and "foreground" not in mixed[0]
    with pytest.warns(UserWarning, match="1 clips without ground_truth.npz"):
        only_gt = FramePairDataset(tmp_path, ground_truth=True)
    assert len(only_gt) == 3 and "foreground" in only_gt[0]
    assert "foreground" not in FramePairDataset(tmp_path, ground_truth=False)[0]


def test_actions_are_used_when_asked(tmp_path):
    clip = write_gt_clip(tmp_path / "train" / "00000")
    with open(clip / "actions.pkl", "wb") as f:
        pickle.dump([np.array([t, -t], np.float32) for t in range(4)], f)
    ds = FramePairDataset(tmp_path, gap=2, load_actions=True, trust_pickle=True)
    assert torch.equal(ds[1]["action"], torch.tensor([[1.0, -1.0], [2.0, -2.0]]))
    with open(clip / "actions.pkl", "wb") as f:  # one action short, and a None: NaN rows
        pickle.dump([None, np.ones(2)], f)
    ds = FramePairDataset(tmp_path, gap=2, load_actions=True, trust_pickle=True)
    assert torch.isnan(ds[0]["action"][0]).all() and torch.isnan(ds[1]["action"][1]).all()
    assert "action" not in FramePairDataset(tmp_path)[0]


def test_to_tensor_matches_reference():
    frame = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ref = torch.from_numpy(frame).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(to_tensor(frame), ref, atol=1e-6)
    assert torch.allclose(to_tensor(frame, flip=True), ref.flip(-1), atol=1e-6)
    with pytest.raises(ValueError):
        to_tensor(frame[..., 0])


def test_dataloader_with_two_workers(tmp_path):
    for i in range(3):
        write_gt_clip(tmp_path / "train" / f"{i:05d}")
    ds = FramePairDataset(tmp_path, flip=True)
    loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2)
    seen = []
    for batch in loader:
        assert batch["frame"].shape[1:] == (3, 16, 24)
        assert batch["foreground"].shape[1:] == (1, 16, 24)
        seen.extend(batch["index"].tolist())
    assert sorted(seen) == list(range(len(ds)))
