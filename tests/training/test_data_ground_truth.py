"""The ground-truth sidecar, mask statistics, resize/crop geometry and the colour-key locator."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.ground_truth import (
    GroundTruth,
    ground_truth_from_masks,
    load_foreground,
    load_ground_truth,
    locate_objects,
    mask_boxes_px,
    mask_centroids_px,
    save_ground_truth,
)
from training.data.sprites import SpritesConfig, render_clip
from training.data.transforms import ResizeCrop, flip_boxes, flip_points, parse_size


def test_centroids_and_boxes_of_masks():
    m = np.zeros((2, 6, 8), np.uint8)
    m[0, 1:3, 2:6] = 1  # rows 1-2, cols 2-5
    c = mask_centroids_px(m)
    b = mask_boxes_px(m)
    np.testing.assert_allclose(c[0], [3.5, 1.5])
    np.testing.assert_allclose(b[0], [2, 1, 5, 2])
    assert np.isnan(c[1]).all() and np.isnan(b[1]).all()


def test_sidecar_roundtrip_and_validation(tmp_path):
    masks = np.zeros((3, 2, 8, 8), np.uint8)
    masks[:, 0, 2:4, 2:4] = 1
    masks[1, 1, 5:7, 0:3] = 1
    gt = ground_truth_from_masks(masks, colors=[[255, 0, 0], [0, 255, 0]], names=["a", "b"])
    assert gt.foreground.shape == (3, 8, 8) and gt.num_objects == 2 and gt.size == (8, 8)
    assert np.isnan(gt.centroids[0, 1]).all() and not np.isnan(gt.centroids[1, 1]).any()
    save_ground_truth(tmp_path, gt)
    back = load_ground_truth(tmp_path)
    assert back is not None and back.names == ("a", "b")
    for key in ("object_masks", "foreground", "centroids", "boxes", "colors"):
        np.testing.assert_array_equal(getattr(back, key), getattr(gt, key))
    np.testing.assert_array_equal(load_foreground(tmp_path), gt.foreground)
    assert load_ground_truth(tmp_path / "elsewhere") is None
    with pytest.raises(ValueError, match="centroids must have shape"):
        GroundTruth(gt.object_masks, gt.foreground, gt.centroids[:, :1], gt.boxes)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ground_truth.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable ground truth"):
        load_ground_truth(tmp_path / "bad")


def test_resize_crop_geometry_maps_points_like_masks():
    assert parse_size(32) == (32, 32) and parse_size(None) is None
    with pytest.raises(ValueError):
        parse_size((0, 4))
    rc = ResizeCrop((16, 16))
    g = rc.geometry((32, 64))  # scale 0.5 -> 16x32, crop x offset 8
    assert g.resized == (16, 32) and g.offset == (0, 8)
    mask = np.zeros((32, 64), np.uint8)
    mask[10:14, 30:38] = 1  # centroid (33.5, 11.5)
    small = rc.masks(mask)
    np.testing.assert_allclose(
        rc.points(mask_centroids_px(mask), (32, 64)), mask_centroids_px(small), atol=0.3
    )
    out = rc.points(np.array([[0.0, 0.0], [33.5, 11.5]], np.float32), (32, 64))
    assert np.isnan(out[0]).all()  # cropped away
    np.testing.assert_allclose(out[1], [(33.5 + 0.5) * 0.5 - 0.5 - 8, (11.5 + 0.5) * 0.5 - 0.5])
    img = np.zeros((32, 64, 3), np.uint8)
    assert rc.image(img).shape == (16, 16, 3)


def test_flips_of_points_and_boxes():
    np.testing.assert_allclose(flip_points(np.array([[1.0, 2.0]]), 10), [[8.0, 2.0]])
    np.testing.assert_allclose(flip_boxes(np.array([[1.0, 2.0, 3.0, 4.0]]), 10), [[6, 2, 8, 4]])
    m = np.zeros((5, 10), np.uint8)
    m[1:3, 1:4] = 1
    np.testing.assert_allclose(mask_centroids_px(m[:, ::-1]), flip_points(mask_centroids_px(m), 10))
    np.testing.assert_allclose(mask_boxes_px(m[:, ::-1]), flip_boxes(mask_boxes_px(m), 10))


def test_locator_accuracy_on_sprite_frames():
    """The colour-key locator finds unoccluded objects within a small fraction of a pixel."""
    errors, missed, total = [], 0, 0
    for i in range(8):
        frames, gt, _ = render_clip(SpritesConfig(size=64), np.random.default_rng([11, i]))
        found = locate_objects(frames, gt)
        assert found.shape == gt.centroids.shape
        for t in range(frames.shape[0]):
            for k in range(gt.num_objects):
                if np.isnan(gt.centroids[t, k]).any():
                    assert np.isnan(found[t, k]).all()  # fully hidden: not found
                    continue
                b = gt.boxes[t, k]
                others = [gt.boxes[t, j] for j in range(gt.num_objects) if j != k]
                alone = all(
                    np.isnan(o).any()
                    or o[0] > b[2] + 2 or o[2] < b[0] - 2 or o[1] > b[3] + 2 or o[3] < b[1] - 2
                    for o in others
                )
                total += 1
                if np.isnan(found[t, k]).any():
                    missed += 1
                elif alone:
                    errors.append(float(np.linalg.norm(found[t, k] - gt.centroids[t, k])))
    assert len(errors) > 100
    assert np.mean(errors) < 0.5 and np.max(errors) < 1.5
    assert missed / total < 0.02


def test_locator_reports_missing_objects_and_validates():
    frames = np.full((2, 8, 8, 3), 128, np.uint8)
    frames[0, 2:4, 2:4] = (255, 0, 0)
    found = locate_objects(frames, np.array([[255, 0, 0], [0, 0, 255]]), min_pixels=2)
    np.testing.assert_allclose(found[0, 0], [2.5, 2.5])
    assert np.isnan(found[1]).all() and np.isnan(found[0, 1]).all()
    with pytest.raises(TypeError, match="uint8"):
        locate_objects(frames.astype(np.float32), np.array([[255, 0, 0]]))
    with pytest.raises(ValueError, match=r"\(T,H,W,3\)"):
        locate_objects(frames[0], np.array([[255, 0, 0]]))
    gt = ground_truth_from_masks(np.zeros((2, 1, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="no key colours"):
        locate_objects(frames, gt)
