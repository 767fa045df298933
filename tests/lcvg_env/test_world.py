"""Sprites scenes: sampling, rendering, masks, shapes, and what the varied style adds."""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
import pytest

from lcvg_env.world import (
    BACKGROUND_FAMILIES,
    CLASSIC_SHAPES,
    KEY_COLORS,
    STYLES,
    VARIED_SHAPES,
    Poses,
    SceneConfig,
    render,
    render_background,
    sample_scene,
    shape_sdf,
)


def _scene(style: str = "classic", seed: int = 0, **kwargs):
    return sample_scene(SceneConfig(style=style, **kwargs), np.random.default_rng(seed))


@pytest.mark.parametrize("style", STYLES)
def test_sampling_is_deterministic_and_seed_dependent(style: str) -> None:
    a, pa = _scene(style, 1, objects=(3, 3))
    b, pb = _scene(style, 1, objects=(3, 3))
    c, _ = _scene(style, 2, objects=(3, 3))
    np.testing.assert_array_equal(a.background, b.background)
    np.testing.assert_array_equal(a.colors, b.colors)
    np.testing.assert_array_equal(pa.centers, pb.centers)
    np.testing.assert_array_equal(pa.linear, pb.linear)
    assert a.names == b.names and a.shapes == b.shapes
    assert not np.array_equal(a.background, c.background)
    ra = render(a, pa, rng=np.random.default_rng(5))
    rb = render(b, pb, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(ra.frame, rb.frame)


@pytest.mark.parametrize("style", STYLES)
def test_render_shapes_dtypes_and_masks(style: str) -> None:
    for seed in range(6):
        scene, poses = _scene(style, seed, objects=(3, 3), size=48)
        out = render(scene, poses, rng=np.random.default_rng(seed))
        assert out.frame.shape == (48, 48, 3) and out.frame.dtype == np.uint8
        assert out.visible.shape == out.full.shape == (3, 48, 48)
        assert out.visible.dtype == out.full.dtype == np.bool_
        assert out.visible.sum(0).max() <= 1  # disjoint
        assert not (out.visible & ~out.full).any()  # inside the full masks
        np.testing.assert_array_equal(out.visible.any(0), out.full.any(0))
        # the front object (depth 0) is never hidden
        front = int(np.argmin(scene.depth))
        np.testing.assert_array_equal(out.visible[front], out.full[front])
        assert scene.background.shape == (48, 48, 3) and scene.background.dtype == np.float32
        assert scene.colors.shape == (3, 3) and scene.depth.shape == (3,)
        assert sorted(scene.depth.tolist()) == [0, 1, 2] and len(scene.names) == 3


def test_noise_only_with_a_generator_and_background_render() -> None:
    scene, poses = _scene("classic", 3, objects=(1, 1))
    a = render(scene, poses).frame
    np.testing.assert_array_equal(a, render(scene, poses).frame)
    noisy = render(scene, poses, rng=np.random.default_rng(0))
    diff = noisy.frame.astype(float) - a
    near = noisy.full.any(0)
    for axis in (0, 1):  # 3x3 dilation: no antialiased edge pixel either
        near = near | np.roll(near, 1, axis) | np.roll(near, -1, axis)
    bg = ~near
    assert 1.5 < diff[bg].std() < 2.5  # noise_std = 2 grey levels
    np.testing.assert_array_equal(a[bg], render_background(scene)[bg])
    darker = render(scene, poses, gain=0.5).frame.astype(float)
    assert abs(darker.mean() / a.mean() - 0.5) < 0.01


@pytest.mark.parametrize("shape", VARIED_SHAPES)
def test_every_shape_is_centred_on_its_area_centroid(shape: str) -> None:
    g = np.linspace(-2, 2, 1201)
    u, v = np.meshgrid(g, g)
    cover = np.clip(0.5 - shape_sdf(shape, u, v) / (g[1] - g[0]), 0, 1)
    assert cover.sum() > 1000
    cx = (u * cover).sum() / cover.sum()
    cy = (v * cover).sum() / cover.sum()
    assert abs(cx) < 2e-3 and abs(cy) < 2e-3, (cx, cy)


def test_rotation_and_scale_about_the_centre_keep_the_centroid() -> None:
    scene, _ = _scene("varied", 0, objects=(1, 1), shapes=("triangle",))
    for angle, radius in ((0.0, 12.0), (1.0, 12.0), (2.5, 16.0)):
        poses = Poses.from_angles([[30.0, 33.0]], [angle], [radius])
        full = render(scene, poses).full[0]
        ys, xs = np.nonzero(full)
        # pixelisation moves a mask's centroid by well under a pixel for a 12-16 px triangle
        assert abs(xs.mean() - 30.0) < 0.25 and abs(ys.mean() - 33.0) < 0.25


def test_poses_helpers_and_validation() -> None:
    poses = Poses.from_angles([[1.0, 2.0]], [np.pi / 2], [3.0])
    np.testing.assert_allclose(poses.linear[0], [[0, -3], [3, 0]], atol=1e-12)
    np.testing.assert_allclose(poses.scales(), [3.0])
    copy = poses.copy()
    copy.centers[0, 0] = 9.0
    assert poses.centers[0, 0] == 1.0
    with pytest.raises(ValueError, match="centers"):
        Poses(np.zeros(3), np.eye(2)[None])
    with pytest.raises(ValueError, match="linear"):
        Poses(np.zeros((2, 2)), np.eye(2)[None])
    with pytest.raises(ValueError, match="invertible"):
        Poses(np.zeros((1, 2)), np.zeros((1, 2, 2)))
    scene, _ = _scene("classic", 0, objects=(2, 2))
    with pytest.raises(ValueError, match="2"):
        render(scene, poses)
    with pytest.raises(ValueError, match="gain"):
        render(scene, Poses.from_angles(np.zeros((2, 2)), [0, 0], [3, 3]), gain=0.0)
    with pytest.raises(TypeError, match="Scene"):
        render("scene", poses)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"style": "fancy"}, r"style must be one of \('classic', 'varied'\)"),
        ({"size": 4}, "size"),
        ({"objects": (0, 2)}, "objects"),
        ({"objects": (2, 7)}, "objects"),
        ({"shapes": ("hexagon",)}, "shapes"),
        ({"style": "varied", "shapes": ("blob",)}, "shapes"),
        ({"noise_std": -1.0}, "noise_std"),
        ({"radius": (0.2, 0.1)}, "radius"),
        ({"outline": -1.0}, "outline must be a finite number >= 0, got -1.0"),
        ({"outline_color": (0, 0, 300)}, r"outline_color must be .* got \(0, 0, 300\)"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SceneConfig(**kwargs)


def test_config_resolves_the_style_shapes() -> None:
    assert SceneConfig().shapes == CLASSIC_SHAPES
    assert SceneConfig(style="varied").shapes == VARIED_SHAPES
    assert SceneConfig(style="varied", objects=(8, 8)).objects == (8, 8)
    assert set(VARIED_SHAPES) > set(CLASSIC_SHAPES)


def test_an_outline_borders_each_object_inside_its_edge() -> None:
    plain, poses = _scene("classic", 4, objects=(1, 1), shapes=("square",), texture=0.0)
    outlined, _ = _scene("classic", 4, objects=(1, 1), shapes=("square",), texture=0.0,
                         outline=2.0, outline_color=(10.0, 200.0, 30.0))
    a, b = render(plain, poses), render(outlined, poses)
    np.testing.assert_array_equal(a.visible, b.visible)  # the same object, only painted
    mask = a.visible[0]
    inner = mask.copy()
    for _ in range(3):  # 3 px in from the edge (8-neighbour steps): the object's own colour
        padded = np.pad(inner, 1)
        inner = np.all([padded[dy:dy + inner.shape[0], dx:dx + inner.shape[1]]
                        for dy in range(3) for dx in range(3)], axis=0)
    np.testing.assert_array_equal(a.frame[inner], b.frame[inner])
    rim = mask & ~inner
    def off_border(frame):  # median distance of the rim's pixels from the border colour
        return float(np.median(np.abs(frame[rim].astype(float) - (10, 200, 30)).mean(1)))

    assert off_border(b.frame) < 0.5 * off_border(a.frame)


def test_an_outline_share_borders_some_objects_and_leaves_other_scenes_as_they_were() -> None:
    kinds = set()
    for seed in range(6):
        scene, poses = _scene("varied", seed, objects=(4, 4), outline=2.0, outline_share=0.5)
        assert scene.bordered is not None and len(scene.bordered) == 4
        kinds |= set(scene.bordered)
        everyone, _ = _scene("varied", seed, objects=(4, 4), outline=2.0)
        assert everyone.bordered is None  # every object, and the same draws as before
        np.testing.assert_array_equal(everyone.colors, scene.colors)
        drawn, all_drawn = render(scene, poses).frame, render(everyone, poses).frame
        for j, bordered in enumerate(scene.bordered):
            own = render(scene, poses).visible[j]
            assert np.array_equal(drawn[own], all_drawn[own]) == bordered
    assert kinds == {True, False}
    with pytest.raises(ValueError, match="outline_share must be a number in"):
        SceneConfig(outline_share=1.5)


def test_classic_uses_key_colours_and_no_lighting() -> None:
    keys = {tuple(c) for c in KEY_COLORS.values()}
    for seed in range(5):
        scene, _ = _scene("classic", seed, objects=(3, 3))
        assert {tuple(int(x) for x in c) for c in scene.colors} <= keys
        assert scene.light is None and scene.shadow_strength == 0
        assert scene.background_family == "smooth"
        assert all(" " in n and n.split()[0] in KEY_COLORS for n in scene.names)


def test_varied_colours_spread_and_stay_apart() -> None:
    hues = []
    for seed in range(40):
        scene, _ = _scene("varied", seed, objects=(3, 3))
        rgb = scene.colors.astype(float)
        d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
        assert d[~np.eye(3, dtype=bool)].min() >= 60
        bg_mean = scene.background.reshape(-1, 3).mean(0)
        assert np.linalg.norm(rgb - bg_mean, axis=-1).min() > 40  # lit mean, so a bit looser
        hues += [colorsys.rgb_to_hsv(*(c / 255))[0] for c in rgb]
        assert all(n.startswith("hue ") for n in scene.names)
    counts = np.histogram(hues, bins=12, range=(0, 1))[0]
    assert (counts > 0).sum() >= 11  # continuous hues, not 6 key colours
    assert len({round(h, 3) for h in hues}) > 100


def test_varied_background_families_and_shapes() -> None:
    families, shapes = set(), set()
    for seed in range(60):
        scene, _ = _scene("varied", seed)
        families.add(scene.background_family)
        shapes.update(scene.shapes)
        sat = scene.background.max(-1) - scene.background.min(-1)
        assert np.percentile(sat, 95) < 90  # low-to-mid saturation
    assert families == set(BACKGROUND_FAMILIES)
    assert len(shapes - set(CLASSIC_SHAPES)) >= 4


def _plain(seed: int = 0):
    """A varied one-object scene with a flat colour (no texture) and no noise."""
    scene, _ = _scene("varied", seed, objects=(1, 1), shapes=("square",), noise_std=0.0)
    return dataclasses.replace(scene, textures=("none",), _static=None)


def test_varied_shading_depends_on_position() -> None:
    scene = _plain(1)
    assert scene.light is not None and 0.12 <= scene.light_amplitude <= 0.2
    d = scene.light_direction * 18  # along the light gradient
    means = []
    for sign in (-1, 1):
        poses = Poses.from_angles([[32 + sign * d[0], 32 + sign * d[1]]], [0.0], [7.0])
        out = render(scene, poses)
        inner = out.full[0]
        means.append(out.frame[inner].astype(float).mean(0))
    ratio = means[1].sum() / means[0].sum()
    assert ratio > 1.1  # the lit side is brighter: copying pixels over is not the truth
    # and the same place gives the same pixels
    poses = Poses.from_angles([[32.0, 32.0]], [0.0], [7.0])
    np.testing.assert_array_equal(render(scene, poses).frame, render(scene, poses).frame)


def test_varied_shadow_darkens_the_background_next_to_the_object() -> None:
    scene = _plain(2)
    ox, oy = scene.shadow_offset
    assert 1 <= max(abs(ox), abs(oy)) <= 3 and 0.25 <= scene.shadow_strength <= 0.4
    poses = Poses.from_angles([[32.0, 32.0]], [0.0], [8.0])
    out = render(scene, poses)
    mask = out.full[0]
    shifted = np.roll(np.roll(mask, oy, axis=0), ox, axis=1)
    shadow = shifted & ~mask
    assert shadow.sum() >= 8
    bg = render_background(scene).astype(float)
    ratio = out.frame[shadow].astype(float).sum() / bg[shadow].sum()
    assert ratio < 1 - 0.4 * scene.shadow_strength  # clearly darker (soft edges lighten it)
    far = ~np.roll(np.roll(shifted | mask, 6, 0), 6, 1) & ~np.roll(
        np.roll(shifted | mask, -6, 0), -6, 1
    )
    far &= ~(shifted | mask)
    # far from the object and its shadow, the frame is the background
    np.testing.assert_array_equal(out.frame[far][:50], render_background(scene)[far][:50])
    # the object stays clearly apart from its shadow and the background in colour
    obj = out.frame[mask].astype(float).mean(0)
    assert np.linalg.norm(obj - out.frame[shadow].astype(float).mean(0)) > 40


def test_objects_partly_out_of_the_frame_render() -> None:
    scene, _ = _scene("varied", 4, objects=(2, 2))
    poses = Poses.from_angles([[-3.0, 10.0], [66.0, 70.0]], [0.3, 0.1], [9.0, 9.0])
    out = render(scene, poses, rng=np.random.default_rng(0))
    assert 0 < out.visible[0].sum() < np.pi * 81
    far = Poses.from_angles([[-40.0, 10.0], [66.0, 70.0]], [0.3, 0.1], [9.0, 9.0])
    assert render(scene, far).visible[0].sum() == 0
