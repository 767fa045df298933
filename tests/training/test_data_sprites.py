"""Procedural sprites: determinism, ground truth that matches the pixels, config, layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lcvg_env.world.locate import dilate
from training.data.ground_truth import load_ground_truth
from training.data.pairs import FramePairDataset
from training.data.sprites import (
    KEY_COLORS,
    SHAPES,
    SpritesConfig,
    generate_sprites,
    render_clip,
)


def test_render_is_deterministic_and_seed_dependent():
    cfg = SpritesConfig(size=32, frames=6)
    a, gt_a, meta_a = render_clip(cfg, np.random.default_rng([1, 0]))
    b, gt_b, _ = render_clip(cfg, np.random.default_rng([1, 0]))
    c, _, _ = render_clip(cfg, np.random.default_rng([2, 0]))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(gt_a.object_masks, gt_b.object_masks)
    assert not np.array_equal(a, c)
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.uint8
    assert len(meta_a) == 6 and meta_a[0]["centers"].shape == (gt_a.num_objects, 2)


def test_generated_files_are_identical_across_worker_counts(tmp_path):
    cfg = SpritesConfig(size=16, frames=4)
    generate_sprites(tmp_path / "a", clips=5, seed=9, config=cfg, workers=1)
    generate_sprites(tmp_path / "b", clips=5, seed=9, config=cfg, workers=2)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.png"))
    assert files_a == files_b and len(files_a) == 20
    for rel in files_a:
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "a" / rel)),
            np.asarray(Image.open(tmp_path / "b" / rel)),
        )


def test_ground_truth_matches_pixels():
    cfg = SpritesConfig(size=64, frames=10)
    for i in range(5):
        frames, gt, meta = render_clip(cfg, np.random.default_rng([3, i]))
        assert 1 <= gt.num_objects <= 3
        assert gt.colors is not None and gt.names is not None
        np.testing.assert_array_equal(gt.foreground, gt.object_masks.max(1))
        # visible masks never overlap (occlusion resolved)
        assert gt.object_masks.sum(1).max() <= 1
        # pixels under an object's mask are close to its key colour
        for k in range(gt.num_objects):
            m = gt.object_masks[:, k].astype(bool)
            if m.sum() < 10:
                continue
            dist = np.linalg.norm(frames[m].astype(float) - gt.colors[k], axis=-1)
            assert np.median(dist) < 35
        # background pixels are low-saturation (far from every key colour)
        bg = frames[~gt.foreground.astype(bool)].astype(float)
        sat = bg.max(-1) - bg.min(-1)
        assert np.percentile(sat, 95) < 70
        # objects are mostly in view
        assert np.isnan(gt.centroids).mean() < 0.2


def test_background_flickers_and_is_noisy_but_static():
    frames, gt, _ = render_clip(SpritesConfig(size=32, frames=12), np.random.default_rng([4, 0]))
    bg = ~gt.foreground.astype(bool).any(0)  # never covered
    values = frames[:, bg].astype(float)  # (T, N, 3)
    step = np.abs(np.diff(values, axis=0))
    assert 0.5 < step.mean() < 8  # changes a little (noise, flicker), not a lot
    assert values.mean(axis=(1, 2)).std() > 0.2  # global brightness varies


def test_fixed_number_of_objects_and_colours_are_distinct():
    cfg = SpritesConfig(size=32, frames=3, objects=(1, 1))
    for i in range(5):
        _, gt, _ = render_clip(cfg, np.random.default_rng([5, i]))
        assert gt.num_objects == 1
    cfg3 = SpritesConfig(size=32, frames=3, objects=(3, 3))
    _, gt, _ = render_clip(cfg3, np.random.default_rng(0))
    assert len({tuple(c) for c in gt.colors}) == 3
    keys = np.array(list(KEY_COLORS.values()), float)
    d = np.linalg.norm(keys[:, None] - keys[None], axis=-1)
    assert d[~np.eye(len(keys), dtype=bool)].min() >= 120


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": 4}, "size"),
        ({"objects": (0, 2)}, "objects"),
        ({"objects": (2, 7)}, "objects"),
        ({"shapes": ("hexagon",)}, "shapes"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"style": "fancy"}, r"style must be one of \('classic', 'varied'\)"),
        ({"frames": 1}, "frames"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpritesConfig(**kwargs)


def test_layout_info_and_loader(tmp_path):
    summary = generate_sprites(
        tmp_path, clips=10, seed=1, config=SpritesConfig(size=16, frames=5), workers=1
    )
    assert summary.clips == {"train": 8, "val": 1, "test": 1}
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["seed"] == 1 and info["config"]["size"] == 16
    assert sorted(p.name for p in (tmp_path / "train" / "00000").iterdir()) == [
        "00000.png", "00001.png", "00002.png", "00003.png", "00004.png",
        "ground_truth.npz", "metadata.pkl",
    ]
    gt = load_ground_truth(tmp_path / "val" / "00000")
    assert gt is not None and gt.object_masks.shape[0] == 5
    ds = FramePairDataset(tmp_path, "train")
    assert len(ds) == 8 * 4 and ds.has_ground_truth


def test_refuses_to_overwrite(tmp_path):
    cfg = SpritesConfig(size=16, frames=3)
    generate_sprites(tmp_path, clips=2, seed=0, config=cfg, workers=1)
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_sprites(tmp_path, clips=2, seed=0, config=cfg, workers=1)
    generate_sprites(tmp_path, clips=3, seed=0, config=cfg, workers=1, overwrite=True)
    assert len(list(tmp_path.glob("*/*/ground_truth.npz"))) == 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    with pytest.raises(FileExistsError, match="other files"):
        generate_sprites(other, clips=2, seed=0, config=cfg, workers=1, overwrite=True)


def test_varied_style_clips_and_metadata():
    cfg = SpritesConfig(size=48, frames=6, style="varied", objects=(2, 3))
    assert "crescent" in cfg.shapes and SpritesConfig().shapes == SHAPES
    frames, gt, meta = render_clip(cfg, np.random.default_rng([7, 0]))
    again, _, _ = render_clip(cfg, np.random.default_rng([7, 0]))
    np.testing.assert_array_equal(frames, again)
    assert frames.shape == (6, 48, 48, 3) and 2 <= gt.num_objects <= 3
    assert all(name.startswith("hue ") for name in gt.names)
    assert set(meta[0]) == {"centers", "angles", "radii", "depth", "shapes"}
    assert gt.object_masks.sum(1).max() <= 1


def test_metadata_centres_are_the_shapes_area_centroids():
    # every shape is drawn about its area centroid (lcvg_env.world.scene): the unoccluded
    # mask of a lone object has its centroid at the metadata centre, to pixelisation
    cfg = SpritesConfig(size=64, frames=4, objects=(1, 1), shapes=("triangle",), noise_std=0.0,
                        radius=(0.18, 0.2), margin=1.5)
    for i in range(3):
        _, gt, meta = render_clip(cfg, np.random.default_rng([8, i]))
        for t in range(4):
            np.testing.assert_allclose(gt.centroids[t, 0], meta[t]["centers"][0], atol=0.3)


def test_outlined_clips_border_their_objects_and_keep_their_masks():
    plain = SpritesConfig(size=48, frames=3, style="varied", objects=(2, 2))
    outlined = SpritesConfig(size=48, frames=3, style="varied", objects=(2, 2), outline=2.0)
    a, gt_a, _ = render_clip(plain, np.random.default_rng([3, 0]))
    b, gt_b, _ = render_clip(outlined, np.random.default_rng([3, 0]))
    np.testing.assert_array_equal(gt_a.object_masks, gt_b.object_masks)  # only painted
    on = gt_a.object_masks.any(1)
    assert b[on].mean() < a[on].mean() - 10  # the dark border
    away = ~dilate(on, 1)  # beyond the objects' antialiased rims
    np.testing.assert_array_equal(a[away], b[away])
    assert outlined.scene_config().outline == 2.0
    with pytest.raises(ValueError, match="outline_share"):
        SpritesConfig(outline=1.0, outline_share=2.0)
