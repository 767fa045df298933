"""Simulator recorders (FetchPush in MuJoCo, Atari in ALE): layout, ground truth, determinism.

The recorder tests need the [sim] extra and skip cleanly without it; the geometry and split
helpers are pure numpy and always run.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from types import SimpleNamespace

import numpy as np
import pytest

from training.data.fetchpush import project_points
from training.data.ground_truth import load_ground_truth, mask_centroids_px
from training.data.layout import scan_clips
from training.data.sim_common import assign_splits, resize_point

CLIP = 8  # frames per test clip
SIZE = 64


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation of (..., H, W)."""
    m = np.pad(mask.astype(bool), [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    h, w = mask.shape[-2:]
    out = np.zeros(mask.shape, bool)
    for dy in range(3):
        for dx in range(3):
            out |= m[..., dy:dy + h, dx:dx + w]
    return out


def _two_clips(rec, seed: int):
    """Fixture body: yield (rec, two clips recorded from ``seed``), then close the recorder."""
    clips = [rec.record((seed, i)) for i in range(2)]
    yield rec, clips
    rec.close()


# ---------------------------------------------------------------- pure helpers (no extra) ----


def test_assign_splits():
    assert assign_splits(1) == ["train"]
    assert assign_splits(2) == ["train", "train"]
    assert assign_splits(3) == ["train", "val", "test"]
    s = assign_splits(30)
    assert (s.count("train"), s.count("val"), s.count("test")) == (24, 3, 3)
    with pytest.raises(ValueError, match="positive"):
        assign_splits(0)


def test_resize_point_keeps_pixel_centres():
    pts = np.array([[-0.5, -0.5], [159.5, 209.5], [np.nan, 3.0]])
    out = resize_point(pts, (210, 160), (64, 64))
    np.testing.assert_allclose(out[:2], [[-0.5, -0.5], [63.5, 63.5]], atol=1e-5)
    assert np.isnan(out[2, 0])


def test_project_points_pinhole():
    # camera at the origin looking along +x, up +z, 90 degree vertical field of view
    cam = SimpleNamespace(
        pos=np.zeros(3), forward=np.array([1.0, 0, 0]), up=np.array([0, 0, 1.0]),
        frustum_near=0.1, frustum_bottom=-0.1, frustum_top=0.1, frustum_center=0.0,
        orthographic=0,
    )
    pts = np.array([[1.0, 0, 0], [1.0, 0, 1.0], [1.0, -1.0, 0], [-1.0, 0, 0]])
    uv = project_points(cam, pts, 64, 64)
    np.testing.assert_allclose(uv[0], [31.5, 31.5], atol=1e-4)  # image centre
    np.testing.assert_allclose(uv[1], [31.5, -0.5], atol=1e-4)  # top edge
    np.testing.assert_allclose(uv[2], [63.5, 31.5], atol=1e-4)  # right = forward x up = -y
    assert np.isnan(uv[3]).all()  # behind the camera
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        project_points(cam, np.zeros((2, 2)), 64, 64)


# ------------------------------------------------------------------------- FetchPush ----


def _need_mujoco() -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")  # headless; MuJoCo reads it once, at import
    pytest.importorskip("mujoco")
    pytest.importorskip("gymnasium_robotics")


@pytest.fixture(scope="module")
def fetch():
    _need_mujoco()
    from training.data.fetchpush import FetchPushConfig, FetchPushRecorder

    yield from _two_clips(FetchPushRecorder(FetchPushConfig(size=SIZE, frames=CLIP)), 7)


@pytest.mark.sim
def test_fetchpush_frames_and_ground_truth(fetch):
    _, clips = fetch
    for clip in clips:
        gt = clip.ground_truth
        assert clip.frames.shape == (CLIP, SIZE, SIZE, 3) and clip.frames.dtype == np.uint8
        # not all black (a broken OpenGL context renders zeros)
        assert clip.frames.reshape(CLIP, -1).mean(1).min() > 60
        assert gt.names == ("robot", "block")
        assert gt.object_masks.shape == (CLIP, 2, SIZE, SIZE)
        assert gt.colors is not None and gt.colors.shape == (2, 3)
        np.testing.assert_array_equal(gt.foreground, gt.object_masks.max(1))
        assert (gt.object_masks[:, 0].sum((1, 2)) > 50).all()  # the arm is always in view
        assert not (gt.object_masks[:, 0] & gt.object_masks[:, 1]).any()  # visible pixels only
        assert clip.actions.shape == (CLIP, 4) and np.abs(clip.actions).max() <= 1
    # the scripted policy moves the arm
    moved = [np.abs(c.positions[-1, 0] - c.positions[0, 0]).max() for c in clips]
    assert max(moved) > 0.03


@pytest.mark.sim
def test_fetchpush_projection_lands_on_the_rendered_objects(fetch):
    _, clips = fetch
    inside, errors = [], []
    for clip in clips:
        gt = clip.ground_truth
        near_robot = _dilate(gt.object_masks[:, 0])
        for t in range(CLIP):
            x, y = gt.centroids[t, 0]
            assert np.isfinite(x) and np.isfinite(y)
            inside.append(near_robot[t, int(round(y)), int(round(x))])
            block = gt.object_masks[t, 1]
            if block.sum() >= 6:  # block clearly visible: projection ~ its mask centroid
                errors.append(np.hypot(*(mask_centroids_px(block) - gt.centroids[t, 1])))
    assert np.mean(inside) >= 0.95
    if errors:
        assert np.median(errors) < 1.5


@pytest.mark.sim
def test_fetchpush_is_deterministic(fetch):
    rec, clips = fetch
    again = rec.record((7, 0))
    np.testing.assert_array_equal(again.frames, clips[0].frames)
    np.testing.assert_array_equal(
        again.ground_truth.object_masks, clips[0].ground_truth.object_masks
    )


@pytest.mark.sim
def test_fetchpush_main_make_writes_the_layout(tmp_path, capsys):
    _need_mujoco()
    from training.data.fetchpush import main_make

    out = tmp_path / "fp"
    args = argparse.Namespace(out=str(out), clips=2, size=32, frames=4, seed=3)
    assert main_make(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["clips"] == {"train": 2} and summary["frames"] == 8
    clips = scan_clips(out, "train").clips
    assert len(clips) == 2 and all(c.num_frames == 4 and c.has_ground_truth for c in clips)
    gt = load_ground_truth(clips[0].path)
    assert gt is not None and gt.size == (32, 32) and gt.names == ("robot", "block")
    with open(clips[0].path + "/actions.pkl", "rb") as f:
        assert len(pickle.load(f)) == 4
    assert json.loads((out / "info.json").read_text())["generator"] == "lcvg fetchpush"
    with pytest.raises(FileExistsError, match="not empty"):
        main_make(args)


# ----------------------------------------------------------------------------- Atari ----


@pytest.fixture(scope="module", params=["breakout", "pong", "tennis"])
def atari(request):
    pytest.importorskip("ale_py")
    from training.data.atari import AtariConfig, AtariRecorder

    yield from _two_clips(AtariRecorder(AtariConfig(game=request.param, size=SIZE, frames=CLIP)), 5)


@pytest.mark.sim
def test_atari_ground_truth(atari):
    from training.data.atari import GAMES, locate_atari_objects

    rec, clips = atari
    spec = GAMES[rec.config.game]
    k = len(spec.names)
    for clip in clips:
        gt = clip.ground_truth
        assert clip.frames.shape == (CLIP, SIZE, SIZE, 3)
        assert gt.object_masks.shape == (CLIP, k, SIZE, SIZE) and gt.names == spec.names
        np.testing.assert_array_equal(gt.colors, np.array(spec.colors, np.uint8))
        # the agent's object is always visible, its centroid sits on its mask
        assert (gt.object_masks[:, 0].sum((1, 2)) > 0).all()
        near = _dilate(gt.object_masks[:, 0])
        for t in range(CLIP):
            x, y = gt.centroids[t, 0]
            assert near[t, int(round(y)), int(round(x))]
        # every visible object has a mask pixel, every masked one a centroid
        has_mask = gt.object_masks.any((2, 3))
        np.testing.assert_array_equal(has_mask, ~np.isnan(gt.centroids[..., 0]))
        # the region-restricted colour key finds the agent's object in the frames
        loc = locate_atari_objects(clip.frames, rec.config.game)
        err = np.hypot(*(loc[:, 0] - gt.centroids[:, 0]).T)
        assert np.nanmax(err) < 1.5 and np.isfinite(err).mean() >= 0.9
    # something moves
    assert any((c.frames[0] != c.frames[-1]).any() for c in clips)


@pytest.mark.sim
def test_atari_tennis_lines_are_not_the_player():
    pytest.importorskip("ale_py")
    from training.data.atari import AtariConfig, AtariRecorder

    with AtariRecorder(AtariConfig(game="tennis", size=SIZE, frames=2)) as rec:
        screen = rec.env.unwrapped.ale.getScreenRGB()
        masks = rec.native_masks(screen)
    rows = np.nonzero(masks[0].any(1))[0]
    assert 0 < rows.max() - rows.min() < 40  # a ~25-row player, not the 130-row side lines
    rows = np.nonzero(masks[2].any(1))[0]
    assert 0 < rows.max() - rows.min() < 40


@pytest.mark.sim
def test_atari_is_deterministic_and_main_make(tmp_path, capsys):
    pytest.importorskip("ale_py")
    from training.data.atari import AtariConfig, AtariRecorder, main_make

    with AtariRecorder(AtariConfig(game="pong", size=SIZE, frames=4)) as rec:
        a, b = rec.record((1, 2)), rec.record((1, 2))
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.actions, b.actions)

    out = tmp_path / "pong"
    args = argparse.Namespace(game="pong", out=str(out), clips=3, size=32, frames=4, seed=0)
    assert main_make(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["clips"] == {"train": 1, "val": 1, "test": 1}
    for split in ("train", "val", "test"):
        (clip,) = scan_clips(out, split).clips
        gt = load_ground_truth(clip.path)
        assert gt is not None and gt.names == ("player", "ball", "opponent")
    with pytest.raises(ValueError, match="game must be one of"):
        main_make(argparse.Namespace(game="pacman", out=str(tmp_path / "x"), clips=1, size=32,
                                     frames=4, seed=0))
