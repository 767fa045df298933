"""ClipDataset: windows, ground truth resized with the frames, flips, object padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from training.data.clips import ClipDataset
from training.data.ground_truth import locate_objects, mask_centroids_px
from training.data.sprites import SpritesConfig, generate_sprites


@pytest.fixture(scope="module")
def sprites_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("sprites")
    generate_sprites(root, clips=6, seed=5, config=SpritesConfig(size=32, frames=8), workers=1,
                     val_fraction=0.0, test_fraction=0.5)
    return root


def test_windows_and_keys(sprites_root):
    ds = ClipDataset(sprites_root, "test", length=4)
    assert len(ds) == 3  # one window per clip
    item = ds[0]
    assert item["frames"].shape == (4, 3, 32, 32)
    k = item["object_masks"].shape[1]
    assert item["foreground"].shape == (4, 1, 32, 32)
    assert item["centroids"].shape == (4, k, 2) and item["boxes"].shape == (4, k, 4)
    assert item["object_valid"].all() and item["clip_dir"].endswith("test/00000")
    strided = ClipDataset(sprites_root, "test", length=4, stride=2)
    assert len(strided) == 9  # starts 0, 2, 4 in each 8-frame clip
    stepped = ClipDataset(sprites_root, "test", length=3, step=3, stride=1)
    assert len(stepped) == 3 * 2  # span 7 in 8 frames
    assert stepped[1]["start"] == 1


def test_ground_truth_is_resized_consistently(sprites_root):
    ds = ClipDataset(sprites_root, "test", length=8, size=16)
    for i in range(len(ds)):
        item = ds[i]
        cents = item["centroids"].numpy()
        from_masks = mask_centroids_px(item["object_masks"].numpy())
        seen = ~np.isnan(cents[..., 0]) & ~np.isnan(from_masks[..., 0])
        assert np.abs(cents - from_masks)[seen].max() < 1.0
        fg = item["foreground"][:, 0].bool()
        assert torch.equal(fg, item["object_masks"].amax(1).bool())
    # the locator on resized real frames agrees with the resized ground truth
    item = ds[0]
    frames = ((item["frames"].permute(0, 2, 3, 1) + 1) * 127.5).round().byte().numpy()
    found = locate_objects(frames, ds.ground_truth(0))
    cents = item["centroids"].numpy()
    ok = ~np.isnan(found[..., 0]) & ~np.isnan(cents[..., 0])
    assert np.abs(found - cents)[ok].mean() < 1.0


def test_flip_flips_masks_and_coordinates(sprites_root):
    plain = ClipDataset(sprites_root, "test", length=4)
    flipping = ClipDataset(sprites_root, "test", length=4, flip=True)
    ref = plain[1]
    flipped_seen = False
    for _ in range(30):
        item = flipping[1]
        if torch.equal(item["frames"], ref["frames"]):
            continue
        flipped_seen = True
        assert torch.equal(item["frames"], ref["frames"].flip(-1))
        assert torch.equal(item["object_masks"], ref["object_masks"].flip(-1))
        cents = mask_centroids_px(item["object_masks"].numpy())
        np.testing.assert_allclose(item["centroids"].numpy(), cents, atol=1e-4)
        x = ref["centroids"][..., 0].numpy()
        np.testing.assert_allclose(item["centroids"][..., 0].numpy(), 31 - x, atol=1e-4)
    assert flipped_seen


def test_max_objects_pads_for_batching(sprites_root):
    ds = ClipDataset(sprites_root, "test", length=4, max_objects=6)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["object_masks"].shape == (3, 4, 6, 32, 32)
    assert batch["centroids"].shape == (3, 4, 6, 2)
    valid = batch["object_valid"]
    assert valid.shape == (3, 6) and valid.any(1).all() and not valid[:, 3:].any()
    assert torch.isnan(batch["centroids"][~valid[:, None].expand(-1, 4, -1)]).all()
    with pytest.raises(ValueError, match="max_objects"):
        ClipDataset(sprites_root, "test", max_objects=0)


def test_too_long_windows_raise(sprites_root):
    with pytest.raises(ValueError, match="no usable windows of 9 frames"):
        ClipDataset(sprites_root, "test", length=9)
